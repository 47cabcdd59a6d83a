// V8 heap tuning for a process that relays tunnels at high throughput. Every socket read hands JS
// a fresh Buffer whose bytes live outside the V8 heap (external memory): at a few Gbit/s that is
// hundreds of MB/s of short-lived external memory, freed only by scavenges. V8 counts external
// memory allocated since the last mark-compact against the old generation's allocation limit, so
// with the limit V8 picks for a small, steady heap (live ~18 MB, limit ~1.5-2.3x that) the
// external memory allocated between two scavenges (~20-30 MB) uses up the headroom and starts
// incremental marking: a full mark-compact every ~100 ms that frees nothing (18.8 MB -> 18.8 MB),
// 25-30% of the relay's CPU. A fixed growing factor of 3x (--heap-growing-percent=200) keeps the
// headroom (2x live) above those bursts. Tunnel bench with `--trace-gc` on both data plane
// processes, mark-compacts after the first 10 s (egress/gateway): 55-76 / 23-90 without, 1-11 /
// 2-10 with; CPU per GB carried (both sides, 1 stream) 4.4-5.3 s -> 2.5-3.2 s.
// Applied only while the process relays a lot: set for good, the factor also cost ~3-4 KiB per
// idle tunnel at the gateway and some request/response and setup latency in the same bench. On at
// >= 64 MB/s, back to V8's own dynamic factor after 10 s below 8 MB/s. The growing factor is read
// at every heap-limit computation, so setting it at run time works (unlike heap sizes, fixed at
// start); smaller or larger semi-spaces (2, 16, 32 MB), --no-memory-reducer and a growing factor
// of 2x did not stop the mark-compacts.
import v8 from 'node:v8';
import { bytesRelayed, bytesRelayedSince } from './relay.ts';

/** The flag while relaying at high throughput, and the one that restores V8's dynamic factor. */
export const RELAY_V8_FLAG_ON = '--heap-growing-percent=200';
export const RELAY_V8_FLAG_OFF = '--heap-growing-percent=0';

const TICK_MS = 250;
const ON_BYTES_PER_S = 64 * 1024 * 1024;
const OFF_BYTES_PER_S = 8 * 1024 * 1024;
const OFF_AFTER_MS = 10_000;

let timer: NodeJS.Timeout | null = null;

let relayHeapTuningOn = false;

/** Whether the high-throughput heap tuning is in force now. */
export function relayHeapTuningActive(): boolean {
  return relayHeapTuningOn;
}

/**
 * Starts (once per process) the adaptive heap tuning: a timer every 250 ms (unref'd) that looks at
 * the bytes all relays moved. For processes hosting the data plane (`clgo run`, `clgo dataplane`).
 */
export function startRelayHeapTuning(): void {
  if (timer) return;
  let last = bytesRelayed();
  let quietMs = 0;
  timer = setInterval(() => {
    const perS = (bytesRelayedSince(last) * 1000) / TICK_MS;
    last = bytesRelayed();
    if (!relayHeapTuningOn) {
      if (perS >= ON_BYTES_PER_S) {
        v8.setFlagsFromString(RELAY_V8_FLAG_ON);
        relayHeapTuningOn = true;
        quietMs = 0;
      }
      return;
    }
    quietMs = perS < OFF_BYTES_PER_S ? quietMs + TICK_MS : 0;
    if (quietMs >= OFF_AFTER_MS) {
      v8.setFlagsFromString(RELAY_V8_FLAG_OFF);
      relayHeapTuningOn = false;
    }
  }, TICK_MS).unref();
}

/** Stops the tuning and restores V8's dynamic growing factor. */
export function stopRelayHeapTuning(): void {
  if (timer) clearInterval(timer);
  timer = null;
  if (relayHeapTuningOn) v8.setFlagsFromString(RELAY_V8_FLAG_OFF);
  relayHeapTuningOn = false;
}
