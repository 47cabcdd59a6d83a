// Preconnect (like Envoy's cluster preconnect policy): spare verified TLS connections per exporter
// endpoint, handshaken but carrying nothing, so that the next tunnel skips the handshake (or waits
// for one under way). A spare is used once, never shared or reused. No sockets are opened here:
// the owner passes the dial; timers use the injected clock's units (ms).
import type { Logger } from 'pino';

/** What the pool needs of a connection (a tls.TLSSocket in the data plane). */
export interface SpareSocket {
  readonly destroyed: boolean;
  readonly readyState: string;
  on(event: 'data' | 'end' | 'error' | 'close', listener: (this: SpareSocket) => void): unknown;
  off(event: 'data' | 'end' | 'error' | 'close', listener: (this: SpareSocket) => void): unknown;
  pause(): unknown;
  destroy(): unknown;
}

export interface SparePoolOptions {
  /** Spares to keep per endpoint (limits.preconnectSpares). */
  spares: number;
  /** A spare unused this long is closed, and its endpoint's refills pause for twice that (limits.preconnectMaxIdleMs). */
  maxIdleMs: number;
  log: Logger;
  /** Monotonic clock in ms (performance.now by default). */
  now?: () => number;
}

export interface SparePools<S extends SpareSocket> {
  /**
   * A ready spare of the endpoint (paused, so that no reply byte is lost before its reader
   * listens), or the next one to finish its handshake; null when there is none to wait for.
   * Rejects when the awaited handshake failed: a failure of the endpoint, as if dialled here.
   */
  take(key: string): Promise<S | null> | S | null;
  /** Tops the endpoint's spares up with `dial` (unless its refills are paused after a spare expired unused). */
  refill(key: string, dial: () => Promise<S>): void;
  /** Drops every spare and waiter, and voids handshakes under way (trust or identity changed). */
  dropAll(): void;
  /** dropAll, and no spare is kept from now on. */
  close(): void;
}

interface Spare<S> {
  socket: S;
  timer: NodeJS.Timeout;
}

interface Pool<S> {
  /** Youngest last. */
  ready: Spare<S>[];
  dialling: number;
  /**
   * Tunnels waiting for a spare still in its handshake (rather than starting a handshake of their
   * own, which would finish later): given the socket, null to dial themselves, or the dial's error.
   */
  waiting: Array<{ resolve(socket: S | null): void; reject(err: Error): void }>;
  /** No refill before this (now()): a spare expired unused, demand is too sparse to keep one warm. */
  coldUntil: number;
}

/** A spare must stay silent: any byte, end or error from the gateway means it is no longer usable. */
function onSpareUnusable(this: SpareSocket): void {
  this.destroy();
}

export function createSparePools<S extends SpareSocket>(opts: SparePoolOptions): SparePools<S> {
  const now = opts.now ?? (() => performance.now());
  const pools = new Map<string, Pool<S>>();
  /** Bumped when trust or identity changes: spares dialled under an older generation are dropped. */
  let generation = 0;
  let closed = false;

  function poolOf(key: string): Pool<S> {
    let pool = pools.get(key);
    if (!pool) pools.set(key, (pool = { ready: [], dialling: 0, waiting: [], coldUntil: 0 }));
    return pool;
  }

  function drop(key: string, spare: Spare<S>): void {
    clearTimeout(spare.timer);
    const pool = pools.get(key);
    if (pool) {
      const i = pool.ready.indexOf(spare);
      if (i >= 0) pool.ready.splice(i, 1);
    }
    spare.socket.destroy();
  }

  /**
   * A spare unused for maxIdleMs: closed, and the endpoint's refills pause for twice that, so that
   * connections arriving just slower than spares live do not pay for unused spares after every one
   * of them (at most one round of spares per three such connections).
   */
  function expire(key: string, spare: Spare<S>): void {
    const pool = pools.get(key);
    if (pool) pool.coldUntil = now() + 2 * opts.maxIdleMs;
    drop(key, spare);
  }

  function spareClosed(this: SpareSocket): void {
    for (const [key, pool] of pools) {
      const spare = pool.ready.find((sp) => sp.socket === this);
      if (spare) return drop(key, spare);
    }
  }

  function dropAll(): void {
    generation++;
    for (const [key, pool] of pools) {
      for (const spare of [...pool.ready]) drop(key, spare);
      for (const waiter of pool.waiting.splice(0)) waiter.resolve(null);
    }
    pools.clear();
  }

  return {
    take(key) {
      const pool = pools.get(key);
      if (!pool) return null;
      let spare: Spare<S> | undefined;
      while ((spare = pool.ready.pop())) {
        clearTimeout(spare.timer);
        const socket = spare.socket;
        socket.off('data', onSpareUnusable);
        socket.off('end', onSpareUnusable);
        socket.off('error', onSpareUnusable);
        socket.off('close', spareClosed);
        socket.pause();
        if (!socket.destroyed && socket.readyState === 'open') return socket;
        socket.destroy();
      }
      if (pool.dialling > pool.waiting.length) return new Promise<S | null>((resolve, reject) => pool.waiting.push({ resolve, reject }));
      return null;
    },
    refill(key, dial) {
      if (closed) return;
      const pool = poolOf(key);
      if (pool.coldUntil > now()) return;
      const dialledIn = generation;
      while (pool.ready.length + pool.dialling < opts.spares) {
        pool.dialling++;
        dial().then(
          (socket) => {
            pool.dialling--;
            if (dialledIn !== generation || closed || pools.get(key) !== pool) return void socket.destroy();
            const waiter = pool.waiting.shift();
            if (waiter) return waiter.resolve(socket);
            const spare: Spare<S> = { socket, timer: setTimeout(() => expire(key, spare), opts.maxIdleMs).unref() };
            socket.on('data', onSpareUnusable);
            socket.on('end', onSpareUnusable);
            socket.on('error', onSpareUnusable);
            socket.on('close', spareClosed);
            pool.ready.push(spare);
          },
          (err: Error) => {
            pool.dialling--;
            opts.log.debug({ exporter: key, err: err.message }, 'preconnect failed');
            pool.waiting.shift()?.reject(err);
          },
        );
      }
    },
    dropAll,
    close() {
      closed = true;
      dropAll();
    },
  };
}
