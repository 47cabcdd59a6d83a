// The Node data plane: egress listeners (one per import) that open mutual-TLS HTTP CONNECT tunnels
// to exporting peers' gateways, and the ingress gateway that terminates them. Configured from a
// DataplaneConfig (built from xDS) and asking an Authorizer about every connection. Identity at
// the gateway comes only from the verified client certificate; headers carry client attributes,
// never identity.
// This file composes the parts and keeps egress: gateway.ts (ingress), tls-identity.ts (contexts,
// pins, sessions), endpoint-health.ts (ejection), spare-pool.ts (preconnect), tunnel-registry.ts
// (open tunnels, revalidation, idle sweep), stats.ts, relay.ts (the byte path).
import net from 'node:net';
import tls from 'node:tls';
import { pino, type Logger } from 'pino';
import {
  TUNNEL,
  type Authorizer,
  type ClientAttributes,
  type DataplaneConfig,
  type EgressCandidate,
  type EgressCheck,
  type EgressListenerConfig,
  type Endpoint,
  type UpstreamPeer,
} from './contracts.ts';
import { logLimiter } from './log-limiter.ts';
import { encodeLabels, HeadError, parseHead, readHead } from './connect-head.ts';
import { relay, type RelayHandle } from './relay.ts';
import { createEndpointHealth, endpointKey } from './endpoint-health.ts';
import { newImportStats, newIngressStats, withOpenBytes, type DataplaneStats, type ImportStats } from './stats.ts';
import { createTunnelRegistry, type Tunnel } from './tunnel-registry.ts';
import { createSparePools } from './spare-pool.ts';
import { createGateway, RELAY_HIGH_WATER_MARK, type WarnRefused } from './gateway.ts';
import { createTlsState } from './tls-identity.ts';

export type { DataplaneStats, ImportStats } from './stats.ts';

export interface DataplaneLimits {
  /** TLS handshake at the gateway. */
  handshakeTimeoutMs: number;
  /** Complete CONNECT request head at the gateway, from the end of the handshake (slow-loris bound; not reset by trickled bytes). */
  headerTimeoutMs: number;
  /** Upstream TCP connect + TLS + CONNECT reply, per attempt. */
  upstreamTimeoutMs: number;
  /** Concurrent connections at the gateway. */
  maxIngressConnections: number;
  /** Consecutive failures that eject an exporter endpoint, and for how long. */
  ejectAfterFailures: number;
  ejectForMs: number;
  /**
   * A tunnel that moved no byte in either direction for this long is closed on both sides (like
   * Envoy tcp_proxy's idle_timeout, default 1 h); 0 disables. Checked by one sweep per data plane
   * every idleTimeoutMs/10 (at most 15 s), so a close comes at most ~2 sweeps late, never early.
   */
  idleTimeoutMs: number;
  /**
   * Preconnect (like Envoy's cluster preconnect policy): when a tunnel to an exporter endpoint
   * closes, top up to this many spare TLS connections to that gateway, handshaken and verified but
   * carrying nothing, so the next tunnel skips the TLS handshake (or waits for one under way). Each
   * tunnel still gets a TLS connection of its own (a spare is used once, never shared or reused).
   * 0 disables.
   */
  preconnectSpares: number;
  /**
   * A spare unused for this long is closed and not replaced (demand has stopped). Must stay below
   * the gateway's request-head time-out (5 s here, TUNNEL.limits.headerTimeoutMs).
   */
  preconnectMaxIdleMs: number;
  /**
   * Warn lines per second per kind of refusal a remote party can cause (failed handshakes, bad
   * requests, denials); the rest are counted (metrics keep every one) and the next line passed
   * carries how many were suppressed (field `suppressed`).
   */
  refusalLogBurst: number;
}

export const DEFAULT_LIMITS: DataplaneLimits = {
  handshakeTimeoutMs: 5000,
  headerTimeoutMs: TUNNEL.limits.headerTimeoutMs,
  upstreamTimeoutMs: 5000,
  maxIngressConnections: 10_000,
  ejectAfterFailures: 3,
  ejectForMs: 10_000,
  idleTimeoutMs: 3_600_000,
  preconnectSpares: 2,
  preconnectMaxIdleMs: 3000,
  refusalLogBurst: 10,
};

export interface DataplaneOptions {
  config: DataplaneConfig;
  authorizer: Authorizer;
  logger?: Logger;
  limits?: Partial<DataplaneLimits>;
  /** Called once per tunnel that opened (local accept → CONNECT answered 200), e.g. to feed a latency histogram. */
  onTunnelSetup?: (importRef: string, seconds: number) => void;
}

