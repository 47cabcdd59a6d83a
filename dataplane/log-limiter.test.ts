import { describe, expect, it } from 'vitest';
import { logLimiter } from './log-limiter.ts';

describe('logLimiter', () => {
  it('lets `burst` lines per window through per category and reports the dropped count on the next one', () => {
    let t = 0;
    const l = logLimiter({ burst: 3, windowMs: 1000, now: () => t });
    const taken = Array.from({ length: 100 }, () => l.take('handshake'));
    expect(taken.slice(0, 3)).toEqual([0, 0, 0]);
    expect(taken.slice(3).every((x) => x === null)).toBe(true);
    expect(l.take('bad-request')).toBe(0);
    t = 1000;
    expect(l.take('handshake')).toBe(97);
    expect(l.take('handshake')).toBe(0);
  });
});
