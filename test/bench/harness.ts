// Types and helpers shared by every benchmark. A benchmark file is test/bench/<topic>.bench.ts and
// exports `benchmarks: Benchmark[]`; run.ts discovers them, so adding one touches no shared file.

export interface BenchResult {
  /** Stable name, e.g. `validate.1000-peers.time`. */
  name: string;
  value: number;
  unit: string;
  /** Human-readable target, e.g. `< 3000 ms` or `>= 1.0 x haproxy`; empty when only informative. */
  target: string;
  /** Whether the target was met; null when the row has no target (reference figures). */
  ok: boolean | null;
  note?: string;
}

export interface Benchmark {
  /** Selected by `npm run bench -- <name>` (prefix match on this name). */
  name: string;
  /** Human description printed before the run. */
  description: string;
  run(): Promise<BenchResult[]>;
}

/** Percentile (0..100) of an unsorted sample, nearest-rank. */
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

export function row(name: string, value: number, unit: string, target: string, ok: boolean | null, note?: string): BenchResult {
  return note === undefined ? { name, value, unit, target, ok } : { name, value, unit, target, ok, note };
}
