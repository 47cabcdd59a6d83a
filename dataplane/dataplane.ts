// The Node data plane: egress listeners (one per import) that open mutual-TLS HTTP CONNECT tunnels
// to exporting peers' gateways, and the ingress gateway that terminates them. Configured from a
// DataplaneConfig (built from xDS) and asking an Authorizer about every connection. Identity at
// the gateway comes only from the verified client certificate; headers carry client attributes,
// never identity.
import { createHash } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { pino, type Logger } from 'pino';
import {
  TUNNEL,
  type Authorizer,
  type ClientAttributes,
  type DataplaneConfig,
  type EgressCandidate,
  type EgressListenerConfig,
  type Endpoint,
  type UpstreamPeer,
} from './contracts.ts';
import { decodeLabels, encodeLabels, HeadError, parseAuthority, parseHead, readHead } from './connect-head.ts';

export interface DataplaneLimits {
  /** TLS handshake at the gateway. */
  handshakeTimeoutMs: number;
  /** Upstream TCP connect + TLS + CONNECT reply, per attempt. */
  upstreamTimeoutMs: number;
  /** Concurrent connections at the gateway. */
  maxIngressConnections: number;
  /** Consecutive failures that eject an exporter endpoint, and for how long. */
  ejectAfterFailures: number;
  ejectForMs: number;
}

export const DEFAULT_LIMITS: DataplaneLimits = {
  handshakeTimeoutMs: 5000,
  upstreamTimeoutMs: 5000,
  maxIngressConnections: 10_000,
  ejectAfterFailures: 3,
  ejectForMs: 10_000,
};

export interface DataplaneOptions {
  config: DataplaneConfig;
  authorizer: Authorizer;
  logger?: Logger;
  limits?: Partial<DataplaneLimits>;
}

export interface ImportStats {
  connections: number;
  active: number;
  denied: number;
  failed: number;
  failovers: number;
  bytesOut: number;
  bytesIn: number;
  /** Setup latency samples (ms), most recent last, bounded. */
  setupMs: number[];
}

export interface DataplaneStats {
  version: string;
  egress: Record<string, ImportStats>;
  exporters: Record<string, { connections: number; failures: number; ejected: boolean }>;
  ingress: { connections: number; active: number; denied: number; badRequests: number; upstreamFailures: number; bytesIn: number; bytesOut: number };
  handshakeFailures: Record<string, number>;
  revalidationsClosed: number;
}

export interface Dataplane {
  update(config: DataplaneConfig): Promise<void>;
  /** Re-asks the authorizer about every open tunnel; closes those no longer allowed. */
  revalidate(): Promise<number>;
  stats(): DataplaneStats;
  /** Bound addresses (useful with port 0). */
  addresses(): { ingress: Endpoint | null; egress: Record<string, Endpoint> };
  close(): Promise<void>;
}

interface Tunnel {
  side: 'egress' | 'ingress';
  /** Re-check this tunnel's right; resolves false when it must close. */
  stillAllowed(): Promise<boolean>;
  destroy(): void;
}

const SAMPLE_LIMIT = 4096;

function newImportStats(): ImportStats {
  return { connections: 0, active: 0, denied: 0, failed: 0, failovers: 0, bytesOut: 0, bytesIn: 0, setupMs: [] };
}

function fingerprintOf(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}

/** Joins two sockets both ways with backpressure (pipe), tearing both down when either ends badly. */
function relay(a: net.Socket, b: net.Socket, onClose: (bytesAtoB: number, bytesBtoA: number) => void): void {
  let closed = false;
  const done = (): void => {
    if (closed) return;
    closed = true;
    a.destroy();
    b.destroy();
    onClose(b.bytesWritten, a.bytesWritten);
  };
  a.on('error', done);
  b.on('error', done);
  a.on('close', done);
  b.on('close', done);
  a.pipe(b);
  b.pipe(a);
  a.resume();
  b.resume();
}