export interface Dataplane {
  update(config: DataplaneConfig): Promise<void>;
  /**
   * Re-asks the authorizer about every open tunnel; closes those no longer allowed and resolves
   * how many. Tunnels it gets no decision for stay open and are asked about again (1 s, doubling to 30 s).
   */
  revalidate(): Promise<number>;
  stats(): DataplaneStats;
  /** Bound addresses (useful with port 0). */
  addresses(): { ingress: Endpoint | null; egress: Record<string, Endpoint> };
  close(): Promise<void>;
}


/** The gateway answered the CONNECT with something other than 200. */
class GatewayAnswer extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function startDataplane(opts: DataplaneOptions): Promise<Dataplane> {
  const log = opts.logger ?? pino({ level: 'silent' });
  const limits: DataplaneLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const authorizer = opts.authorizer;
  let config = opts.config;
  const tlsState = createTlsState(config.tls);
  const tunnels = createTunnelRegistry({ log, idleTimeoutMs: limits.idleTimeoutMs });
  const egressServers = new Map<string, { server: net.Server; cfg: EgressListenerConfig }>();
  const endpointHealth = createEndpointHealth({ ejectAfterFailures: limits.ejectAfterFailures, ejectForMs: limits.ejectForMs });
  /** Counters kept here; the exporters' and the open tunnels' are joined in at stats(). */
  const stats: Pick<DataplaneStats, 'version' | 'egress' | 'ingress' | 'handshakeFailures'> = { version: config.version, egress: {}, ingress: newIngressStats(), handshakeFailures: {} };
  let closing = false;

  // Lines a remote party can cause are rate-limited per category (log-limiter.ts); counters are not.
  const refusals = logLimiter({ burst: limits.refusalLogBurst, windowMs: 1000 });
  const warnRefused: WarnRefused = (category, fields, msg) => {
    const dropped = refusals.take(category);
    if (dropped === null) return;
    log.warn(dropped > 0 ? { ...fields, suppressed: dropped } : fields, msg);
  };

  const countHandshakeFailure = (reason: string): void => {
    stats.handshakeFailures[reason] = (stats.handshakeFailures[reason] ?? 0) + 1;
  };

  const gateway = createGateway({ log, limits, authorizer, tlsState, tunnels, stats: stats.ingress, countHandshakeFailure, warnRefused });

  // ---------------------------------------------------------------- egress

  function importStats(ref: string): ImportStats {
    let s = stats.egress[ref];
    if (!s) stats.egress[ref] = s = newImportStats();
    return s;
  }

