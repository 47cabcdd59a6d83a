// The data plane's counters as reported by stats() (and exported as metrics by the runtime), and
// the one computation on them: adding what open tunnels carried so far to a copy of the totals.
import type { EndpointCounters } from './endpoint-health.ts';

export interface ImportStats {
  connections: number;
  active: number;
  denied: number;
  failed: number;
  failovers: number;
  /** Tunnels that started on a preconnected spare TLS connection (its handshake begun before the tunnel was asked for). */
  preconnected: number;
  /** Bytes from local clients to exporters, and back: closed tunnels plus what open ones carried so far. */
  bytesOut: number;
  bytesIn: number;
}

export interface IngressStats {
  /** TLS connections that passed the pin check (a peer's preconnected spares included). */
  connections: number;
  /** Complete request heads received: one per tunnel attempt (a spare closed unused sends none). */
  requests: number;
  active: number;
  denied: number;
  badRequests: number;
  upstreamFailures: number;
  bytesIn: number;
  bytesOut: number;
}

/** Counters of the re-checks and time-outs of open tunnels (tunnel-registry.ts). */
export interface TunnelStats {
  /** Re-checks of every open tunnel (revalidate() calls and their retries). */
  revalidations: number;
  /** Open tunnels kept because no authorization decision could be had during a re-check (retried until one is). */
  revalidationsDeferred: number;
  revalidationsClosed: number;
  /** Tunnels closed by the idle time-out (limits.idleTimeoutMs). */
  idleClosed: number;
}

export interface DataplaneStats extends TunnelStats {
  version: string;
  egress: Record<string, ImportStats>;
  /** Per exporter endpoint `peer@host:port`: attempts, failures, times ejected, whether ejected now, TLS handshakes completed and how many resumed a session. */
  exporters: Record<string, EndpointCounters>;
  ingress: IngressStats;
  handshakeFailures: Record<string, number>;
}

/** An open tunnel's share of the byte counters (closed tunnels are in the totals). */
export interface OpenBytes {
  addOpenBytes(egress: Record<string, ImportStats>, ingress: IngressStats): void;
}

export function newImportStats(): ImportStats {
  return { connections: 0, active: 0, denied: 0, failed: 0, failovers: 0, preconnected: 0, bytesOut: 0, bytesIn: 0 };
}

export function newIngressStats(): IngressStats {
  return { connections: 0, requests: 0, active: 0, denied: 0, badRequests: 0, upstreamFailures: 0, bytesIn: 0, bytesOut: 0 };
}

/**
 * Copies of the egress and ingress counters with what open tunnels carried so far added (a tunnel
 * open for hours is not invisible until it closes); the totals themselves are not modified.
 */
export function withOpenBytes(egressTotals: Record<string, ImportStats>, ingressTotals: IngressStats, open: Iterable<OpenBytes>): { egress: Record<string, ImportStats>; ingress: IngressStats } {
  const egress: Record<string, ImportStats> = {};
  for (const [ref, s] of Object.entries(egressTotals)) egress[ref] = { ...s };
  const ingress = { ...ingressTotals };
  for (const t of open) t.addOpenBytes(egress, ingress);
  return { egress, ingress };
}
