// The byte relay between the two sockets of a tunnel, written for the data path's two costs:
//  - per byte: a TLS socket hands decrypted data to JS in 16 KiB chunks (Node's TLSWrap), so a
//    64 KiB TCP read at the gateway became four 16 KiB writes (four syscalls, four write requests).
//    Consecutive full chunks are corked and leave as one writev, flushed by the first short chunk
//    or, at the latest, once the current I/O phase is over (setImmediate);
//  - per idle tunnel: stream.pipe registers ~18 closures (and their contexts and listener arrays)
//    per tunnel. Here the listeners are module-level functions and the per-tunnel state is one
//    object reachable from both sockets, so an idle tunnel holds no closure of its own.
// Backpressure is explicit: a write that returns false pauses the source until the destination's
// 'drain'. Half-close is carried like Envoy's tcp_proxy: a FIN read on one side is passed on (end()
// on the other, after what is queued), the other direction keeps flowing, and the tunnel is done
// when both directions have ended. An error, a reset or a destroy by the owner tears both down.
// Both sockets must be created with allowHalfOpen: true (else Node ends the write side on FIN).
// Idle time-out without a timer per tunnel or per chunk: the data handler only sets a flag, and
// the owner's periodic sweep (idleFor) turns flag and write-queue changes into a timestamp.
import type net from 'node:net';

/** Largest chunk a TLSSocket emits (Node's kClearOutChunkSize): a full one means more may follow. */
const FULL_CHUNK = 16 * 1024;
const STATE = Symbol('clusterlink.relay');
/** TCP keepalive on both sockets of a tunnel: first probe after this much silence. */
export const KEEPALIVE_DELAY_MS = 30_000;

interface RelayState {
  a: net.Socket;
  b: net.Socket;
  closed: boolean;
  /** A chunk arrived on either side since the last sweep. */
  moved: boolean;
  /** Bytes queued for writing on both sides at the last sweep (a slow reader draining them is activity too). */
  queued: number;
  /** performance.now() of the last sweep that saw activity (or of the start). */
  activeAt: number;
  onClose: (bytesAtoB: number, bytesBtoA: number) => void;
}

/** What the owner of a tunnel keeps of its relay: enough for the idle sweep, no methods per tunnel. */
export type RelayHandle = Readonly<Pick<RelayState, 'closed'>>;

type RelaySocket = net.Socket & { [STATE]?: RelayState };

/**
 * Bytes read by all relays of this process, modulo 2^30 (for the adaptive heap tuning,
 * heap-tuning.ts, which takes differences with bytesRelayedSince). Kept in V8's small-integer
 * range: a plain sum passes 2^31 after 2 GB, deoptimises onData and then allocates a heap number
 * per chunk.
 */
let relayed = 0;
const RELAYED_MASK = 0x3fffffff;

export function bytesRelayed(): number {
  return relayed;
}

/** Bytes relayed since an earlier bytesRelayed() reading (correct while less than 1 GiB passed between them). */
export function bytesRelayedSince(earlier: number): number {
  return (relayed - earlier) & RELAYED_MASK;
}

/** Destinations corked by a full chunk, uncorked after the current I/O phase at the latest. */
let corked: net.Socket[] = [];
let flushScheduled = false;

function flushCorked(): void {
  flushScheduled = false;
  const list = corked;
  corked = [];
  for (const s of list) if (s.writableCorked > 0) s.uncork();
}

function peerOf(s: RelaySocket): net.Socket | null {
  const st = s[STATE];
  if (!st || st.closed) return null;
  return st.a === s ? st.b : st.a;
}

function onData(this: RelaySocket, chunk: Buffer): void {
  const st = this[STATE];
  if (!st || st.closed) return;
  st.moved = true;
  relayed = (relayed + chunk.length) & RELAYED_MASK;
  const dst = st.a === this ? st.b : st.a;
  let ok: boolean;
  if (chunk.length === FULL_CHUNK) {
    if (dst.writableCorked === 0) {
      dst.cork();
      corked.push(dst);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flushCorked);
      }
    }
    ok = dst.write(chunk);
  } else {
    ok = dst.write(chunk);
    if (dst.writableCorked > 0) dst.uncork();
  }
  if (!ok) this.pause();
}

function onDrain(this: RelaySocket): void {
  const src = peerOf(this);
  if (src && src.isPaused()) src.resume();
}

/** A FIN read here: passed on once the other side has written what it still holds. */
function onEnd(this: RelaySocket): void {
  const dst = peerOf(this);
  if (!dst) return;
  if (dst.writableCorked > 0) dst.uncork();
  dst.end();
}

/** Error: both sockets are torn down at once. */
function onError(this: RelaySocket): void {
  const st = this[STATE];
  if (st && !st.closed) finish(st);
}

function onClose(this: RelaySocket, hadError: boolean): void {
  const st = this[STATE];
  if (!st || st.closed) return;
  const other = st.a === this ? st.b : st.a;
  // Closed after both directions ended (its FIN read and passed on, the other's FIN written to it):
  // the other side is writing its last bytes and closes by itself; until then the tunnel is open.
  const graceful = !hadError && this.readableEnded && this.writableFinished && other.readableEnded;
  if (graceful && !other.closed) return;
  finish(st);
}

function finish(st: RelayState): void {
  st.closed = true;
  st.a.destroy();
  st.b.destroy();
  st.onClose(st.b.bytesWritten, st.a.bytesWritten);
}

function attach(s: RelaySocket, st: RelayState): void {
  s[STATE] = st;
  s.on('data', onData);
  s.on('drain', onDrain);
  s.on('end', onEnd);
  s.on('error', onError);
  s.on('close', onClose);
}

/**
 * Joins two sockets both ways with backpressure and half-close; when both directions have ended,
 * or either side fails or is destroyed, both are closed and `onClose` gets the bytes written to b
 * (a → b) and to a (b → a). Both sockets must allow half-open connections and should have a
 * writable high-water mark of at least 64 KiB so that a corked batch of TLS chunks fits.
 */
export function relay(a: net.Socket, b: net.Socket, onClose: (bytesAtoB: number, bytesBtoA: number) => void): RelayHandle {
  const st: RelayState = { a, b, closed: false, moved: false, queued: 0, activeAt: performance.now(), onClose };
  attach(a, st);
  attach(b, st);
  if (a.destroyed || b.destroyed) {
    finish(st);
    return st;
  }
  a.setKeepAlive(true, KEEPALIVE_DELAY_MS);
  b.setKeepAlive(true, KEEPALIVE_DELAY_MS);
  a.resume();
  b.resume();
  return st;
}

/**
 * For a periodic sweep: how long (ms, against `now` = performance.now()) the tunnel has moved no
 * byte in either direction — no chunk read on either side and no change in what either side still
 * has queued to write. Activity is noticed at sweep granularity, so the result errs towards less
 * idle (by up to one sweep period), never more.
 */
export function idleFor(h: RelayHandle, now: number): number {
  const st = h as RelayState;
  if (st.closed) return 0;
  const queued = st.a.writableLength + st.b.writableLength;
  if (st.moved || queued !== st.queued) {
    st.moved = false;
    st.queued = queued;
    st.activeAt = now;
    return 0;
  }
  return now - st.activeAt;
}
