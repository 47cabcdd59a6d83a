// Rate limit for the log lines a remote party can cause (failed handshakes, bad requests,
// denials): without it every refused connection writes a warn line, so a flood of cheap
// connections becomes a flood of log volume (log amplification). Per category, the first `burst`
// lines of each window pass; the rest are counted and the count rides on the next line let
// through. Memory is one counter pair per category (categories are a fixed set, never addresses).

export interface LogLimiter {
  /** null: drop this line; otherwise how many lines of this category were dropped since the last one passed. */
  take(category: string): number | null;
}

export function logLimiter(opts: { burst: number; windowMs: number; now?: () => number }): LogLimiter {
  const now = opts.now ?? (() => performance.now());
  const state = new Map<string, { windowStart: number; passed: number; dropped: number }>();
  return {
    take(category) {
      const t = now();
      let s = state.get(category);
      if (!s) state.set(category, (s = { windowStart: t, passed: 0, dropped: 0 }));
      if (t - s.windowStart >= opts.windowMs) {
        s.windowStart = t;
        s.passed = 0;
      }
      if (s.passed >= opts.burst) {
        s.dropped++;
        return null;
      }
      s.passed++;
      const dropped = s.dropped;
      s.dropped = 0;
      return dropped;
    },
  };
}
