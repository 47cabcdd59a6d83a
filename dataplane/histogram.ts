// A duration histogram kept over a process's life (fixed bounds, cumulative, never reset): what
// Prometheus histograms are made of, kept by whoever observes (the data plane, a runtime) and
// rendered at scrape time (reconciler/runtime/metrics.ts ReadHistogram).

/** counts[i] = observations in (boundsSeconds[i-1], boundsSeconds[i]]; the last entry counts those above the last bound. */
export interface DurationHistogram {
  readonly boundsSeconds: readonly number[];
  counts: number[];
  sumSeconds: number;
  count: number;
}

export function newDurationHistogram(boundsSeconds: readonly number[]): DurationHistogram {
  return { boundsSeconds, counts: new Array<number>(boundsSeconds.length + 1).fill(0), sumSeconds: 0, count: 0 };
}

export function observeSeconds(h: DurationHistogram, seconds: number): void {
  let i = h.boundsSeconds.findIndex((b) => seconds <= b);
  if (i < 0) i = h.boundsSeconds.length;
  h.counts[i] = (h.counts[i] ?? 0) + 1;
  h.sumSeconds += seconds;
  h.count++;
}
