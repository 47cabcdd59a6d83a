import { describe, expect, it } from 'vitest';
import { assignListenPorts, LEASE_RANGE, type ListenPortInput } from './listen-ports.ts';

const imp = (namespace: string, name: string, port: number, targetPort: number | null = null): ListenPortInput => ({ namespace, name, port, targetPort });
const inLease = (p: number): boolean => p >= LEASE_RANGE.first && p < LEASE_RANGE.first + LEASE_RANGE.size;

describe('assignListenPorts', () => {
  it('keeps port when nobody else uses it, and targetPort when given', () => {
    expect(assignListenPorts([imp('a', 'x', 80), imp('b', 'y', 81, 9000)])).toEqual([80, 9000]);
  });

  it('gives the later import (namespace, name order) of a shared port a derived port, distinct and in range', () => {
    const ports = assignListenPorts([imp('a', 'x', 80), imp('b', 'x', 80), imp('c', 'x', 80)]);
    expect(ports[0]).toBe(80);
    expect(inLease(ports[1]!) && inLease(ports[2]!)).toBe(true);
    expect(new Set(ports).size).toBe(3);
  });

  it('an explicit targetPort wins over an import that would listen on the same port', () => {
    const ports = assignListenPorts([imp('a', 'x', 80), imp('b', 'y', 443, 80)]);
    expect(ports[1]).toBe(80);
    expect(inLease(ports[0]!)).toBe(true);
  });

  it('is a function of the imports only: a derived port does not move when an unrelated import is added', () => {
    const before = assignListenPorts([imp('a', 'x', 80), imp('b', 'x', 80)]);
    const after = assignListenPorts([imp('a', 'x', 80), imp('b', 'x', 80), imp('c', 'z', 5432)]);
    expect(after.slice(0, 2)).toEqual(before);
    expect(assignListenPorts([imp('a', 'x', 80), imp('b', 'x', 80)])).toEqual(before);
  });

  it('probes past derived ports already in use', () => {
    const first = assignListenPorts([imp('a', 'x', 80), imp('b', 'x', 80)])[1]!;
    // An explicit targetPort on exactly that derived port pushes b/x one further.
    const ports = assignListenPorts([imp('a', 'x', 80), imp('b', 'x', 80), imp('c', 'q', 1, first)]);
    expect(ports[2]).toBe(first);
    expect(ports[1]).not.toBe(first);
    expect(inLease(ports[1]!)).toBe(true);
  });
});
