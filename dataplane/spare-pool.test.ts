import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createSparePools, type SpareSocket } from './spare-pool.ts';

/** A connection without a socket: open until destroyed; 'close' follows destroy like a real one. */
class FakeSocket extends EventEmitter implements SpareSocket {
  destroyed = false;
  paused = false;
  get readyState(): string {
    return this.destroyed ? 'closed' : 'open';
  }
  pause(): this {
    this.paused = true;
    return this;
  }
  destroy(): this {
    if (!this.destroyed) {
      this.destroyed = true;
      this.emit('close');
    }
    return this;
  }
}

const log = pino({ level: 'silent' });
const KEY = 'west@10.0.0.1:443';
const MAX_IDLE_MS = 300;

/** Dials that the test settles by hand. */
function dialer() {
  const pending: Array<{ resolve(s: FakeSocket): void; reject(e: Error): void }> = [];
  const dial = (): Promise<FakeSocket> => new Promise((resolve, reject) => pending.push({ resolve, reject }));
  return { dial, pending };
}

let t = 0;
const pools = () => createSparePools<FakeSocket>({ spares: 2, maxIdleMs: MAX_IDLE_MS, log, now: () => t });

beforeEach(() => {
  vi.useFakeTimers();
  t = 0;
});
afterEach(() => {
  vi.useRealTimers();
});

describe('spare pool', () => {
  it('tops up to the configured number, hands out the youngest spare paused and detached, once', async () => {
    const sp = pools();
    const { dial, pending } = dialer();
    expect(sp.take(KEY)).toBeNull();
    sp.refill(KEY, dial);
    sp.refill(KEY, dial);
    expect(pending).toHaveLength(2);
    const [a, b] = [new FakeSocket(), new FakeSocket()];
    pending[0]!.resolve(a);
    pending[1]!.resolve(b);
    await vi.advanceTimersByTimeAsync(0);
    const taken = sp.take(KEY);
    expect(taken).toBe(b);
    expect(b.paused).toBe(true);
    expect(b.listenerCount('data') + b.listenerCount('close')).toBe(0);
    expect(sp.take(KEY)).toBe(a);
    expect(sp.take(KEY)).toBeNull();
  });

  it('a tunnel waits for a spare still in its handshake, and gets the dial\'s error if it fails', async () => {
    const sp = pools();
    const { dial, pending } = dialer();
    sp.refill(KEY, dial);
    const first = sp.take(KEY);
    const second = sp.take(KEY);
    const third = sp.take(KEY);
    expect(first).toBeInstanceOf(Promise);
    expect(second).toBeInstanceOf(Promise);
    // Two handshakes under way, two waiters: a third tunnel dials itself.
    expect(third).toBeNull();
    const s = new FakeSocket();
    pending[0]!.resolve(s);
    pending[1]!.reject(new Error('timed out after 5000 ms'));
    await expect(first).resolves.toBe(s);
    await expect(second).rejects.toThrow('timed out');
  });

  it('a spare that hears from the gateway (byte, end, error, close) is dropped, never handed out', async () => {
    const sp = pools();
    const { dial, pending } = dialer();
    sp.refill(KEY, dial);
    const [a, b] = [new FakeSocket(), new FakeSocket()];
    pending[0]!.resolve(a);
    pending[1]!.resolve(b);
    await vi.advanceTimersByTimeAsync(0);
    b.emit('data', Buffer.from('x'));
    expect(b.destroyed).toBe(true);
    a.emit('end');
    expect(a.destroyed).toBe(true);
    expect(sp.take(KEY)).toBeNull();
  });

  it('a spare unused for maxIdleMs is closed, and refills pause for twice that', async () => {
    const sp = pools();
    const { dial, pending } = dialer();
    sp.refill(KEY, dial);
    const spares = [new FakeSocket(), new FakeSocket()];
    pending.splice(0).forEach((p, i) => p.resolve(spares[i]!));
    await vi.advanceTimersByTimeAsync(MAX_IDLE_MS);
    expect(spares.map((s) => s.destroyed)).toEqual([true, true]);
    t = MAX_IDLE_MS;
    sp.refill(KEY, dial);
    expect(pending).toHaveLength(0);
    t = 3 * MAX_IDLE_MS;
    sp.refill(KEY, dial);
    expect(pending).toHaveLength(2);
  });

  it('dropAll closes the spares, releases waiters to dial themselves and discards handshakes under way', async () => {
    const sp = pools();
    const { dial, pending } = dialer();
    sp.refill(KEY, dial);
    const ready = new FakeSocket();
    pending[0]!.resolve(ready);
    await vi.advanceTimersByTimeAsync(0);
    sp.take(KEY); // takes `ready`
    const waiter = sp.take(KEY);
    sp.dropAll();
    await expect(waiter).resolves.toBeNull();
    const late = new FakeSocket();
    pending[1]!.resolve(late);
    await vi.advanceTimersByTimeAsync(0);
    expect(late.destroyed).toBe(true);
    expect(sp.take(KEY)).toBeNull();
    sp.close();
    sp.refill(KEY, dial);
    expect(pending).toHaveLength(2);
  });
});
