// Egress: one local listener per import. Each connection is authorized (the Authorizer picks the
// candidate exporters), then tunnelled over mutual TLS and HTTP CONNECT to the first exporter
// endpoint that answers 200 (failing over across endpoints and peers, ejecting endpoints that keep
// failing), on a preconnected spare connection when one is ready.
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { TUNNEL, type Authorizer, type ClientAttributes, type DataplaneConfig, type EgressCandidate, type EgressCheck, type EgressListenerConfig, type Endpoint, type UpstreamPeer } from '../protocol/contracts.ts';
import { encodeLabels, HeadError, parseHead, readHead } from '../protocol/connect-head.ts';
import { endpointKey, type EndpointHealth } from './endpoint-health.ts';
import { RELAY_HIGH_WATER_MARK, type WarnRefused } from './gateway.ts';
import { relay, type RelayHandle } from './relay.ts';
import { createSparePools } from './spare-pool.ts';
import { newImportStats, type ImportStats } from './stats.ts';
import type { TlsState } from './tls-identity.ts';
import type { Tunnel, TunnelRegistry } from './tunnel-registry.ts';

/** The gateway answered the CONNECT with something other than 200. */
class GatewayAnswer extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface EgressOptions {
  log: Logger;
  limits: { upstreamTimeoutMs: number; ejectForMs: number; preconnectSpares: number; preconnectMaxIdleMs: number };
  authorizer: Authorizer;
  /** The config in force (upstreams change with it). */
  currentConfig(): DataplaneConfig;
  tlsState: TlsState;
  endpointHealth: EndpointHealth;
  tunnels: TunnelRegistry;
  /** The data plane's per-import counters, updated in place. */
  stats: Record<string, ImportStats>;
  warnRefused: WarnRefused;
  onTunnelSetup?: (importRef: string, seconds: number) => void;
}

export interface Egress {
  /** Listens for exactly the imports of `cfg` (listeners of unchanged imports stay). */
  sync(cfg: DataplaneConfig): Promise<void>;
  /** Drops every spare: they were verified against the previous pins and identity. */
  dropSpares(): void;
  addresses(): Record<string, Endpoint>;
  /** No new spares or connections; resolves once the listeners are closed (open tunnels are the registry's). */
  close(): Promise<void>;
}

export function createEgress(opts: EgressOptions): Egress {
  const { log, limits, authorizer, currentConfig, tlsState, endpointHealth, tunnels, stats, warnRefused, onTunnelSetup } = opts;
  const egressServers = new Map<string, { server: net.Server; cfg: EgressListenerConfig }>();
  let closing = false;

  function importStats(ref: string): ImportStats {
    let s = stats[ref];
    if (!s) stats[ref] = s = newImportStats();
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

  /** Spare verified connections per exporter endpoint (see limits.preconnectSpares). */
  const spares = createSparePools<tls.TLSSocket>({ spares: limits.preconnectSpares, maxIdleMs: limits.preconnectMaxIdleMs, log });

  /** Tops the endpoint's spares up to limits.preconnectSpares; called when a tunnel to it closes. */
  function refillSpares(up: UpstreamPeer, ep: Endpoint): void {
    if (limits.preconnectSpares <= 0 || closing) return;
    const current = currentConfig().upstreams.find((u) => u.peer === up.peer);
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
      const up = currentConfig().upstreams.find((u) => u.peer === cand.peer);
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
          onTunnelSetup?.(cfg.importRef, (performance.now() - started) / 1000);
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
      return v.allowed && v.candidates.some((c) => c.peer === cand.peer && c.exportName === cand.exportName && c.exportNamespace === cand.exportNamespace) && currentConfig().upstreams.some((u) => u.peer === cand.peer);
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

  async function sync(cfg: DataplaneConfig): Promise<void> {
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

  return {
    sync,
    dropSpares: () => spares.dropAll(),
    addresses() {
      const egress: Record<string, Endpoint> = {};
      for (const { server, cfg } of egressServers.values()) {
        const a = server.address();
        if (a && typeof a === 'object') egress[cfg.importRef] = { host: a.address, port: a.port };
      }
      return egress;
    },
    close() {
      closing = true;
      spares.close();
      const servers = [...egressServers.values()].map((e) => e.server);
      egressServers.clear();
      return Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r())))).then(() => undefined);
    },
  };
}
