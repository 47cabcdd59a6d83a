import { describe, expect, it } from 'vitest';
import { createEndpointHealth, endpointKey } from './endpoint-health.ts';

function clocked(ejectAfterFailures = 3, ejectForMs = 10_000) {
  let t = 1_000_000;
  const health = createEndpointHealth({ ejectAfterFailures, ejectForMs, now: () => t });
  return { health, advance: (ms: number) => (t += ms) };
}

const KEY = endpointKey('west', { host: '10.0.0.1', port: 443 });

describe('endpoint health', () => {
  it('names an endpoint peer@host:port', () => {
    expect(KEY).toBe('west@10.0.0.1:443');
  });

  it('ejects after the configured run of consecutive failures, for ejectForMs, then takes the endpoint back', () => {
    const { health, advance } = clocked();
    expect(health.failed(KEY)).toBeNull();
    expect(health.failed(KEY)).toBeNull();
    expect(health.isEjected(KEY)).toBe(false);
    expect(health.failed(KEY)).toBe(3);
    expect(health.isEjected(KEY)).toBe(true);
    advance(9_999);
    expect(health.isEjected(KEY)).toBe(true);
    advance(1);
    expect(health.isEjected(KEY)).toBe(false);
    expect(health.snapshot()[KEY]).toMatchObject({ failures: 3, ejections: 1, ejected: false });
  });

  it('a success ends the run: failures around it do not add up to an ejection', () => {
    const { health } = clocked();
    health.failed(KEY);
    health.failed(KEY);
    health.succeeded(KEY);
    expect(health.failed(KEY)).toBeNull();
    expect(health.failed(KEY)).toBeNull();
    expect(health.isEjected(KEY)).toBe(false);
    expect(health.snapshot()[KEY]).toMatchObject({ failures: 4, ejections: 0 });
  });

  it('the first failure after an ejection ran out ejects again (the run was not reset)', () => {
    const { health, advance } = clocked(2, 500);
    health.failed(KEY);
    expect(health.failed(KEY)).toBe(2);
    advance(500);
    expect(health.isEjected(KEY)).toBe(false);
    expect(health.failed(KEY)).toBe(3);
    expect(health.snapshot()[KEY]).toMatchObject({ ejections: 2, ejected: true });
  });

  it('keeps endpoints apart and counts attempts and handshakes (resumed ones too)', () => {
    const { health } = clocked(1);
    const other = endpointKey('west', { host: '10.0.0.2', port: 443 });
    health.attempt(KEY);
    health.attempt(KEY);
    health.handshake(KEY, false);
    health.handshake(KEY, true);
    expect(health.failed(other)).toBe(1);
    expect(health.isEjected(KEY)).toBe(false);
    expect(health.isEjected('east@10.0.0.9:443')).toBe(false);
    expect(health.snapshot()).toEqual({
      [KEY]: { connections: 2, failures: 0, ejections: 0, ejected: false, handshakes: 2, resumed: 1 },
      [other]: { connections: 0, failures: 1, ejections: 1, ejected: true, handshakes: 0, resumed: 0 },
    });
  });
});
