// Leader election on a Lease in a real kube-apiserver, as the reconciler's ServiceAccount (the
// Lease rules of deploy/base/rbac.yaml), with a 2 s lease so hand-over is quick and bounded; and
// two whole reconciler replicas, each with its own token, where the audit log shows which one wrote.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CoordinationV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { startLeaderElection, type LeaderElector } from '../../reconciler/kube/leader.ts';
import { startKubeTarget, type KubeTarget } from '../../reconciler/kube/index.ts';
import { RECONCILER_USER, SYSTEM_NS, imp, slice, startKubeEnv, waitFor, type KubeEnv } from './helpers.ts';

const LEASE_S = 2;
const RETRY_MS = 200;

interface LeaseView {
  spec: { holderIdentity?: string; leaseDurationSeconds: number; renewTime: string; acquireTime: string; leaseTransitions?: number };
}

describe('leader election (real API server)', () => {
  let env: KubeEnv;
  const electors: LeaderElector[] = [];
  const targets: KubeTarget[] = [];

  beforeAll(async () => {
    env = await startKubeEnv(['shop']);
  });
  afterAll(async () => {
    await env?.stop();
  });
  afterEach(async () => {
    await Promise.all([...electors.splice(0).map((e) => e.stop()), ...targets.splice(0).map((t) => t.stop())]);
  });

  function elector(name: string, identity: string, log: string[] = [], errors: string[] = []): LeaderElector {
    const e = startLeaderElection({
      kubeConfig: env.reconciler,
      namespace: SYSTEM_NS,
      name,
      identity,
      leaseDurationSeconds: LEASE_S,
      retryPeriodMs: RETRY_MS,
      onStartedLeading: () => log.push(`${identity}:start`),
      onStoppedLeading: () => log.push(`${identity}:stop`),
      onError: (m) => errors.push(m),
    });
    electors.push(e);
    return e;
  }

  const lease = (name: string) => env.get<LeaseView>('coordination.k8s.io/v1', 'Lease', SYSTEM_NS, name);

  it('exactly one of two candidates leads, and the Lease says who', async () => {
    const a = elector('l1', 'a');
    const b = elector('l1', 'b');
    await waitFor('a leader', () => a.isLeader() || b.isLeader(), 10_000);
    await new Promise((r) => setTimeout(r, 3 * RETRY_MS));
    expect([a.isLeader(), b.isLeader()].filter(Boolean)).toHaveLength(1);
    const l = await lease('l1');
    expect(l?.spec.holderIdentity).toBe(a.isLeader() ? 'a' : 'b');
    expect(l?.spec.leaseDurationSeconds).toBe(LEASE_S);
    // MicroTime: six fractional digits, as the API server stores it.
    expect(l?.spec.renewTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  });

  it('hands over within one lease period when the leader stops renewing (crash, no release)', async () => {
    const log: string[] = [];
    const a = elector('l2', 'a', log);
    await waitFor('a leads', () => a.isLeader(), 10_000);
    const b = elector('l2', 'b', log);
    await new Promise((r) => setTimeout(r, 3 * RETRY_MS));
    expect(b.isLeader()).toBe(false);
    await a.stop({ release: false });
    const t0 = Date.now();
    await waitFor('b leads', () => b.isLeader(), 10_000, 10);
    // Expiry is counted from when b last saw a renewal (≤ one retry period before the stop), plus
    // one retry period to notice; the rest is a loaded machine's slack.
    expect(Date.now() - t0).toBeLessThanOrEqual(LEASE_S * 1000 + 2 * RETRY_MS + 1_000);
    expect((await lease('l2'))?.spec.holderIdentity).toBe('b');
    expect((await lease('l2'))?.spec.leaseTransitions).toBe(1);
    expect(log).toEqual(['a:start', 'a:stop', 'b:start']);
  });

  it('hands over at once when the leader releases on stop', async () => {
    const a = elector('l3', 'a');
    await waitFor('a leads', () => a.isLeader(), 10_000);
    const b = elector('l3', 'b');
    await a.stop();
    const t0 = Date.now();
    await waitFor('b leads', () => b.isLeader(), 10_000, 10);
    expect(Date.now() - t0).toBeLessThan(LEASE_S * 1000);
  });

  it('renews with optimistic updates; a stale update is rejected with 409', async () => {
    const a = elector('l4', 'a');
    await waitFor('a leads', () => a.isLeader(), 10_000);
    const mark = await env.api.mark();
    await new Promise((r) => setTimeout(r, 3 * RETRY_MS));
    expect((await env.api.writes(mark, { resource: 'leases', user: RECONCILER_USER })).update).toBeGreaterThan(0);
    // An intruder writing with a resourceVersion that a's renewals have since superseded loses.
    const coord = env.admin.makeApiClient(CoordinationV1Api);
    const stale = await coord.readNamespacedLease({ namespace: SYSTEM_NS, name: 'l4' });
    await waitFor('a renews again', async () => (await coord.readNamespacedLease({ namespace: SYSTEM_NS, name: 'l4' })).metadata?.resourceVersion !== stale.metadata?.resourceVersion, 10_000, 50);
    const err = await coord.replaceNamespacedLease({ namespace: SYSTEM_NS, name: 'l4', body: { ...stale, spec: { ...stale.spec, holderIdentity: 'intruder' } } }).catch((e: unknown) => e);
    expect((err as { code?: number }).code).toBe(409);
    expect(a.isLeader()).toBe(true);
    expect((await lease('l4'))?.spec.holderIdentity).toBe('a');
  });

  it('a leader whose Lease rule is taken away steps down and says why, and leads again when it is back', async () => {
    const rbac = env.admin.makeApiClient(RbacAuthorizationV1Api);
    const role = await rbac.readNamespacedRole({ namespace: SYSTEM_NS, name: 'clgo-reconciler' });
    const log: string[] = [];
    const errors: string[] = [];
    const a = elector('l5', 'a', log, errors);
    await waitFor('a leads', () => a.isLeader(), 10_000);
    await rbac.replaceNamespacedRole({ namespace: SYSTEM_NS, name: 'clgo-reconciler', body: { ...role, rules: (role.rules ?? []).filter((r) => !r.resources?.includes('leases')) } });
    try {
      await waitFor('a steps down', () => !a.isLeader(), 10_000, 20);
      expect(log).toEqual(['a:start', 'a:stop']);
      expect(errors.at(-1)).toMatch(/lease clusterlink-system\/l5: HTTP 403: .*cannot get resource "leases"/);
    } finally {
      const current = await rbac.readNamespacedRole({ namespace: SYSTEM_NS, name: 'clgo-reconciler' });
      await rbac.replaceNamespacedRole({ namespace: SYSTEM_NS, name: 'clgo-reconciler', body: { ...current, rules: role.rules } });
    }
    await waitFor('a leads again', () => a.isLeader(), 10_000);
  });

  it('two reconciler replicas: only the holder writes, the standby takes over when the holder stops, never both', async () => {
    const one = await env.api.serviceAccountKubeConfig(SYSTEM_NS, 'clgo-reconciler');
    const two = await env.api.serviceAccountKubeConfig(SYSTEM_NS, 'clgo-reconciler');
    expect(one.credentialId).toBeDefined();
    expect(one.credentialId).not.toBe(two.credentialId);
    const replica = (kubeConfig: typeof one.kubeConfig, identity: string) => {
      const t = startKubeTarget({ kubeConfig, peer: 'pair', identity, namespace: SYSTEM_NS, dataplaneSelector: { app: 'dp-pair' }, leaseDurationSeconds: LEASE_S, retryPeriodMs: RETRY_MS });
      targets.push(t);
      return t;
    };
    const mark = await env.api.mark();
    const a = replica(one.kubeConfig, 'replica-1');
    const b = replica(two.kubeConfig, 'replica-2');
    await Promise.all([a.ready(), b.ready()]);
    await waitFor('a leader', () => a.isLeader() || b.isLeader(), 10_000);
    const [holder, standby] = a.isLeader() ? [a, b] : [b, a];
    const holderCred = a.isLeader() ? one.credentialId : two.credentialId;
    // Both replicas follow the same repository: each revision reaches both.
    for (let rev = 1; rev <= 3; rev++) {
      const s = slice(Array.from({ length: rev * 2 }, (_, i) => imp('shop', `pair-${i}`)));
      const [ra, rb] = await Promise.all([a.applySlice(s, `rev${rev}`), b.applySlice(s, `rev${rev}`)]);
      expect([ra.leader, rb.leader].filter(Boolean)).toHaveLength(1);
    }
    expect(standby.isLeader()).toBe(false);
    await holder.stop();
    await waitFor('standby takes over', () => standby.isLeader(), 10_000);
    const after = slice(Array.from({ length: 8 }, (_, i) => imp('shop', `pair-${i}`)));
    const r = await standby.applySlice(after, 'rev4');
    expect(r.leader).toBe(true);
    expect(r.applied.map((x) => x.name)).toEqual(['pair-6', 'pair-7']);

    // The server's view: every write but the Lease's came from the holder's token until it stopped,
    // then from the other's; the writers never interleave.
    const writes = (await env.api.requests(mark, { user: RECONCILER_USER, verbs: ['create', 'update', 'patch', 'delete'] })).filter((w) => w.resource !== 'leases');
    const writers = writes.map((w) => w.credentialId);
    const firstOther = writers.findIndex((c) => c !== holderCred);
    expect(firstOther).toBeGreaterThan(0);
    expect(writers.slice(0, firstOther).every((c) => c === holderCred)).toBe(true);
    expect(writers.slice(firstOther).every((c) => c !== holderCred)).toBe(true);
    expect(writes.filter((w) => w.resource === 'services')).toHaveLength(8);
  });
});
