import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { RelayHandle } from './relay.ts';
import { createTunnelRegistry, REVALIDATE_RETRY_MIN_MS, type Tunnel } from './tunnel-registry.ts';

const log = pino({ level: 'silent' });

/** A tunnel without sockets: its right is whatever `allowed` says now; `idleMs` is what its relay reports. */
function fakeTunnel(allowed: () => boolean | 'unknown' | Promise<never>, idleMs = 0) {
  const handle = { closed: false, idleMs };
  const t: Tunnel & { destroyed: boolean; handle: typeof handle } = {
    side: 'egress',
    relay: handle as RelayHandle,
    destroyed: false,
    handle,
    stillAllowed: () => Promise.resolve(allowed()),
    describe: () => ({ peer: 'west' }),
    addOpenBytes() {},
    destroy() {
      t.destroyed = true;
    },
  };
  return t;
}

const idleFor = (h: RelayHandle): number => (h as RelayHandle & { idleMs: number }).idleMs;

afterEach(() => {
  vi.useRealTimers();
});

describe('tunnel registry', () => {
  it('revalidate closes the tunnels no longer allowed (or whose check threw) and keeps the rest', async () => {
    const registry = createTunnelRegistry({ log, idleTimeoutMs: 0 });
    const kept = fakeTunnel(() => true);
    const revoked = fakeTunnel(() => false);
    const broken = fakeTunnel(() => Promise.reject(new Error('boom')) as Promise<never>);
    for (const t of [kept, revoked, broken]) registry.add(t);
    expect(await registry.revalidate()).toBe(2);
    expect([kept.destroyed, revoked.destroyed, broken.destroyed]).toEqual([false, true, true]);
    expect([...registry.flowing()]).toEqual([kept]);
    expect(registry.stats).toMatchObject({ revalidations: 1, revalidationsClosed: 2, revalidationsDeferred: 0 });
    registry.close();
    expect(kept.destroyed).toBe(true);
  });

  it('keeps tunnels it gets no decision for and asks again after 1 s, 2 s, … until a decision comes', async () => {
    vi.useFakeTimers();
    const registry = createTunnelRegistry({ log, idleTimeoutMs: 0 });
    let verdict: boolean | 'unknown' = 'unknown';
    const t = fakeTunnel(() => verdict);
    registry.add(t);
    expect(await registry.revalidate()).toBe(0);
    expect(t.destroyed).toBe(false);
    await vi.advanceTimersByTimeAsync(REVALIDATE_RETRY_MIN_MS);
    expect(registry.stats.revalidations).toBe(2);
    await vi.advanceTimersByTimeAsync(2 * REVALIDATE_RETRY_MIN_MS - 1);
    expect(registry.stats.revalidations).toBe(2);
    verdict = false;
    await vi.advanceTimersByTimeAsync(1);
    expect(registry.stats).toMatchObject({ revalidations: 3, revalidationsDeferred: 2, revalidationsClosed: 1 });
    expect(t.destroyed).toBe(true);
    // A decision was had: no further retry.
    await vi.advanceTimersByTimeAsync(60_000);
    expect(registry.stats.revalidations).toBe(3);
    registry.close();
  });

  it('stops retrying once closed', async () => {
    vi.useFakeTimers();
    const registry = createTunnelRegistry({ log, idleTimeoutMs: 0 });
    registry.add(fakeTunnel(() => 'unknown'));
    await registry.revalidate();
    registry.close();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(registry.stats.revalidations).toBe(1);
  });

  it('the idle sweep closes tunnels idle for idleTimeoutMs, not those below it nor those not yet relaying', () => {
    const registry = createTunnelRegistry({ log, idleTimeoutMs: 1000, idleFor });
    const idle = fakeTunnel(() => true, 1000);
    const busy = fakeTunnel(() => true, 999);
    const opening = fakeTunnel(() => true, 5000);
    opening.relay = null;
    for (const t of [idle, busy, opening]) registry.add(t);
    registry.sweepIdle();
    expect([idle.destroyed, busy.destroyed, opening.destroyed]).toEqual([true, false, false]);
    expect(registry.stats.idleClosed).toBe(1);
    // A relay that closed by itself is not counted in the bytes of open tunnels.
    busy.handle.closed = true;
    expect([...registry.flowing()]).toEqual([]);
    registry.close();
  });

  it('sweeps by itself every idleTimeoutMs/10', async () => {
    vi.useFakeTimers();
    const registry = createTunnelRegistry({ log, idleTimeoutMs: 1000, idleFor });
    const t = fakeTunnel(() => true, 0);
    registry.add(t);
    await vi.advanceTimersByTimeAsync(100);
    expect(t.destroyed).toBe(false);
    t.handle.idleMs = 1000;
    await vi.advanceTimersByTimeAsync(100);
    expect(t.destroyed).toBe(true);
    registry.close();
  });
});
