// The Node data plane: egress listeners (one per import) that open mutual-TLS HTTP CONNECT tunnels
// to exporting peers' gateways, and the ingress gateway that terminates them. Configured from a
// DataplaneConfig (built from xDS) and asking an Authorizer about every connection. Identity at
// the gateway comes only from the verified client certificate; headers carry client attributes,
// never identity.
// This file holds the limits and the public interface, and composes the parts: egress.ts (import
// listeners, failover, dialling), gateway.ts (ingress), tls-identity.ts (contexts, pins, sessions),
// endpoint-health.ts (ejection), spare-pool.ts (preconnect), tunnel-registry.ts (open tunnels,
// revalidation, idle sweep), stats.ts, relay.ts (the byte path).
import { pino, type Logger } from 'pino';
import { TUNNEL, type Authorizer, type DataplaneConfig, type Endpoint } from '../protocol/contracts.ts';
import { createEgress } from './egress.ts';
import { createEndpointHealth } from './endpoint-health.ts';
import { createGateway, type WarnRefused } from './gateway.ts';
import { logLimiter } from './log-limiter.ts';
import { newIngressStats, withOpenBytes, type DataplaneStats } from './stats.ts';
import { createTlsState } from './tls-identity.ts';
import { createTunnelRegistry } from './tunnel-registry.ts';

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


export async function startDataplane(opts: DataplaneOptions): Promise<Dataplane> {
  const log = opts.logger ?? pino({ level: 'silent' });
  const limits: DataplaneLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const authorizer = opts.authorizer;
  let config = opts.config;
  const tlsState = createTlsState(config.tls);
  const tunnels = createTunnelRegistry({ log, idleTimeoutMs: limits.idleTimeoutMs });
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
  const egress = createEgress({ log, limits, authorizer, currentConfig: () => config, tlsState, endpointHealth, tunnels, stats: stats.egress, warnRefused, onTunnelSetup: opts.onTunnelSetup });


  async function apply(cfg: DataplaneConfig): Promise<void> {
    // Spares were verified against the old pins and identity, and may lead to endpoints no longer
    // in the config: start over (they refill on the next tunnel).
    egress.dropSpares();
    tlsState.update(cfg.tls);
    config = cfg;
    stats.version = cfg.version;
    await gateway.sync(cfg);
    await egress.sync(cfg);
  }

  try {
    await gateway.sync(config);
    await egress.sync(config);
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
      return { ingress: gateway.address(), egress: egress.addresses() };
    },
    async close() {
      closing = true;
      const egressClosed = egress.close();
      tunnels.close();
      await Promise.all([egressClosed, gateway.close()]);
    },
  };
}
