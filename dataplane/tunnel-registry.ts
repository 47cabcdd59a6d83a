// The open tunnels of a data plane (both sides) and what is done to all of them at once: the
// re-check of their right (revalidate, retried with backoff while no decision can be had) and the
// idle time-out sweep. No sockets here: a tunnel is an object that can re-check and destroy itself.
import type { Logger } from 'pino';
import { idleFor as relayIdleFor, type RelayHandle } from './relay.ts';
import type { OpenBytes, TunnelStats } from './stats.ts';

export interface Tunnel extends OpenBytes {
  side: 'egress' | 'ingress';
  /** Set once bytes flow (the relay started); the idle sweep reads it. */
  relay: RelayHandle | null;
  /** Re-check this tunnel's right: false when it must close, 'unknown' when no decision could be had. */
  stillAllowed(): Promise<boolean | 'unknown'>;
  /** Who and what, for log lines. */
  describe(): Record<string, string>;
  destroy(): void;
}

/** Re-check of open tunnels that got no decision: first retry after this, doubling up to the max. */
export const REVALIDATE_RETRY_MIN_MS = 1000;
export const REVALIDATE_RETRY_MAX_MS = 30_000;

export interface TunnelRegistryOptions {
  log: Logger;
  /** A tunnel that moved no byte in either direction for this long is closed; 0 disables the sweep. */
  idleTimeoutMs: number;
  /** How long a relay has been idle (relay.ts idleFor; replaced in tests). */
  idleFor?: (relay: RelayHandle, now: number) => number;
  /** Monotonic clock in ms for the idle sweep (performance.now by default). */
  now?: () => number;
}

export interface TunnelRegistry {
  add(tunnel: Tunnel): void;
  /** The tunnel closed by itself (its relay ended). */
  delete(tunnel: Tunnel): void;
  /** Tunnels whose relay is running: the ones whose bytes so far count in the stats. */
  flowing(): Iterable<Tunnel>;
  /**
   * Re-asks about every open tunnel; closes those no longer allowed and resolves how many. Tunnels
   * with no decision stay open and are asked about again (1 s, doubling to 30 s).
   */
  revalidate(): Promise<number>;
  /** One sweep for all tunnels: closes those idle for idleTimeoutMs (run periodically by the registry itself). */
  sweepIdle(): void;
  readonly stats: Readonly<TunnelStats>;
  /** Stops the sweep and any retry, destroys every open tunnel. */
  close(): void;
}

export function createTunnelRegistry(opts: TunnelRegistryOptions): TunnelRegistry {
  const { log, idleTimeoutMs } = opts;
  const idleFor = opts.idleFor ?? relayIdleFor;
  const now = opts.now ?? (() => performance.now());
  const tunnels = new Set<Tunnel>();
  const stats: TunnelStats = { revalidations: 0, revalidationsDeferred: 0, revalidationsClosed: 0, idleClosed: 0 };
  let closed = false;
  /** Retry of a re-check that could not reach a decision for some tunnels (authorization service away). */
  let revalidateRetry: NodeJS.Timeout | null = null;
  let revalidateBackoffMs = REVALIDATE_RETRY_MIN_MS;

  async function revalidate(): Promise<number> {
    if (revalidateRetry) clearTimeout(revalidateRetry);
    revalidateRetry = null;
    stats.revalidations++;
    let closedNow = 0;
    let unknown = 0;
    await Promise.all(
      [...tunnels].map(async (t) => {
        let verdict: boolean | 'unknown' = false;
        try {
          verdict = await t.stillAllowed();
        } catch {
          verdict = false;
        }
        if (verdict === 'unknown') {
          unknown++;
        } else if (!verdict && tunnels.has(t)) {
          closedNow++;
          t.destroy();
          tunnels.delete(t);
        }
      }),
    );
    stats.revalidationsClosed += closedNow;
    stats.revalidationsDeferred += unknown;
    if (closedNow > 0) log.info({ closed: closedNow }, 'closed tunnels whose right was revoked');
    if (unknown > 0 && !closed) {
      // An outage of the authorization service is no reason to cut working tunnels, nor to keep a
      // revoked one for good: keep them and ask again until a decision is had.
      log.warn({ kept: unknown, retryInMs: revalidateBackoffMs }, `authorization service unavailable: ${unknown} open tunnel(s) kept unchecked, re-checking in ${revalidateBackoffMs} ms`);
      revalidateRetry = setTimeout(() => void revalidate(), revalidateBackoffMs).unref();
      revalidateBackoffMs = Math.min(REVALIDATE_RETRY_MAX_MS, revalidateBackoffMs * 2);
    } else {
      revalidateBackoffMs = REVALIDATE_RETRY_MIN_MS;
    }
    return closedNow;
  }

  function sweepIdle(): void {
    const t0 = now();
    for (const t of tunnels) {
      if (!t.relay) continue;
      const idleMs = idleFor(t.relay, t0);
      if (idleMs < idleTimeoutMs) continue;
      tunnels.delete(t);
      t.destroy();
      stats.idleClosed++;
      log.debug({ direction: t.side, ...t.describe(), idleMs: Math.round(idleMs) }, `closed idle tunnel: no byte in either direction for ${Math.round(idleMs)} ms (idleTimeoutMs ${idleTimeoutMs})`);
    }
  }
  // Checked every idleTimeoutMs/10 (at most 15 s): a close comes at most ~2 sweeps late, never early.
  const idleSweep = idleTimeoutMs > 0 ? setInterval(sweepIdle, Math.min(15_000, Math.max(10, Math.floor(idleTimeoutMs / 10)))).unref() : null;

  return {
    add: (t) => void tunnels.add(t),
    delete: (t) => void tunnels.delete(t),
    *flowing() {
      for (const t of tunnels) if (t.relay && !t.relay.closed) yield t;
    },
    revalidate,
    sweepIdle,
    stats,
    close() {
      closed = true;
      if (idleSweep) clearInterval(idleSweep);
      if (revalidateRetry) clearTimeout(revalidateRetry);
      for (const t of tunnels) t.destroy();
      tunnels.clear();
    },
  };
}
