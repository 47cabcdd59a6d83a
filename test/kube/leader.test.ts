// Leader election on a Lease in the stand-in, with a 1 s lease so hand-over is quick and bounded.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startKubeApiStandin, type KubeApiStandin } from '../fixtures/kube-api-standin.ts';
import { startLeaderElection, type LeaderElector } from '../../reconciler/kube/leader.ts';
import { waitFor } from './helpers.ts';
import { CoordinationV1Api } from '@kubernetes/client-node';

const LEASE_S = 1;

describe('leader election', () => {
  let api: KubeApiStandin;
  const electors: LeaderElector[] = [];

  beforeEach(async () => {
    api = await startKubeApiStandin();
  });
  afterEach(async () => {
    await Promise.all(electors.splice(0).map((e) => e.stop()));
    await api.close();
  });

  function elector(identity: string, log: string[] = []): LeaderElector {
    const e = startLeaderElection({
      kubeConfig: api.kubeConfig(),
      namespace: 'clusterlink-system',
      name: 'clgo',
      identity,
      leaseDurationSeconds: LEASE_S,
      retryPeriodMs: 100,
      onStartedLeading: () => log.push(`${identity}:start`),
      onStoppedLeading: () => log.push(`${identity}:stop`),
    });
    electors.push(e);
    return e;
  }

  const lease = () => api.get('leases', 'clusterlink-system', 'clgo') as { spec: { holderIdentity: string; leaseDurationSeconds: number; renewTime: string; acquireTime: string; leaseTransitions: number } } | undefined;

  it('exactly one of two candidates leads, and the Lease says who', async () => {
    const a = elector('a');
    const b = elector('b');
    await waitFor('a leader', () => a.isLeader() || b.isLeader(), 2_000);
    await new Promise((r) => setTimeout(r, 300));
    expect([a.isLeader(), b.isLeader()].filter(Boolean)).toHaveLength(1);
    const l = lease();
    expect(l?.spec.holderIdentity).toBe(a.isLeader() ? 'a' : 'b');
    expect(l?.spec.leaseDurationSeconds).toBe(LEASE_S);
    // MicroTime: six fractional digits, as the API server requires.
    expect(l?.spec.renewTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  });

  it('hands over within one lease period when the leader stops renewing (crash, no release)', async () => {
    const log: string[] = [];
    const a = elector('a', log);
    await waitFor('a leads', () => a.isLeader(), 2_000);
    const b = elector('b', log);
    await new Promise((r) => setTimeout(r, 300));
    expect(b.isLeader()).toBe(false);
    await a.stop({ release: false });
    const t0 = Date.now();
    await waitFor('b leads', () => b.isLeader(), 3_000, 10);
    const took = Date.now() - t0;
    // Expiry is counted from when b last saw a renewal (≤ one retry period before the stop).
    expect(took).toBeLessThanOrEqual(LEASE_S * 1000 + 250);
    expect(lease()?.spec.holderIdentity).toBe('b');
    expect(lease()?.spec.leaseTransitions).toBe(1);
    expect(log).toEqual(['a:start', 'a:stop', 'b:start']);
  });

  it('hands over at once when the leader releases on stop', async () => {
    const a = elector('a');
    await waitFor('a leads', () => a.isLeader(), 2_000);
    const b = elector('b');
    await a.stop();
    const t0 = Date.now();
    await waitFor('b leads', () => b.isLeader(), 2_000, 10);
    expect(Date.now() - t0).toBeLessThan(500);
  });

  it('a leader that cannot renew steps down', async () => {
    const log: string[] = [];
    const a = elector('a', log);
    await waitFor('a leads', () => a.isLeader(), 2_000);
    // Every lease request fails for a while (API server unreachable for this replica).
    api.failNext('GET', '/apis/coordination.k8s.io/v1/namespaces/clusterlink-system/leases', 503, 1_000);
    await waitFor('a steps down', () => !a.isLeader(), LEASE_S * 1000 + 500, 10);
    expect(log).toEqual(['a:start', 'a:stop']);
  });

  it('renews with optimistic updates; a stale update is rejected with 409', async () => {
    const a = elector('a');
    await waitFor('a leads', () => a.isLeader(), 2_000);
    const before = api.writes('leases').PUT;
    await new Promise((r) => setTimeout(r, 350));
    expect(api.writes('leases').PUT).toBeGreaterThan(before);
    expect(api.writes('leases').POST).toBe(1);
    // An intruder writing with a resourceVersion that a's renewals have since superseded loses.
    const coord = api.kubeConfig().makeApiClient(CoordinationV1Api);
    const stale = await coord.readNamespacedLease({ namespace: 'clusterlink-system', name: 'clgo' });
    await waitFor('a renews again', () => lease()?.spec.renewTime !== String(stale.spec?.renewTime), 2_000);
    const err = await coord.replaceNamespacedLease({ namespace: 'clusterlink-system', name: 'clgo', body: { ...stale, spec: { ...stale.spec, holderIdentity: 'intruder' } } }).catch((e: unknown) => e);
    expect((err as { code?: number }).code).toBe(409);
    expect(a.isLeader()).toBe(true);
    expect(lease()?.spec.holderIdentity).toBe('a');
  });
});