  /** TLS to a peer's gateway, its identity checked (name and pin); resolves once the handshake is done. */
  function dialGateway(up: UpstreamPeer, ep: Endpoint, timeoutMs: number): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      const sessionKey = endpointKey(up.peer, ep);
      const { session, refresh } = tlsState.sessions.lookup(sessionKey);
      // highWaterMark reaches the TLSSocket (Node passes it through; not in the option types).
      const options: tls.ConnectionOptions & { highWaterMark: number; allowHalfOpen: boolean } = {
        host: ep.host,
        port: ep.port,
        // The relay carries half-close (relay.ts): a FIN from the gateway must not end our write side.
        allowHalfOpen: true,
        servername: up.sni,
        secureContext: tlsState.clientContext,
        minVersion: 'TLSv1.3',
        highWaterMark: RELAY_HIGH_WATER_MARK,
        session,
        // One function for every connection (an open tunnel's socket keeps it): no closure per attempt.
        checkServerIdentity: tlsState.checkGatewayIdentity,
      };
      const socket = tls.connect(options);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      // One ticket serves every connection to this gateway for SESSION_REFRESH_MS (tls-identity.ts): listening for
      // tickets makes Node serialise each one the server sends (two per TLS 1.3 handshake).
      // Reusing a ticket lets an observer link the connections (RFC 8446 C.4), which the fixed
      // address pair and SNI of a gateway-to-gateway tunnel reveal anyway; no 0-RTT is used.
      if (refresh) socket.once('session', tlsState.sessions.storer(sessionKey));
      const onError = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      socket.once('error', onError);
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        // The gateway did not take the stored ticket (restarted, keys rotated): keep one of this
        // connection's (TLS 1.3 tickets come after the handshake, so listening now is in time).
        const resumed = socket.isSessionReused();
        if (!refresh && !resumed) socket.once('session', tlsState.sessions.storer(sessionKey));
        endpointHealth.handshake(sessionKey, resumed);
        socket.setNoDelay(true);
        resolve(socket);
      });
    });
  }

  /**
   * CONNECT on a verified gateway connection; resolves the socket on 200. Rejects with a
   * GatewayAnswer when the gateway answered otherwise, with another error when the connection
   * failed before an answer.
   */
  function requestTunnel(socket: tls.TLSSocket, up: UpstreamPeer, cand: EgressCandidate, client: ClientAttributes, importRef: string, timeoutMs: number): Promise<tls.TLSSocket> {
    const authority = TUNNEL.authority(cand.exportName, cand.exportNamespace);
    let head = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${TUNNEL.headers.importRef}: ${importRef}\r\n`;
    if (client.namespace !== undefined) head += `${TUNNEL.headers.clientNamespace}: ${client.namespace}\r\n`;
    if (client.serviceAccount !== undefined) head += `${TUNNEL.headers.clientServiceAccount}: ${client.serviceAccount}\r\n`;
    const labels = encodeLabels(client.labels);
    if (labels) head += `${TUNNEL.headers.clientLabels}: ${labels}\r\n`;
    // readHead owns the socket's errors until it settles (a write error also closes the socket).
    socket.write(head + '\r\n');
    return readHead(socket, { maxHeaderBytes: TUNNEL.limits.maxHeaderBytes, maxHeaders: TUNNEL.limits.maxHeaders, timeoutMs }).then(
      (replyHead) => {
        const reply = parseHead(replyHead, TUNNEL.limits.maxHeaders, 'response');
        const status = Number(reply.startLine[1]);
        if (status === 200) return socket;
        socket.destroy();
        const reason = reply.headers.get(TUNNEL.headers.denyReason);
        throw new GatewayAnswer(status, `gateway of ${up.peer} answered ${status}${reason ? `: ${reason}` : ''}`);
      },
      (err: Error) => {
        socket.destroy();
        throw err;
      },
    );
  }

  /** One attempt: a spare connection if one is ready, else TLS to the peer's gateway; then CONNECT. */
  async function openTunnel(up: UpstreamPeer, ep: Endpoint, cand: EgressCandidate, client: ClientAttributes, importRef: string, s: ImportStats): Promise<tls.TLSSocket> {
    const spare = await spares.take(endpointKey(up.peer, ep));
    if (spare) {
      try {
        const socket = await requestTunnel(spare, up, cand, client, importRef, limits.upstreamTimeoutMs);
        s.preconnected++;
        return socket;
      } catch (err) {
        // An answer (403, 404, 502…) is the gateway's verdict, and silence until the time-out a
        // failure of the endpoint; a spare closed under us (the gateway restarted or timed it
        // out just now) says nothing about the endpoint: dial afresh.
        if (err instanceof GatewayAnswer || (err instanceof HeadError && err.status === 408)) throw err;
      }
    }
    const started = performance.now();
    const socket = await dialGateway(up, ep, limits.upstreamTimeoutMs);
    return requestTunnel(socket, up, cand, client, importRef, Math.max(1, limits.upstreamTimeoutMs - (performance.now() - started)));
  }

  // ---------------------------------------------------------------- preconnect

  /** Spare verified connections per exporter endpoint (see limits.preconnectSpares). */
  const spares = createSparePools<tls.TLSSocket>({ spares: limits.preconnectSpares, maxIdleMs: limits.preconnectMaxIdleMs, log });

  /** Tops the endpoint's spares up to limits.preconnectSpares; called when a tunnel to it closes. */
  function refillSpares(up: UpstreamPeer, ep: Endpoint): void {
    if (limits.preconnectSpares <= 0 || closing) return;
    const current = config.upstreams.find((u) => u.peer === up.peer);
    const key = endpointKey(up.peer, ep);
    if (!current?.endpoints.some((e) => e.host === ep.host && e.port === ep.port) || endpointHealth.isEjected(key)) return;
    spares.refill(key, () => dialGateway(up, ep, limits.upstreamTimeoutMs));
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
      warnRefused('denied', { direction: 'egress', import: cfg.importRef, source: check.sourceAddress, tier: verdict.explanation.tier, policy: verdict.explanation.policy, location: verdict.explanation.location }, `denied: ${verdict.explanation.message}`);
      downstream.destroy();
      return;
    }
    let attempt = 0;
    for (const cand of verdict.candidates) {
      if (downstream.destroyed) return;
      const up = config.upstreams.find((u) => u.peer === cand.peer);
      if (!up) continue;
      const endpoints = up.endpoints.filter((ep) => !endpointHealth.isEjected(endpointKey(up.peer, ep)));
      for (const ep of endpoints) {
        const key = endpointKey(up.peer, ep);
        endpointHealth.attempt(key);
        if (attempt++ > 0) s.failovers++;
        try {
          const upstream = await openTunnel(up, ep, cand, verdict.client, cfg.importRef, s);
          endpointHealth.succeeded(key);
          if (downstream.destroyed) {
            upstream.destroy();
            return;
          }
          s.active++;
          opts.onTunnelSetup?.(cfg.importRef, (performance.now() - started) / 1000);
          downstream.off('error', downstreamError);
          const tunnel = new EgressTunnel(downstream, upstream, check, cand, cfg.importRef);
          tunnels.add(tunnel);
          tunnel.relay = relay(downstream, upstream, (out, back) => {
            tunnels.delete(tunnel);
            s.active--;
            s.bytesOut += out;
            s.bytesIn += back;
            // The next tunnel to this endpoint should find a spare. Dialled when this one closes,
            // not when it opens: a handshake then would compete with this tunnel's first bytes.
            refillSpares(up, ep);
          });
          return;
        } catch (err) {
          const status = err instanceof GatewayAnswer ? err.status : undefined;
          // A policy refusal (403) says nothing about the exporter's health; anything else counts.
          if (status !== 403 && status !== 404) {
            const run = endpointHealth.failed(key);
            if (run !== null) log.warn({ exporter: key }, `exporter endpoint ejected for ${limits.ejectForMs} ms after ${run} consecutive failures`);
          }
          log.info({ direction: 'egress', import: cfg.importRef, exporter: key }, `tunnel attempt failed: ${(err as Error).message}`);
        }
      }
    }
    s.failed++;
    log.warn({ direction: 'egress', import: cfg.importRef }, 'no exporter accepted the connection');
    downstream.destroy();
  }

  /** An open tunnel at egress: what revalidation needs, no closures per tunnel. */
  class EgressTunnel implements Tunnel {
    readonly side = 'egress' as const;
    relay: RelayHandle | null = null;
    constructor(
      private readonly downstream: net.Socket,
      private readonly upstream: tls.TLSSocket,
      private readonly check: EgressCheck,
      private readonly cand: EgressCandidate,
      private readonly importRef: string,
    ) {}
    addOpenBytes(egress: Record<string, ImportStats>): void {
      const s = egress[this.importRef];
      if (!s) return;
      s.bytesOut += this.upstream.bytesWritten;
      s.bytesIn += this.downstream.bytesWritten;
    }
    async stillAllowed(): Promise<boolean | 'unknown'> {
      const cand = this.cand;
      const v = await authorizer.egress(this.check);
      if (!v.allowed && v.unavailable) return 'unknown';
      return v.allowed && v.candidates.some((c) => c.peer === cand.peer && c.exportName === cand.exportName && c.exportNamespace === cand.exportNamespace) && config.upstreams.some((u) => u.peer === cand.peer);
    }
    describe(): Record<string, string> {
      const c = this.cand;
      return { peer: c.peer, export: `${c.exportNamespace}/${c.exportName}`, import: `${this.check.importNamespace}/${this.check.importName}`, source: `${this.check.sourceAddress}:${this.check.sourcePort}` };
    }
    destroy(): void {
      this.downstream.destroy();
      this.upstream.destroy();
    }
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
      const server = net.createServer({ noDelay: true, pauseOnConnect: true, allowHalfOpen: true, highWaterMark: RELAY_HIGH_WATER_MARK }, (sock) => {
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

  async function apply(cfg: DataplaneConfig): Promise<void> {
    // Spares were verified against the old pins and identity, and may lead to endpoints no longer
    // in the config: start over (they refill on the next tunnel).
    spares.dropAll();
    tlsState.update(cfg.tls);
    config = cfg;
    stats.version = cfg.version;
    await gateway.sync(cfg);
    await syncEgress(cfg);
  }

  try {
    await gateway.sync(config);
    await syncEgress(config);
  } catch (err) {
    tunnels.close();
    throw err;
  }

  return {
    async update(cfg) {
      if (closing) return;
      await apply(cfg);
    },
    revalidate: () => tunnels.revalidate(),
    stats() {
      return { ...stats, ...withOpenBytes(stats.egress, stats.ingress, tunnels.flowing()), exporters: endpointHealth.snapshot(), ...tunnels.stats };
    },
    addresses() {
      const egress: Record<string, Endpoint> = {};
      for (const { server, cfg } of egressServers.values()) {
        const a = server.address();
        if (a && typeof a === 'object') egress[cfg.importRef] = { host: a.address, port: a.port };
      }
      return { ingress: gateway.address(), egress };
    },
    async close() {
      closing = true;
      spares.close();
      tunnels.close();
      const servers = [...egressServers.values()].map((e) => e.server);
      egressServers.clear();
      await Promise.all([...servers.map((s) => new Promise<void>((r) => s.close(() => r()))), gateway.close()]);
    },
  };
}
