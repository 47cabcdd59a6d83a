// Services for imports against a real kube-apiserver (test/fixtures/kube-apiserver.ts), through
// startKubeTarget and the real client-node, authenticated as the reconciler's ServiceAccount with
// exactly deploy/base/rbac.yaml. Writes are counted from the server's audit log. One server for
// the file; each test has its own peer name (ownership label, Lease, status ConfigMap) and namespaces.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startKubeTarget, statusConfigMapName, type KubeTarget, type KubeTargetOptions } from '../../reconciler/kube/index.ts';
import { RECONCILER_USER, SYSTEM_NS, imp, keys, slice, startKubeEnv, waitFor, type KubeEnv } from './helpers.ts';

interface ServiceView {
  metadata: { uid: string; labels: Record<string, string>; annotations: Record<string, string>; managedFields?: { manager: string }[] };
  spec: { type: string; selector?: Record<string, string>; ports: { name?: string; protocol: string; port: number; targetPort: number }[] };
}
interface ConfigMapView {
  data: Record<string, string>;
}
interface EventView {
  reason: string;
  type: string;
  message: string;
  involvedObject: { kind: string; name: string };
  reportingComponent?: string;
}

// The reconciler's own Events: a real API server also records its own on Services (e.g. ClusterIPNotAllocated
// from its IP repair loop when a Service is created while the allocator catches up).
const ours = (e: EventView): boolean => e.reportingComponent === 'clgo-reconciler';

