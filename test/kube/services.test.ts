// Services for imports against the API stand-in, through startKubeTarget and the real client-node.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startKubeApiStandin, type KubeApiStandin } from '../fixtures/kube-api-standin.ts';
import { startKubeTarget, statusConfigMapName, type KubeTarget, type KubeTargetOptions } from '../../reconciler/kube/index.ts';
import { imp, slice, waitFor } from './helpers.ts';

const SYSTEM_NS = 'clusterlink-system';

describe('kube target: Services for imports', () => {
  let api: KubeApiStandin;
  const targets: KubeTarget[] = [];

  beforeEach(async () => {
    api = await startKubeApiStandin({ namespaces: ['default', SYSTEM_NS, 'shop', 'bank'] });
  });
  afterEach(async () => {
    await Promise.all(targets.splice(0).map((t) => t.stop()));
    await api.close();
  });

  async function target(extra: Partial<KubeTargetOptions> = {}): Promise<KubeTarget> {
    const t = startKubeTarget({
      kubeConfig: api.kubeConfig(),
      peer: 'east',
      namespace: SYSTEM_NS,
      dataplaneSelector: { app: 'clgo-dataplane' },
      leaseDurationSeconds: 1,
      retryPeriodMs: 100,
      watchPods: false,
      ...extra,
    });
    targets.push(t);
    await waitFor('leadership', () => t.isLeader(), 3_000);
    return t;
  }

  const services = () => api.list('services').map((s) => `${(s.metadata as { namespace: string }).namespace}/${(s.metadata as { name: string }).name}`).sort();
  const port = (ns: string, name: string) => ((api.get('services', ns, name)?.spec as { ports: { port: number }[] }).ports[0]?.port);

  it('creates, updates and prunes Services across three revisions', async () => {
    const t = await target();
    const r1 = await t.applySlice(slice([imp('shop', 'cart'), imp('shop', 'pay'), imp('bank', 'ledger')]), 'rev1');
    expect(r1.leader).toBe(true);
    expect(r1.applied).toHaveLength(3);
    expect(services()).toEqual(['bank/ledger', 'shop/cart', 'shop/pay']);
    const svc = api.get('services', 'shop', 'cart') as { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; spec: Record<string, unknown> };
    expect(svc.metadata.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'clusterlink-gitops', 'clusterlink.net/peer': 'east' });
    expect(svc.metadata.annotations['clusterlink.net/import']).toBe('shop/cart');
    expect(svc.spec).toMatchObject({ type: 'ClusterIP', ports: [{ name: 'tcp', protocol: 'TCP', port: 8080, targetPort: 8080 }] });
    // Selector-less: the endpoints come from the EndpointSlice the reconciler writes.
    expect(svc.spec.selector).toBeUndefined();
    expect(api.get('endpointslices', 'shop', 'cart-clgo-ipv4')).toBeDefined();

    // rev2: cart changes port, ledger goes away, bank/audit appears.
    api.resetCounts();
    const r2 = await t.applySlice(slice([imp('shop', 'cart', 9090), imp('shop', 'pay'), imp('bank', 'audit')]), 'rev2');
    expect(r2.applied).toEqual([{ namespace: 'bank', name: 'audit' }, { namespace: 'shop', name: 'cart' }]);
    expect(r2.pruned).toEqual([{ namespace: 'bank', name: 'ledger' }]);
    expect(r2.unchanged).toBe(1);
    expect(api.writes('services')).toMatchObject({ PATCH: 2, DELETE: 1, POST: 0, PUT: 0 });
    expect(services()).toEqual(['bank/audit', 'shop/cart', 'shop/pay']);
    expect(port('shop', 'cart')).toBe(9090);

    // rev3: the fabric drops everything in shop.
    const r3 = await t.applySlice(slice([imp('bank', 'audit')]), 'rev3');
    expect(r3.pruned).toEqual([{ namespace: 'shop', name: 'cart' }, { namespace: 'shop', name: 'pay' }]);
    expect(services()).toEqual(['bank/audit']);
    // Slices go with their Service.
    expect(api.list('endpointslices').map((e) => `${(e.metadata as { namespace: string }).namespace}/${(e.metadata as { name: string }).name}`)).toEqual(['bank/audit-clgo-ipv4']);

    const cm = api.get('configmaps', SYSTEM_NS, statusConfigMapName('east')) as { data: Record<string, string> };
    expect(cm.data.revision).toBe('rev3');
    expect(cm.data.appliedImports).toBe('bank/audit');
    expect(cm.data.lastError).toBe('');
  });

  it('leaves a foreign Service with the same name alone and reports a conflict (status + Event)', async () => {
    api.seed('services', { metadata: { name: 'cart', namespace: 'shop', labels: { app: 'cart' } }, spec: { type: 'ClusterIP', selector: { app: 'cart' }, ports: [{ port: 80 }] } });
    const before = JSON.stringify(api.get('services', 'shop', 'cart'));
    const t = await target();
    const r = await t.applySlice(slice([imp('shop', 'cart'), imp('shop', 'pay')]), 'rev1');
    expect(r.conflicts).toHaveLength(1);
    expect(r.conflicts[0]).toMatchObject({ namespace: 'shop', name: 'cart' });
    expect(r.applied).toEqual([{ namespace: 'shop', name: 'pay' }]);
    expect(JSON.stringify(api.get('services', 'shop', 'cart'))).toBe(before);
    const events = api.list('events', 'shop') as { reason: string; involvedObject: { name: string }; type: string }[];
    expect(events.map((e) => [e.reason, e.involvedObject.name, e.type])).toEqual([['ImportConflict', 'cart', 'Warning']]);
    const cm = api.get('configmaps', SYSTEM_NS, statusConfigMapName('east')) as { data: Record<string, string> };
    expect(JSON.parse(cm.data.conflicts ?? '[]')).toHaveLength(1);

    // Removing the import never prunes the foreign Service, and the same conflict is not re-reported.
    await t.applySlice(slice([imp('shop', 'cart')]), 'rev2');
    expect(api.list('events', 'shop')).toHaveLength(1);
    await t.applySlice(slice([]), 'rev3');
    expect(JSON.stringify(api.get('services', 'shop', 'cart'))).toBe(before);
  });

  it('surfaces a server-side apply conflict (409, force=false) instead of taking fields over', async () => {
    // Labelled as ours but its selector is owned by another manager (e.g. a hand edit with kubectl).
    api.seed('services', { metadata: { name: 'cart', namespace: 'shop', labels: { 'app.kubernetes.io/managed-by': 'clusterlink-gitops', 'clusterlink.net/peer': 'east' } }, spec: { selector: { app: 'hand-made' }, ports: [{ port: 80 }] } }, 'kubectl-edit');
    const t = await target();
    const r = await t.applySlice(slice([imp('shop', 'cart')]), 'rev1');
    expect(r.applied).toEqual([]);
    expect(r.conflicts).toHaveLength(1);
    expect(r.conflicts[0]?.reason).toMatch(/server-side apply conflict: HTTP 409.*kubectl-edit/);
    expect((api.get('services', 'shop', 'cart')?.spec as { selector: Record<string, string> }).selector).toEqual({ app: 'hand-made' });
  });

  it('restart with the same slice writes nothing; one changed import writes exactly one Service', async () => {
    const imports = Array.from({ length: 50 }, (_, i) => imp(i % 2 ? 'shop' : 'bank', `svc-${i}`));
    const first = await target({ identity: 'a' });
    await first.applySlice(slice(imports), 'rev1');
    expect(api.list('services')).toHaveLength(50);
    await first.stop();
    targets.splice(0);

    api.resetCounts();
    const second = await target({ identity: 'b' });
    const r = await second.applySlice(slice(imports), 'rev1');
    expect(r.serviceWrites).toBe(0);
    expect(r.unchanged).toBe(50);
    expect(r.statusWritten).toBe(false);
    expect(api.writes('services').total).toBe(0);
    expect(api.writes('configmaps').total).toBe(0);
    expect(api.writes('events').total).toBe(0);
    expect(api.writes('endpointslices').total).toBe(0);
    expect(r.endpointSliceWrites).toBe(0);

    api.resetCounts();
    const changed = imports.map((i) => (i.name === 'svc-7' ? { ...i, port: 7777 } : i));
    const r2 = await second.applySlice(slice(changed), 'rev2');
    expect(r2.applied).toEqual([{ namespace: 'shop', name: 'svc-7' }]);
    expect(api.writes('services')).toMatchObject({ total: 1, PATCH: 1 });
    // Its port changed, so its slice (and only it) is rewritten.
    expect(api.writes('endpointslices')).toMatchObject({ total: 1, PATCH: 1 });
    // The revision is recorded once, in the status ConfigMap, not on 50 Services.
    expect(api.writes('configmaps').total).toBe(1);
  });

  it('missing namespaces: skipped and reported, or created when allowed', async () => {
    const t = await target();
    const r = await t.applySlice(slice([imp('shop', 'a'), imp('newns', 'b')]), 'rev1');
    expect(r.missingNamespaces).toEqual(['newns']);
    expect(r.applied).toEqual([{ namespace: 'shop', name: 'a' }]);
    await t.stop();
    targets.splice(0);
    const t2 = await target({ createNamespaces: true });
    const r2 = await t2.applySlice(slice([imp('shop', 'a'), imp('newns', 'b')]), 'rev2');
    expect(r2.createdNamespaces).toEqual(['newns']);
    expect(r2.applied).toEqual([{ namespace: 'newns', name: 'b' }]);
  });

  it('reports apply errors in the status ConfigMap and as an Event, and recovers', async () => {
    const t = await target();
    api.failNext('PATCH', '/api/v1/namespaces/shop/services/a', 500);
    const r = await t.applySlice(slice([imp('shop', 'a')]), 'rev1');
    expect(r.errors).toMatchObject([{ namespace: 'shop', name: 'a', op: 'apply' }]);
    const cm = api.get('configmaps', SYSTEM_NS, statusConfigMapName('east')) as { data: Record<string, string> };
    expect(cm.data.lastError).toContain('HTTP 500');
    expect((api.list('events', 'shop') as { reason: string }[]).map((e) => e.reason)).toEqual(['ApplyFailed']);
    const r2 = await t.applySlice(slice([imp('shop', 'a')]), 'rev1');
    expect(r2.applied).toEqual([{ namespace: 'shop', name: 'a' }]);
    expect((api.get('configmaps', SYSTEM_NS, statusConfigMapName('east')) as { data: Record<string, string> }).data.lastError).toBe('');
  });

  it('a standby writes nothing and catches up when it takes over', async () => {
    const leader = await target({ identity: 'leader' });
    const standby = startKubeTarget({ kubeConfig: api.kubeConfig(), peer: 'east', namespace: SYSTEM_NS, dataplaneSelector: { app: 'clgo-dataplane' }, leaseDurationSeconds: 1, retryPeriodMs: 100, watchPods: false, identity: 'standby' });
    targets.push(standby);
    await leader.applySlice(slice([imp('shop', 'a')]), 'rev1');
    const r = await standby.applySlice(slice([imp('shop', 'a'), imp('shop', 'b')]), 'rev2');
    expect(r.leader).toBe(false);
    expect(services()).toEqual(['shop/a']);
    await leader.stop();
    await waitFor('standby applies rev2 after takeover', () => services().includes('shop/b'), 3_000);
    expect(standby.isLeader()).toBe(true);
  });
});