export async function startDataplane(opts: DataplaneOptions): Promise<Dataplane> {
  const log = opts.logger ?? pino({ level: 'silent' });
  const limits: DataplaneLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const authorizer = opts.authorizer;
  let config = opts.config;
  let pins = new Set(config.tls.allowedPeerFingerprints);
  let clientContext = makeClientContext(config);
  const sessions = new Map<string, Buffer>();
  const tunnels = new Set<Tunnel>();
  const egressServers = new Map<string, { server: net.Server; cfg: EgressListenerConfig }>();
  const endpointHealth = new Map<string, { consecutive: number; ejectedUntil: number; connections: number; failures: number }>();
  const stats: DataplaneStats = {
    version: config.version,
    egress: {},
    exporters: {},
    ingress: { connections: 0, active: 0, denied: 0, badRequests: 0, upstreamFailures: 0, bytesIn: 0, bytesOut: 0 },
    handshakeFailures: {},
    revalidationsClosed: 0,
  };
  let ingressServer: tls.Server | null = null;
  let ingressKey = '';
  let closing = false;

  function makeClientContext(cfg: DataplaneConfig): tls.SecureContext {
    return tls.createSecureContext({
      cert: cfg.tls.certificatePem,
      key: cfg.tls.privateKeyPem,
      ca: cfg.tls.caCertificatesPem,
      minVersion: 'TLSv1.3',
    });
  }

  function serverOptions(cfg: DataplaneConfig): tls.SecureContextOptions {
    return { cert: cfg.tls.certificatePem, key: cfg.tls.privateKeyPem, ca: cfg.tls.caCertificatesPem, minVersion: 'TLSv1.3' };
  }

  const countHandshakeFailure = (reason: string): void => {
    stats.handshakeFailures[reason] = (stats.handshakeFailures[reason] ?? 0) + 1;
  };

  // ---------------------------------------------------------------- egress

  function importStats(ref: string): ImportStats {
    let s = stats.egress[ref];
    if (!s) stats.egress[ref] = s = newImportStats();
    return s;
  }

  function health(key: string): { consecutive: number; ejectedUntil: number; connections: number; failures: number } {
    let h = endpointHealth.get(key);
    if (!h) endpointHealth.set(key, (h = { consecutive: 0, ejectedUntil: 0, connections: 0, failures: 0 }));
    return h;
  }

  /** One attempt: TLS to the peer's gateway, CONNECT, wait for the reply. Resolves the socket on 200. */
  function openTunnel(up: UpstreamPeer, ep: Endpoint, cand: EgressCandidate, client: ClientAttributes, importRef: string): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      const sessionKey = `${up.peer}@${ep.host}:${ep.port}`;
      const socket = tls.connect({
        host: ep.host,
        port: ep.port,
        servername: up.sni,
        secureContext: clientContext,
        minVersion: 'TLSv1.3',
        session: sessions.get(sessionKey),
        checkServerIdentity: (_host, cert) => {
          const err = tls.checkServerIdentity(up.sni, cert);
          if (err) return err;
          if (!pins.has(fingerprintOf(cert.raw))) return new Error(`certificate of ${up.peer} does not match its committed peer.pem`);
          return undefined;
        },
      });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`timed out after ${limits.upstreamTimeoutMs} ms`));
      }, limits.upstreamTimeoutMs);
      socket.on('session', (s: Buffer) => sessions.set(sessionKey, s));
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once('secureConnect', () => {
        socket.setNoDelay(true);
        const authority = TUNNEL.authority(cand.exportName, cand.exportNamespace);
        let head = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${TUNNEL.headers.importRef}: ${importRef}\r\n`;
        if (client.namespace !== undefined) head += `${TUNNEL.headers.clientNamespace}: ${client.namespace}\r\n`;
        if (client.serviceAccount !== undefined) head += `${TUNNEL.headers.clientServiceAccount}: ${client.serviceAccount}\r\n`;
        const labels = encodeLabels(client.labels);
        if (labels) head += `${TUNNEL.headers.clientLabels}: ${labels}\r\n`;
        socket.write(head + '\r\n');
        readHead(socket, { maxHeaderBytes: TUNNEL.limits.maxHeaderBytes, maxHeaders: TUNNEL.limits.maxHeaders, timeoutMs: limits.upstreamTimeoutMs })
          .then((replyHead) => {
            clearTimeout(timer);
            const reply = parseHead(replyHead, TUNNEL.limits.maxHeaders);
            const status = Number(reply.startLine[1]);
            if (status === 200) return resolve(socket);
            socket.destroy();
            const reason = reply.headers.get(TUNNEL.headers.denyReason);
            const err = new Error(`gateway of ${up.peer} answered ${status}${reason ? `: ${reason}` : ''}`) as Error & { status?: number };
            err.status = status;
            reject(err);
          })
          .catch((err: Error) => {
            clearTimeout(timer);
            socket.destroy();
            reject(err);
          });
      });
    });
  }

  async function onEgressConnection(cfg: EgressListenerConfig, downstream: net.Socket): Promise<void> {
    const started = performance.now();
    downstream.setNoDelay(true);
    downstream.pause();
    const s = importStats(cfg.importRef);
    s.connections++;
    const downstreamError = (): void => {
      downstream.destroy();
    };
    downstream.on('error', downstreamError);
    const check = { importNamespace: cfg.importNamespace, importName: cfg.importName, sourceAddress: downstream.remoteAddress ?? '', sourcePort: downstream.remotePort ?? 0 };
    const verdict = await authorizer.egress(check);
    if (!verdict.allowed) {
      s.denied++;
      log.warn({ direction: 'egress', import: cfg.importRef, source: check.sourceAddress, tier: verdict.explanation.tier, policy: verdict.explanation.policy, location: verdict.explanation.location }, `denied: ${verdict.explanation.message}`);
      downstream.destroy();
      return;
    }
    let attempt = 0;
    for (const cand of verdict.candidates) {
      if (downstream.destroyed) return;
      const up = config.upstreams.find((u) => u.peer === cand.peer);
      if (!up) continue;
      const now = Date.now();
      const endpoints = up.endpoints.filter((ep) => health(`${up.peer}@${ep.host}:${ep.port}`).ejectedUntil <= now);
      for (const ep of endpoints) {
        const key = `${up.peer}@${ep.host}:${ep.port}`;
        const h = health(key);
        h.connections++;
        if (attempt++ > 0) s.failovers++;
        try {
          const upstream = await openTunnel(up, ep, cand, verdict.client, cfg.importRef);
          h.consecutive = 0;
          if (downstream.destroyed) {
            upstream.destroy();
            return;
          }
          s.active++;
          s.setupMs.push(performance.now() - started);
          if (s.setupMs.length > SAMPLE_LIMIT) s.setupMs.splice(0, s.setupMs.length - SAMPLE_LIMIT);
          downstream.off('error', downstreamError);
          const tunnel: Tunnel = {
            side: 'egress',
            stillAllowed: async () => {
              const v = await authorizer.egress(check);
              return v.allowed && v.candidates.some((c) => c.peer === cand.peer && c.exportName === cand.exportName && c.exportNamespace === cand.exportNamespace) && config.upstreams.some((u) => u.peer === cand.peer);
            },
            destroy: () => {
              downstream.destroy();
              upstream.destroy();
            },
          };
          tunnels.add(tunnel);
          relay(downstream, upstream, (out, back) => {
            tunnels.delete(tunnel);
            s.active--;
            s.bytesOut += out;
            s.bytesIn += back;
          });
          return;
        } catch (err) {
          const status = (err as { status?: number }).status;
          // A policy refusal (403) says nothing about the exporter's health; anything else counts.
          if (status !== 403 && status !== 404) {
            h.failures++;
            if (++h.consecutive >= limits.ejectAfterFailures) {
              h.ejectedUntil = Date.now() + limits.ejectForMs;
              log.warn({ exporter: key }, `exporter endpoint ejected for ${limits.ejectForMs} ms after ${h.consecutive} consecutive failures`);
            }
          }
          log.info({ direction: 'egress', import: cfg.importRef, exporter: key }, `tunnel attempt failed: ${(err as Error).message}`);
        }
      }
    }
    s.failed++;
    log.warn({ direction: 'egress', import: cfg.importRef }, 'no exporter accepted the connection');
    downstream.destroy();
  }

  async function syncEgress(cfg: DataplaneConfig): Promise<void> {
    const wanted = new Map(cfg.egress.map((e) => [`${e.importRef}@${e.address}:${e.port}`, e]));
    for (const [key, { server }] of egressServers) {
      if (!wanted.has(key)) {
        egressServers.delete(key);
        await new Promise<void>((r) => server.close(() => r()));
      }
    }
    for (const [key, e] of wanted) {
      if (egressServers.has(key)) continue;
      const server = net.createServer({ noDelay: true, pauseOnConnect: true }, (sock) => {
        onEgressConnection(e, sock).catch((err: Error) => {
          log.error({ import: e.importRef, err: err.message }, 'egress connection failed');
          sock.destroy();
        });
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(e.port, e.address, () => {
          server.off('error', reject);
          resolve();
        });
      }).catch((err: Error) => {
        log.error({ import: e.importRef, address: `${e.address}:${e.port}`, err: err.message }, 'cannot listen for import');
        throw new Error(`cannot listen on ${e.address}:${e.port} for import ${e.importRef}: ${err.message}`);
      });
      egressServers.set(key, { server, cfg: e });
    }
  }

  // ---------------------------------------------------------------- ingress

  function reply(socket: tls.TLSSocket, status: number, text: string, reason?: string): void {
    const extra = reason ? `${TUNNEL.headers.denyReason}: ${reason.replace(/[\r\n]/g, ' ')}\r\n` : '';
    socket.end(`HTTP/1.1 ${status} ${text}\r\n${extra}Content-Length: 0\r\n\r\n`);
  }

  async function onIngress(socket: tls.TLSSocket): Promise<void> {
    stats.ingress.connections++;
    socket.setNoDelay(true);
    socket.on('error', () => socket.destroy());
    const cert = socket.getPeerX509Certificate();
    if (!cert) {
      countHandshakeFailure('no-client-certificate');
      socket.destroy();
      return;
    }
    const der = cert.raw;
    let head: string;
    try {
      head = await readHead(socket, { maxHeaderBytes: TUNNEL.limits.maxHeaderBytes, maxHeaders: TUNNEL.limits.maxHeaders, timeoutMs: TUNNEL.limits.headerTimeoutMs });
    } catch (err) {
      stats.ingress.badRequests++;
      const e = err as HeadError;
      log.warn({ direction: 'ingress', remote: socket.remoteAddress, status: e.status }, `refused: ${e.message}`);
      if (!socket.destroyed && e.status) reply(socket, e.status, e.status === 408 ? 'Request Timeout' : e.status === 431 ? 'Request Header Fields Too Large' : 'Bad Request');
      return;
    }
    let parsed;
    try {
      parsed = parseHead(head, TUNNEL.limits.maxHeaders);
    } catch (err) {
      stats.ingress.badRequests++;
      const e = err as HeadError;
      log.warn({ direction: 'ingress', remote: socket.remoteAddress }, `refused: ${e.message}`);
      reply(socket, e.status ?? 400, 'Bad Request');
      return;
    }
    const [method, authority, version] = parsed.startLine;
    const target = method === 'CONNECT' && version === 'HTTP/1.1' && authority ? parseAuthority(authority) : null;
    if (!target) {
      stats.ingress.badRequests++;
      log.warn({ direction: 'ingress', remote: socket.remoteAddress }, 'refused: not a CONNECT <export>.<namespace>:443 HTTP/1.1 request');
      reply(socket, 400, 'Bad Request');
      return;
    }
    const client: ClientAttributes = { labels: decodeLabels(parsed.headers.get(TUNNEL.headers.clientLabels)) };
    const ns = parsed.headers.get(TUNNEL.headers.clientNamespace);
    const sa = parsed.headers.get(TUNNEL.headers.clientServiceAccount);
    if (ns) client.namespace = ns.slice(0, 63);
    if (sa) client.serviceAccount = sa.slice(0, 253);
    const check = { peerCertificateDer: der, exportName: target.exportName, exportNamespace: target.exportNamespace, client };
    const verdict = await authorizer.ingress(check);
    if (!verdict.allowed) {
      stats.ingress.denied++;
      log.warn({ direction: 'ingress', peer: verdict.peer, export: `${target.exportNamespace}/${target.exportName}`, tier: verdict.explanation.tier, policy: verdict.explanation.policy, location: verdict.explanation.location }, `denied: ${verdict.explanation.message}`);
      reply(socket, verdict.status, verdict.status === 404 ? 'Not Found' : 'Forbidden', verdict.explanation.message);
      return;
    }
    const upstream = net.connect({ host: verdict.target.host, port: verdict.target.port, noDelay: true });
    const connected = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        upstream.destroy();
        resolve(false);
      }, limits.upstreamTimeoutMs);
      upstream.once('connect', () => {
        clearTimeout(timer);
        resolve(true);
      });
      upstream.once('error', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (!connected || socket.destroyed) {
      upstream.destroy();
      stats.ingress.upstreamFailures++;
      log.warn({ direction: 'ingress', peer: verdict.peer, target: `${verdict.target.host}:${verdict.target.port}` }, 'exported service unreachable');
      if (!socket.destroyed) reply(socket, 502, 'Bad Gateway');
      return;
    }
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    stats.ingress.active++;
    const tunnel: Tunnel = {
      side: 'ingress',
      stillAllowed: async () => {
        const v = await authorizer.ingress(check);
        return v.allowed && v.peer === verdict.peer && pins.has(fingerprintOf(der));
      },
      destroy: () => {
        socket.destroy();
        upstream.destroy();
      },
    };
    tunnels.add(tunnel);
    relay(socket, upstream, (toService, toPeer) => {
      tunnels.delete(tunnel);
      stats.ingress.active--;
      stats.ingress.bytesIn += toService;
      stats.ingress.bytesOut += toPeer;
    });
  }

  async function syncIngress(cfg: DataplaneConfig): Promise<void> {
    const key = cfg.ingress ? `${cfg.ingress.address}:${cfg.ingress.port}` : '';
    if (ingressServer && key === ingressKey) {
      ingressServer.setSecureContext(serverOptions(cfg));
      return;
    }
    if (ingressServer) {
      const old = ingressServer;
      ingressServer = null;
      await new Promise<void>((r) => old.close(() => r()));
    }
    ingressKey = key;
    if (!cfg.ingress) return;
    const server = tls.createServer({
      ...serverOptions(cfg),
      requestCert: true,
      rejectUnauthorized: true,
      handshakeTimeout: limits.handshakeTimeoutMs,
      noDelay: true,
    });
    server.maxConnections = limits.maxIngressConnections;
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      // The pin check is the first gate (cheap, before any parsing); the authorizer re-verifies the
      // full identity (chain, SAN, membership, revocation) from the same certificate.
      const cert = socket.getPeerX509Certificate();
      if (!cert || !pins.has(fingerprintOf(cert.raw))) {
        countHandshakeFailure('unpinned-certificate');
        log.warn({ direction: 'ingress', remote: socket.remoteAddress, subject: cert?.subject }, 'refused: client certificate is not a current member\'s committed peer.pem');
        socket.destroy();
        return;
      }
      onIngress(socket).catch((err: Error) => {
        log.error({ err: err.message }, 'ingress connection failed');
        socket.destroy();
      });
    });
    server.on('tlsClientError', (err: Error & { code?: string }, socket) => {
      const reason = err.code ?? 'tls-error';
      countHandshakeFailure(reason);
      log.warn({ direction: 'ingress', remote: socket.remoteAddress, reason }, `TLS handshake refused: ${err.message}`);
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(cfg.ingress!.port, cfg.ingress!.address, () => {
        server.off('error', reject);
        resolve();
      });
    });
    ingressServer = server;
  }

  async function apply(cfg: DataplaneConfig): Promise<void> {
    pins = new Set(cfg.tls.allowedPeerFingerprints);
    if (cfg.tls.certificatePem !== config.tls.certificatePem || cfg.tls.privateKeyPem !== config.tls.privateKeyPem || cfg.tls.caCertificatesPem.join() !== config.tls.caCertificatesPem.join()) {
      clientContext = makeClientContext(cfg);
      sessions.clear();
    }
    config = cfg;
    stats.version = cfg.version;
    await syncIngress(cfg);
    await syncEgress(cfg);
  }

  clientContext = makeClientContext(config);
  await syncIngress(config);
  await syncEgress(config);

  return {
    async update(cfg) {
      if (closing) return;
      await apply(cfg);
    },
    async revalidate() {
      let closed = 0;
      await Promise.all(
        [...tunnels].map(async (t) => {
          let ok = false;
          try {
            ok = await t.stillAllowed();
          } catch {
            ok = false;
          }
          if (!ok) {
            closed++;
            t.destroy();
            tunnels.delete(t);
          }
        }),
      );
      stats.revalidationsClosed += closed;
      if (closed > 0) log.info({ closed }, 'closed tunnels whose right was revoked');
      return closed;
    },
    stats() {
      for (const [key, h] of endpointHealth) stats.exporters[key] = { connections: h.connections, failures: h.failures, ejected: h.ejectedUntil > Date.now() };
      return stats;
    },
    addresses() {
      const ing = ingressServer?.address();
      const egress: Record<string, Endpoint> = {};
      for (const { server, cfg } of egressServers.values()) {
        const a = server.address();
        if (a && typeof a === 'object') egress[cfg.importRef] = { host: a.address, port: a.port };
      }
      return { ingress: ing && typeof ing === 'object' ? { host: ing.address, port: ing.port } : null, egress };
    },
    async close() {
      closing = true;
      for (const t of tunnels) t.destroy();
      tunnels.clear();
      const servers: net.Server[] = [...[...egressServers.values()].map((e) => e.server), ...(ingressServer ? [ingressServer] : [])];
      egressServers.clear();
      ingressServer = null;
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}