describe('kube target: Services for imports (real API server)', () => {
  let env: KubeEnv;
  const targets: KubeTarget[] = [];

  beforeAll(async () => {
    env = await startKubeEnv(['shop', 'bank', 'shop2', 'shop3', 'shop4', 'bank4', 'shop5', 'shop6']);
  });
  afterAll(async () => {
    await env?.stop();
  });
  afterEach(async () => {
    await Promise.all(targets.splice(0).map((t) => t.stop()));
  });

  async function target(peer: string, extra: Partial<KubeTargetOptions> = {}, lead = true): Promise<KubeTarget> {
    const t = startKubeTarget({
      kubeConfig: env.reconciler,
      peer,
      namespace: SYSTEM_NS,
      dataplaneSelector: { app: `clgo-dataplane-${peer}` },
      leaseDurationSeconds: 2,
      retryPeriodMs: 200,
      watchPods: false,
      ...extra,
    });
    targets.push(t);
    await t.ready();
    if (lead) await waitFor('leadership', () => t.isLeader(), 10_000);
    return t;
  }

  const services = async (peer: string) => keys(await env.list('v1', 'Service', undefined, `clusterlink.net/peer=${peer}`));
  const service = (ns: string, name: string) => env.get<ServiceView>('v1', 'Service', ns, name);
  const status = async (peer: string) => (await env.get<ConfigMapView>('v1', 'ConfigMap', SYSTEM_NS, statusConfigMapName(peer)))?.data;
  const events = async (ns: string) => (await env.list<EventView>('v1', 'Event', ns)).filter(ours);

  it('creates, updates and prunes Services across three revisions', async () => {
    const t = await target('p1');
    const r1 = await t.applySlice(slice([imp('shop', 'cart'), imp('shop', 'pay'), imp('bank', 'ledger')]), 'rev1');
    expect(r1.leader).toBe(true);
    expect(r1.errors).toEqual([]);
    expect(r1.applied).toHaveLength(3);
    expect(await services('p1')).toEqual(['bank/ledger', 'shop/cart', 'shop/pay']);
    const svc = (await service('shop', 'cart'))!;
    expect(svc.metadata.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'clusterlink-gitops', 'clusterlink.net/peer': 'p1' });
    expect(svc.metadata.annotations['clusterlink.net/import']).toBe('shop/cart');
    expect(svc.spec).toMatchObject({ type: 'ClusterIP', ports: [{ name: 'tcp', protocol: 'TCP', port: 8080, targetPort: 8080 }] });
    // The API server allocated a cluster IP; the Service is selector-less (endpoints: our EndpointSlice).
    expect(svc.spec).toHaveProperty('clusterIP', expect.stringMatching(/^10\.96\./));
    expect(svc.spec.selector).toBeUndefined();
    expect(svc.metadata.managedFields?.map((f) => f.manager)).toContain('clusterlink-gitops');
    expect(await env.get('discovery.k8s.io/v1', 'EndpointSlice', 'shop', 'cart-clgo-ipv4')).toBeDefined();

    // rev2: cart changes port, ledger goes away, bank/audit appears.
    const mark = await env.api.mark();
    const r2 = await t.applySlice(slice([imp('shop', 'cart', 9090), imp('shop', 'pay'), imp('bank', 'audit')]), 'rev2');
    expect(r2.applied).toEqual([{ namespace: 'bank', name: 'audit' }, { namespace: 'shop', name: 'cart' }]);
    expect(r2.pruned).toEqual([{ namespace: 'bank', name: 'ledger' }]);
    expect(r2.unchanged).toBe(1);
    expect(await env.api.writes(mark, { resource: 'services' })).toEqual({ total: 3, patch: 2, delete: 1 });
    expect(await services('p1')).toEqual(['bank/audit', 'shop/cart', 'shop/pay']);
    expect((await service('shop', 'cart'))!.spec.ports).toMatchObject([{ port: 9090, targetPort: 9090 }]);

    // rev3: the fabric drops everything in shop.
    const r3 = await t.applySlice(slice([imp('bank', 'audit')]), 'rev3');
    expect(r3.pruned).toEqual([{ namespace: 'shop', name: 'cart' }, { namespace: 'shop', name: 'pay' }]);
    expect(await services('p1')).toEqual(['bank/audit']);
    // Slices go with their Service (deleted by the reconciler: no garbage collector runs here).
    expect(keys(await env.list('discovery.k8s.io/v1', 'EndpointSlice', undefined, 'clusterlink.net/peer=p1'))).toEqual(['bank/audit-clgo-ipv4']);

    const cm = await status('p1');
    expect(cm?.revision).toBe('rev3');
    expect(cm?.appliedImports).toBe('bank/audit');
    expect(cm?.lastError).toBe('');
    // Every request the reconciler made in this test succeeded under deploy/base/rbac.yaml.
    const denied = (await env.api.responses(0, { user: RECONCILER_USER })).filter((r) => (r.code ?? 0) >= 400 && r.code !== 404);
    expect(denied).toEqual([]);
  });

  it('leaves a foreign Service with the same name alone and reports a conflict (status + Event)', async () => {
    await env.createAs('kubectl-create', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'cart', namespace: 'shop2', labels: { app: 'cart' } }, spec: { type: 'ClusterIP', selector: { app: 'cart' }, ports: [{ port: 80 }] } } as never);
    const before = (await service('shop2', 'cart'))!.metadata;
    const t = await target('p2');
    const r = await t.applySlice(slice([imp('shop2', 'cart'), imp('shop2', 'pay')]), 'rev1');
    expect(r.conflicts).toHaveLength(1);
    expect(r.conflicts[0]).toMatchObject({ namespace: 'shop2', name: 'cart', reason: expect.stringContaining('not overwritten') });
    expect(r.applied).toEqual([{ namespace: 'shop2', name: 'pay' }]);
    const unchanged = async () => expect((await service('shop2', 'cart'))!.metadata).toMatchObject({ resourceVersion: (before as { resourceVersion?: string }).resourceVersion, uid: before.uid });
    await unchanged();
    expect((await events('shop2')).map((e) => [e.reason, e.involvedObject.kind, e.involvedObject.name, e.type])).toEqual([['ImportConflict', 'Service', 'cart', 'Warning']]);
    expect(JSON.parse((await status('p2'))?.conflicts ?? '[]')).toHaveLength(1);

    // Removing the import never prunes the foreign Service, and the same conflict is not re-reported.
    await t.applySlice(slice([imp('shop2', 'cart')]), 'rev2');
    expect(await events('shop2')).toHaveLength(1);
    await t.applySlice(slice([]), 'rev3');
    await unchanged();
    expect(await services('p2')).toEqual([]);
  });

  it('surfaces a server-side apply conflict with another field manager (409, force=false) instead of taking the field over', async () => {
    // Labelled as ours, but someone (kubectl edit) owns the port we set, with another targetPort.
    await env.createAs('kubectl-edit', {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'cart', namespace: 'shop3', labels: { 'app.kubernetes.io/managed-by': 'clusterlink-gitops', 'clusterlink.net/peer': 'p3' } },
      spec: { ports: [{ name: 'tcp', port: 8080, protocol: 'TCP', targetPort: 9999 }] },
    } as never);
    const t = await target('p3');
    const r = await t.applySlice(slice([imp('shop3', 'cart')]), 'rev1');
    expect(r.applied).toEqual([]);
    expect(r.conflicts).toHaveLength(1);
    expect(r.conflicts[0]?.reason).toMatch(/server-side apply conflict: HTTP 409.*kubectl-edit.*targetPort/);
    expect((await service('shop3', 'cart'))!.spec.ports[0]?.targetPort).toBe(9999);
    expect((await events('shop3')).map((e) => e.reason)).toEqual(['ImportConflict']);
  });

  it('restart with the same slice writes nothing; one changed import writes one Service and its slice', async () => {
    const imports = Array.from({ length: 50 }, (_, i) => imp(i % 2 ? 'shop4' : 'bank4', `svc-${i}`));
    const first = await target('p4', { identity: 'a' });
    await first.applySlice(slice(imports), 'rev1');
    expect(await services('p4')).toHaveLength(50);
    await first.stop();
    targets.splice(0);

    const second = await target('p4', { identity: 'b' });
    let mark = await env.api.mark();
    const r = await second.applySlice(slice(imports), 'rev1');
    expect(r.serviceWrites).toBe(0);
    expect(r.unchanged).toBe(50);
    expect(r.statusWritten).toBe(false);
    expect(r.endpointSliceWrites).toBe(0);
    // The server received no write from the reconciler but Lease renewals.
    const writes = await env.api.requests(mark, { user: RECONCILER_USER, verbs: ['create', 'update', 'patch', 'delete'] });
    expect(writes.filter((w) => w.resource !== 'leases')).toEqual([]);

    mark = await env.api.mark();
    const changed = imports.map((i) => (i.name === 'svc-7' ? imp(i.namespace, i.name, 7777) : i));
    const r2 = await second.applySlice(slice(changed), 'rev2');
    expect(r2.applied).toEqual([{ namespace: 'shop4', name: 'svc-7' }]);
    expect(await env.api.writes(mark, { resource: 'services' })).toEqual({ total: 1, patch: 1 });
    // Its port changed, so its slice (and only it) is rewritten.
    expect(await env.api.writes(mark, { resource: 'endpointslices' })).toEqual({ total: 1, patch: 1 });
    // The revision is recorded once, in the status ConfigMap, not on 50 Services.
    expect(await env.api.writes(mark, { resource: 'configmaps' })).toEqual({ total: 1, patch: 1 });
  });

  it('missing namespaces: skipped and reported; creating them needs a grant rbac.yaml does not give', async () => {
    const t = await target('p5');
    const r = await t.applySlice(slice([imp('shop5', 'a'), imp('newns5', 'b')]), 'rev1');
    expect(r.missingNamespaces).toEqual(['newns5']);
    expect(r.applied).toEqual([{ namespace: 'shop5', name: 'a' }]);
    await t.stop();
    targets.splice(0);

    // createNamespaces with deploy/base/rbac.yaml alone: a clear 403, the other imports still applied.
    const t2 = await target('p5', { createNamespaces: true });
    const r2 = await t2.applySlice(slice([imp('shop5', 'a'), imp('newns5', 'b')]), 'rev2');
    expect(r2.errors).toEqual([{ namespace: 'newns5', name: '', op: 'create-namespace', message: expect.stringMatching(/HTTP 403: .*cannot create resource "namespaces"/) }]);
    expect(r2.unchanged).toBe(1);
    expect((await status('p5'))?.lastError).toMatch(/newns5.*403/);

    // With the extra grant documented in docs/kube.md, the namespace is created (labelled) and used.
    await env.api.applyYaml(`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: clgo-reconciler-create-namespaces}
rules: [{apiGroups: [""], resources: [namespaces], verbs: [create]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: clgo-reconciler-create-namespaces}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: clgo-reconciler-create-namespaces}
subjects: [{kind: ServiceAccount, name: clgo-reconciler, namespace: ${SYSTEM_NS}}]
`);
    const r3 = await t2.applySlice(slice([imp('shop5', 'a'), imp('newns5', 'b')]), 'rev3');
    expect(r3.errors).toEqual([]);
    expect(r3.createdNamespaces).toEqual(['newns5']);
    expect(r3.applied).toEqual([{ namespace: 'newns5', name: 'b' }]);
    expect((await env.get<{ metadata: { labels: Record<string, string> } }>('v1', 'Namespace', undefined, 'newns5'))?.metadata.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'clusterlink-gitops' });
  });

  it('a standby writes nothing and catches up when it takes over', async () => {
    const leader = await target('p6', { identity: 'leader' });
    const standby = await target('p6', { identity: 'standby' }, false);
    await leader.applySlice(slice([imp('shop6', 'a')]), 'rev1');
    const r = await standby.applySlice(slice([imp('shop6', 'a'), imp('shop6', 'b')]), 'rev2');
    expect(r.leader).toBe(false);
    expect(await services('p6')).toEqual(['shop6/a']);
    await leader.stop();
    await waitFor('standby applies rev2 after takeover', async () => (await services('p6')).includes('shop6/b'), 10_000, 100);
    expect(standby.isLeader()).toBe(true);
  });
});
