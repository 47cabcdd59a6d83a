// RBAC against the real authorizer: the reconciler authenticates as the ServiceAccount bound to
// exactly deploy/base/rbac.yaml (a TokenRequest token). Every call it makes in a full pass
// succeeds; taking away one rule it needs gives a clear error (report, status ConfigMap, Event,
// log line) while everything else goes on, the request rate stays bounded (backoff, no crash loop)
// and it recovers by itself once the rule is back.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startKubeTarget, statusConfigMapName, type KubeTarget, type KubeTargetOptions } from '../../reconciler/kube/index.ts';
import { RECONCILER_USER, SYSTEM_NS, imp, slice, startKubeEnv, waitFor, withoutVerb, type KubeEnv } from './helpers.ts';

interface EventView {
  reason: string;
  message: string;
  involvedObject: { kind: string; name: string };
  reportingComponent?: string;
}

// The reconciler's own Events: a real API server also records its own on Services (e.g. ClusterIPNotAllocated
// from its IP repair loop when a Service is created while the allocator catches up).
const ours = (e: EventView): boolean => e.reportingComponent === 'clgo-reconciler';

describe('RBAC: the reconciler as the ServiceAccount of deploy/base/rbac.yaml (real authorizer)', () => {
  let env: KubeEnv;
  const targets: KubeTarget[] = [];
  let errors: string[];

  beforeAll(async () => {
    env = await startKubeEnv(['shop', 'bank', 'shop2', 'shop3', 'shop4', 'shop5']);
  });
  afterAll(async () => {
    await env?.stop();
  });
  afterEach(async () => {
    await Promise.all(targets.splice(0).map((t) => t.stop()));
  });

  async function target(peer: string, extra: Partial<KubeTargetOptions> = {}): Promise<KubeTarget> {
    errors = [];
    const t = startKubeTarget({
      kubeConfig: env.reconciler,
      peer,
      namespace: SYSTEM_NS,
      dataplaneSelector: { app: `dp-${peer}` },
      leaseDurationSeconds: 2,
      retryPeriodMs: 200,
      endpointsDebounceMs: 100,
      podWatchBackoff: { initialMs: 200, maxMs: 2_000 },
      onError: (m) => errors.push(m),
      ...extra,
    });
    targets.push(t);
    return t;
  }
  const lead = (t: KubeTarget) => waitFor('leadership', () => t.isLeader(), 10_000);
  const status = async (peer: string) => (await env.get<{ data: Record<string, string> }>('v1', 'ConfigMap', SYSTEM_NS, statusConfigMapName(peer)))?.data;
  /** Endpoint addresses of a slice, comma-separated ('' for none: the server omits an empty list); null without a slice. */
  const addrs = async (ns: string, name: string) => {
    const s = await env.get<{ endpoints?: { addresses: string[] }[] }>('discovery.k8s.io/v1', 'EndpointSlice', ns, name);
    return s ? (s.endpoints ?? []).map((e) => e.addresses[0]).join() : null;
  };

  it('every call of a full pass succeeds: Services, EndpointSlices, Pods, namespaces, Events, Lease, status', async () => {
    await env.createAs('kubectl-create', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'taken', namespace: 'bank' }, spec: { ports: [{ port: 80 }] } } as never);
    await env.api.createPod({ namespace: SYSTEM_NS, name: 'r1-tunnel', ip: '10.3.1.1', labels: { app: 'dp-r1' } });
    const mark = await env.api.mark();
    const t = await target('r1');
    await t.ready();
    await lead(t);
    const r1 = await t.applySlice(slice([imp('shop', 'cart'), imp('shop', 'pay'), imp('bank', 'taken')]), 'rev1');
    expect(r1.errors).toEqual([]);
    expect(r1.conflicts.map((c) => c.name)).toEqual(['taken']);
    await env.api.setPodReady(SYSTEM_NS, 'r1-tunnel', false);
    await waitFor('slice follows the pod', async () => (await addrs('shop', 'cart-clgo-ipv4')) === '', 10_000, 100);
    const r2 = await t.applySlice(slice([imp('shop', 'cart')]), 'rev2');
    expect(r2.pruned).toEqual([{ namespace: 'shop', name: 'pay' }]);
    await t.stop();
    targets.splice(0);
    expect(errors).toEqual([]);

    const responses = await env.api.responses(mark, { user: RECONCILER_USER });
    // Not found is an answer (no status ConfigMap or Lease yet), not a denial.
    const failed = responses.filter((r) => (r.code ?? 0) >= 400 && !(r.code === 404 && r.verb === 'get'));
    expect(failed).toEqual([]);
    // What it used, and so what rbac.yaml must grant (docs/kube.md, "RBAC"). A server-side apply
    // is audited as patch; one that creates is authorized for create as well.
    // (Requests without a resource are client-node's discovery reads, e.g. /api/v1: allowed to everyone.)
    const used = [...new Set(responses.filter((r) => r.resource).map((r) => `${r.resource}:${r.verb}`))].sort();
    expect(used).toEqual([
      'configmaps:get',
      'configmaps:patch',
      'endpointslices:delete',
      'endpointslices:list',
      'endpointslices:patch',
      'events:create',
      'leases:create',
      'leases:get',
      'leases:update',
      'namespaces:list',
      'pods:list',
      'pods:watch',
      'services:delete',
      'services:list',
      'services:patch',
    ]);
  });

  it('without patch on services: a clear 403 in the report, status, Event and log; slices of existing Services kept; recovers when the rule is back', async () => {
    const t = await target('r2');
    await env.api.createPod({ namespace: SYSTEM_NS, name: 'r2-tunnel', ip: '10.3.2.1', labels: { app: 'dp-r2' } });
    await t.ready();
    await lead(t);
    await t.applySlice(slice([imp('shop2', 'cart')]), 'rev1');
    expect(await addrs('shop2', 'cart-clgo-ipv4')).toBe('10.3.2.1');

    const denied = await withoutVerb(env, 'services', 'patch', async () => {
      const mark = await env.api.mark();
      const r = await t.applySlice(slice([imp('shop2', 'cart', 81), imp('shop2', 'new')]), 'rev2');
      // A few passes while denied: each one tries each object once, nothing spins.
      await t.applySlice(slice([imp('shop2', 'cart', 81), imp('shop2', 'new')]), 'rev3');
      const patches = await env.api.requests(mark, { resource: 'services', user: RECONCILER_USER, verbs: ['patch'] });
      return { r, patches: patches.length };
    });
    expect(denied.r.applied).toEqual([]);
    expect(denied.r.errors).toEqual([
      { namespace: 'shop2', name: 'cart', op: 'apply', message: expect.stringMatching(/^HTTP 403: services "cart" is forbidden: User "system:serviceaccount:clusterlink-system:clgo-reconciler" cannot patch resource "services" in API group "" in the namespace "shop2"/) },
      { namespace: 'shop2', name: 'new', op: 'apply', message: expect.stringMatching(/^HTTP 403: .*cannot patch resource "services"/) },
    ]);
    expect(denied.r.lastError).toMatch(/^2 error\(s\); first: shop2\/cart: HTTP 403/);
    expect(denied.patches).toBe(4);
    expect(errors.some((e) => /^applying revision rev2: 2 error\(s\); first: shop2\/cart: HTTP 403: .*forbidden/.test(e))).toBe(true);
    expect((await status('r2'))?.lastError).toMatch(/cannot patch resource "services"/);
    const events = (await env.list<EventView>('v1', 'Event', 'shop2')).filter(ours);
    expect(events.filter((e) => e.reason === 'ApplyFailed').map((e) => [e.involvedObject.name, /forbidden/.test(e.message)])).toEqual([
      ['cart', true],
      ['new', true],
    ]);
    // The Service whose re-apply failed still exists and routes: its slice stays.
    expect(denied.r.endpointSlices.pruned).toEqual([]);
    expect(await addrs('shop2', 'cart-clgo-ipv4')).toBe('10.3.2.1');

    const r = await t.applySlice(slice([imp('shop2', 'cart', 81), imp('shop2', 'new')]), 'rev4');
    expect(r.errors).toEqual([]);
    expect(r.applied.map((x) => x.name)).toEqual(['cart', 'new']);
    expect((await status('r2'))?.lastError).toBe('');
  });

  it('without patch on endpointslices: the Service is applied, the slice failure is reported on it', async () => {
    const t = await target('r3');
    await t.ready();
    await lead(t);
    const r = await withoutVerb(env, 'endpointslices', 'patch', () => t.applySlice(slice([imp('shop3', 'cart')]), 'rev1'));
    expect(r.applied).toEqual([{ namespace: 'shop3', name: 'cart' }]);
    expect(r.errors).toEqual([{ namespace: 'shop3', name: 'cart', op: 'endpointslice-apply', message: expect.stringMatching(/^EndpointSlice cart-clgo-ipv4: HTTP 403: .*cannot patch resource "endpointslices"/) }]);
    expect((await env.list<EventView>('v1', 'Event', 'shop3')).filter(ours).map((e) => [e.reason, e.involvedObject.kind, e.involvedObject.name])).toEqual([['ApplyFailed', 'Service', 'cart']]);
    const again = await t.applySlice(slice([imp('shop3', 'cart')]), 'rev1');
    expect(again.errors).toEqual([]);
    expect(again.endpointSlices.applied).toEqual([{ namespace: 'shop3', name: 'cart-clgo-ipv4' }]);
  });

  it('without list on endpointslices: reported as a list error, Services still applied', async () => {
    const t = await target('r4');
    await t.ready();
    await lead(t);
    const r = await withoutVerb(env, 'endpointslices', 'list', () => t.applySlice(slice([imp('shop4', 'cart')]), 'rev1'));
    expect(r.applied).toEqual([{ namespace: 'shop4', name: 'cart' }]);
    expect(r.errors).toEqual([{ namespace: SYSTEM_NS, name: '', op: 'endpointslice-list', message: expect.stringMatching(/^listing EndpointSlices: HTTP 403: .*cannot list resource "endpointslices"/) }]);
  });

  it('without list on pods: the Pod watch backs off and says why, slices are deferred (never emptied), and it all catches up when the rule is back', async () => {
    await env.api.createPod({ namespace: SYSTEM_NS, name: 'r5-tunnel', ip: '10.3.5.1', labels: { app: 'dp-r5' } });
    await withoutVerb(env, 'pods', 'list', async () => {
      const mark = await env.api.mark();
      const t = await target('r5', { podListTimeoutMs: 200 });
      await lead(t);
      const r = await t.applySlice(slice([imp('shop5', 'cart')]), 'rev1');
      expect(r.applied).toEqual([{ namespace: 'shop5', name: 'cart' }]);
      expect(r.endpointSlices.deferred).toBe(true);
      expect(r.endpointSliceWrites).toBe(0);
      await new Promise((res) => setTimeout(res, 2_500));
      // Backoff 200 ms doubling: a handful of attempts in 2.5 s (fewer on a loaded machine), not a tight loop.
      const lists = await env.api.requests(mark, { resource: 'pods', user: RECONCILER_USER, verbs: ['list'] });
      expect(lists.length).toBeGreaterThanOrEqual(1);
      expect(lists.length).toBeLessThanOrEqual(6);
      const said = errors.filter((e) => /^pod list failed: HTTP 403: pods is forbidden: .*cannot list resource "pods"/.test(e)).length;
      expect(said).toBeGreaterThanOrEqual(1);
      expect(said).toBeLessThanOrEqual(lists.length);
      expect(await env.get('discovery.k8s.io/v1', 'EndpointSlice', 'shop5', 'cart-clgo-ipv4')).toBeUndefined();
    });
    await waitFor('slice written after the first list', async () => (await addrs('shop5', 'cart-clgo-ipv4')) === '10.3.5.1', 15_000, 100);
  });
});
