// EndpointSlices for the selector-less import Services, through startKubeTarget and the real
// client-node against the stand-in: the endpoints are the ready data-plane pods of the
// reconciler's namespace, kept up to date from the Pod watch, written only when they change.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startKubeApiStandin, type KubeApiStandin } from '../fixtures/kube-api-standin.ts';
import { startKubeTarget, type EndpointSyncReport, type KubeTarget, type KubeTargetOptions } from '../../reconciler/kube/index.ts';
import { imp, slice, waitFor } from './helpers.ts';
import { CoordinationV1Api, V1MicroTime } from '@kubernetes/client-node';

const SYSTEM_NS = 'clusterlink-system';
const DP = { app: 'clgo-dataplane' };

interface SliceView {
  metadata: { name: string; namespace: string; labels: Record<string, string>; annotations: Record<string, string>; ownerReferences?: { kind: string; name: string; uid: string }[] };
  addressType: string;
  endpoints: { addresses: string[]; conditions: { ready: boolean }; targetRef: { kind: string; namespace: string; name: string } }[];
  ports: { name: string; port: number; protocol: string }[];
}

describe('kube target: EndpointSlices for import Services', () => {
  let api: KubeApiStandin;
  const targets: KubeTarget[] = [];
  let syncs: EndpointSyncReport[];

  beforeEach(async () => {
    api = await startKubeApiStandin({ namespaces: ['default', SYSTEM_NS, 'shop', 'bank'], bookmarkIntervalMs: 200 });
    syncs = [];
    // Two ready tunnel pods, one not ready; decoys: same labels in another namespace, other labels here.
    api.addPod({ namespace: SYSTEM_NS, name: 'tunnel-1', ip: '10.1.0.1', labels: DP, nodeName: 'node-a' });
    api.addPod({ namespace: SYSTEM_NS, name: 'tunnel-2', ip: '10.1.0.2', labels: DP });
    api.addPod({ namespace: SYSTEM_NS, name: 'tunnel-3', ip: '10.1.0.3', labels: DP, ready: false });
    api.addPod({ namespace: 'shop', name: 'imposter', ip: '10.2.0.9', labels: DP });
    api.addPod({ namespace: SYSTEM_NS, name: 'reconciler-0', ip: '10.1.0.100', labels: { app: 'clgo-reconciler' } });
  });
  afterEach(async () => {
    await Promise.all(targets.splice(0).map((t) => t.stop()));
    await api.close();
  });

  async function target(extra: Partial<KubeTargetOptions> = {}, lead = true): Promise<KubeTarget> {
    const t = startKubeTarget({
      kubeConfig: api.kubeConfig(),
      peer: 'east',
      namespace: SYSTEM_NS,
      dataplaneSelector: DP,
      leaseDurationSeconds: 1,
      retryPeriodMs: 100,
      endpointsDebounceMs: 150,
      podWatchBackoff: { initialMs: 20, maxMs: 200 },
      onEndpointsSynced: (r) => syncs.push(r),
      ...extra,
    });
    targets.push(t);
    await t.ready();
    if (lead) await waitFor('leadership', () => t.isLeader(), 3_000);
    return t;
  }

  const sliceOf = (ns: string, name: string) => api.get('endpointslices', ns, name) as SliceView | undefined;
  const addrs = (ns: string, name: string) => sliceOf(ns, name)?.endpoints.map((e) => e.addresses[0]) ?? null;
  const sliceKeys = () => api.list('endpointslices').map((e) => `${(e.metadata as { namespace: string }).namespace}/${(e.metadata as { name: string }).name}`).sort();

  it('gives an import Service an EndpointSlice with the ready tunnel pod IPs', async () => {
    const t = await target();
    const r = await t.applySlice(slice([imp('shop', 'cart', 80, { targetPort: 18080 }), imp('bank', 'ledger', 5432)]), 'rev1');
    expect(r.errors).toEqual([]);
    expect(r.endpointSlices.applied).toEqual([{ namespace: 'bank', name: 'ledger-clgo-ipv4' }, { namespace: 'shop', name: 'cart-clgo-ipv4' }]);
    expect(r.endpointSliceWrites).toBe(2);

    const svc = api.get('services', 'shop', 'cart') as { metadata: { uid: string }; spec: Record<string, unknown> };
    expect(svc.spec.selector).toBeUndefined();
    const s = sliceOf('shop', 'cart-clgo-ipv4');
    expect(s).toBeDefined();
    expect(s!.metadata.labels).toEqual({ 'kubernetes.io/service-name': 'cart', 'endpointslice.kubernetes.io/managed-by': 'clusterlink-gitops', 'clusterlink.net/peer': 'east' });
    expect(s!.metadata.annotations['clusterlink.net/spec-hash']).toMatch(/^[0-9a-f]{32}$/);
    expect(s!.metadata.ownerReferences).toEqual([{ apiVersion: 'v1', kind: 'Service', name: 'cart', uid: svc.metadata.uid }]);
    expect(s!.addressType).toBe('IPv4');
    // The data plane listens on the import's targetPort.
    expect(s!.ports).toEqual([{ name: 'tcp', port: 18080, protocol: 'TCP' }]);
    expect(s!.endpoints).toEqual([
      { addresses: ['10.1.0.1'], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: 'Pod', namespace: SYSTEM_NS, name: 'tunnel-1', uid: expect.any(String) }, nodeName: 'node-a' },
      { addresses: ['10.1.0.2'], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: 'Pod', namespace: SYSTEM_NS, name: 'tunnel-2', uid: expect.any(String) } },
    ]);
    expect(sliceOf('bank', 'ledger-clgo-ipv4')!.ports).toEqual([{ name: 'tcp', port: 5432, protocol: 'TCP' }]);
    // No IPv6 pod IP, no IPv6 slice.
    expect(sliceKeys()).toEqual(['bank/ledger-clgo-ipv4', 'shop/cart-clgo-ipv4']);
  });

  it('follows tunnel pods becoming unready, ready, deleted and added (debounced, every owned slice)', async () => {
    const t = await target();
    await t.applySlice(slice([imp('shop', 'cart'), imp('bank', 'ledger')]), 'rev1');
    api.resetCounts();

    api.setPodReady(SYSTEM_NS, 'tunnel-1', false);
    await waitFor('tunnel-1 out', () => addrs('shop', 'cart-clgo-ipv4')?.join() === '10.1.0.2' && addrs('bank', 'ledger-clgo-ipv4')?.join() === '10.1.0.2');
    expect(api.writes('endpointslices')).toMatchObject({ total: 2, PATCH: 2 });

    api.setPodReady(SYSTEM_NS, 'tunnel-3', true);
    await waitFor('tunnel-3 in', () => addrs('shop', 'cart-clgo-ipv4')?.join() === '10.1.0.2,10.1.0.3');

    api.deletePod(SYSTEM_NS, 'tunnel-2');
    await waitFor('tunnel-2 gone', () => addrs('bank', 'ledger-clgo-ipv4')?.join() === '10.1.0.3');

    api.addPod({ namespace: SYSTEM_NS, name: 'tunnel-4', ip: '10.1.0.4', labels: DP });
    await waitFor('tunnel-4 in', () => addrs('shop', 'cart-clgo-ipv4')?.join() === '10.1.0.3,10.1.0.4' && addrs('bank', 'ledger-clgo-ipv4')?.join() === '10.1.0.3,10.1.0.4');

    // A terminating pod is no longer an endpoint.
    api.addPod({ namespace: SYSTEM_NS, name: 'tunnel-4', ip: '10.1.0.4', labels: DP, terminating: true });
    await waitFor('tunnel-4 terminating', () => addrs('shop', 'cart-clgo-ipv4')?.join() === '10.1.0.3');

    // A burst of changes inside the debounce window is one sync (one write per slice).
    await waitFor('syncs settle', () => syncs.length >= 5);
    const before = syncs.length;
    api.resetCounts();
    api.setPodReady(SYSTEM_NS, 'tunnel-1', true);
    api.addPod({ namespace: SYSTEM_NS, name: 'tunnel-5', ip: '10.1.0.5', labels: DP });
    api.setPodReady(SYSTEM_NS, 'tunnel-3', false);
    await waitFor('burst applied', () => addrs('shop', 'cart-clgo-ipv4')?.join() === '10.1.0.1,10.1.0.5' && addrs('bank', 'ledger-clgo-ipv4')?.join() === '10.1.0.1,10.1.0.5');
    await new Promise((r) => setTimeout(r, 200));
    expect(syncs.length).toBe(before + 1);
    expect(api.writes('endpointslices').total).toBe(2);

    // Pods that are not the data plane change nothing (no sync, no write).
    api.resetCounts();
    api.addPod({ namespace: 'shop', name: 'imposter', ip: '10.2.0.10', labels: DP });
    api.addPod({ namespace: SYSTEM_NS, name: 'reconciler-1', ip: '10.1.0.101', labels: { app: 'clgo-reconciler' } });
    await new Promise((r) => setTimeout(r, 250));
    expect(syncs.length).toBe(before + 1);
    expect(api.writes('endpointslices').total).toBe(0);
  });

  it('keeps an IPv6 slice only while a ready tunnel pod has an IPv6 address', async () => {
    api.addPod({ namespace: SYSTEM_NS, name: 'tunnel-2', ip: '10.1.0.2', ips: ['10.1.0.2', 'fd00::2'], labels: DP });
    const t = await target();
    await t.applySlice(slice([imp('shop', 'cart')]), 'rev1');
    expect(sliceKeys()).toEqual(['shop/cart-clgo-ipv4', 'shop/cart-clgo-ipv6']);
    expect(sliceOf('shop', 'cart-clgo-ipv6')!.addressType).toBe('IPv6');
    expect(addrs('shop', 'cart-clgo-ipv6')).toEqual(['fd00::2']);
    expect(addrs('shop', 'cart-clgo-ipv4')).toEqual(['10.1.0.1', '10.1.0.2']);

    api.setPodReady(SYSTEM_NS, 'tunnel-2', false);
    await waitFor('IPv6 slice pruned', () => sliceKeys().join() === 'shop/cart-clgo-ipv4');
    expect(addrs('shop', 'cart-clgo-ipv4')).toEqual(['10.1.0.1']);
  });

  it('restart with nothing changed writes nothing; one import change writes one Service (+ its slice only if its port changed)', async () => {
    const imports = Array.from({ length: 20 }, (_, i) => imp(i % 2 ? 'shop' : 'bank', `svc-${i}`, 8000 + i));
    const first = await target({ identity: 'a' });
    await first.applySlice(slice(imports), 'rev1');
    expect(api.list('endpointslices')).toHaveLength(20);
    await first.stop();
    targets.splice(0);

    api.resetCounts();
    const second = await target({ identity: 'b' });
    const r = await second.applySlice(slice(imports), 'rev1');
    expect(r.serviceWrites).toBe(0);
    expect(r.endpointSliceWrites).toBe(0);
    expect(r.endpointSlices.unchanged).toBe(20);
    expect(api.writes().total).toBe(api.writes('leases').total);

    // A label change: the Service is rewritten, its slice is not.
    api.resetCounts();
    const relabelled = imports.map((i) => (i.name === 'svc-3' ? { ...i, labels: { tier: 'web' } } : i));
    const r2 = await second.applySlice(slice(relabelled), 'rev2');
    expect(r2.applied).toEqual([{ namespace: 'shop', name: 'svc-3' }]);
    expect(api.writes('services')).toMatchObject({ total: 1, PATCH: 1 });
    expect(api.writes('endpointslices').total).toBe(0);

    // A port change: the Service and its slice.
    api.resetCounts();
    const moved = relabelled.map((i) => (i.name === 'svc-4' ? { ...i, port: 9999 } : i));
    const r3 = await second.applySlice(slice(moved), 'rev3');
    expect(r3.applied).toEqual([{ namespace: 'bank', name: 'svc-4' }]);
    expect(r3.endpointSlices.applied).toEqual([{ namespace: 'bank', name: 'svc-4-clgo-ipv4' }]);
    expect(api.writes('services')).toMatchObject({ total: 1, PATCH: 1 });
    expect(api.writes('endpointslices')).toMatchObject({ total: 1, PATCH: 1 });
    expect(sliceOf('bank', 'svc-4-clgo-ipv4')!.ports[0]!.port).toBe(9999);
  });

  it('reports slice write failures (status + Event on the Service) and keeps a slice whose Service failed to re-apply', async () => {
    const t = await target();
    api.failNext('PATCH', '/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/cart-clgo-ipv4', 500);
    const r = await t.applySlice(slice([imp('shop', 'cart')]), 'rev1');
    expect(r.applied).toEqual([{ namespace: 'shop', name: 'cart' }]);
    expect(r.errors).toMatchObject([{ namespace: 'shop', name: 'cart', op: 'endpointslice-apply', message: expect.stringContaining('EndpointSlice cart-clgo-ipv4: HTTP 500') }]);
    expect((api.list('events', 'shop') as { reason: string; involvedObject: { kind: string; name: string } }[]).map((e) => [e.reason, e.involvedObject.kind, e.involvedObject.name])).toEqual([['ApplyFailed', 'Service', 'cart']]);
    expect(sliceOf('shop', 'cart-clgo-ipv4')).toBeUndefined();

    const r2 = await t.applySlice(slice([imp('shop', 'cart')]), 'rev1');
    expect(r2.errors).toEqual([]);
    expect(r2.endpointSlices.applied).toEqual([{ namespace: 'shop', name: 'cart-clgo-ipv4' }]);

    // The Service's re-apply fails: it still exists and routes, so its slice stays.
    api.failNext('PATCH', '/api/v1/namespaces/shop/services/cart', 500);
    const r3 = await t.applySlice(slice([imp('shop', 'cart', 81)]), 'rev2');
    expect(r3.errors).toMatchObject([{ namespace: 'shop', name: 'cart', op: 'apply' }]);
    expect(r3.endpointSlices.pruned).toEqual([]);
    expect(sliceOf('shop', 'cart-clgo-ipv4')).toBeDefined();

    // A failed slice list is reported, not thrown; Services are still applied.
    api.failNext('GET', '/apis/discovery.k8s.io/v1/endpointslices', 500);
    const r4 = await t.applySlice(slice([imp('shop', 'cart', 81)]), 'rev2');
    expect(r4.applied).toEqual([{ namespace: 'shop', name: 'cart' }]);
    expect(r4.errors).toMatchObject([{ namespace: SYSTEM_NS, op: 'endpointslice-list' }]);
  });

  it('defers the slices until the first Pod list, then writes them (never empties them from an unknown pod set)', async () => {
    api.failNext('GET', '/api/v1/pods', 500, 4);
    const t = startKubeTarget({ kubeConfig: api.kubeConfig(), peer: 'east', namespace: SYSTEM_NS, dataplaneSelector: DP, leaseDurationSeconds: 1, retryPeriodMs: 100, podWatchBackoff: { initialMs: 50, maxMs: 100 }, podListTimeoutMs: 20, endpointsDebounceMs: 20 });
    targets.push(t);
    await waitFor('leadership', () => t.isLeader(), 3_000);
    const r = await t.applySlice(slice([imp('shop', 'cart')]), 'rev1');
    expect(r.applied).toEqual([{ namespace: 'shop', name: 'cart' }]);
    expect(r.endpointSlices.deferred).toBe(true);
    expect(r.endpointSliceWrites).toBe(0);
    await waitFor('slice after the first list', () => addrs('shop', 'cart-clgo-ipv4')?.join() === '10.1.0.1,10.1.0.2', 3_000);
  });

  it('never touches an EndpointSlice it does not own', async () => {
    // The EndpointSlice controller's slice for some other Service, and a foreign slice squatting on our name.
    api.seed('endpointslices', { metadata: { name: 'cart-x7k2p', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'cart', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } }, addressType: 'IPv4', endpoints: [{ addresses: ['10.9.9.9'] }], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }, 'kube-controller-manager');
    api.seed('endpointslices', { metadata: { name: 'pay-clgo-ipv4', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'pay', 'endpointslice.kubernetes.io/managed-by': 'someone-else' } }, addressType: 'IPv4', endpoints: [], ports: [] }, 'kubectl-create');
    const before = [JSON.stringify(sliceOf('shop', 'cart-x7k2p')), JSON.stringify(sliceOf('shop', 'pay-clgo-ipv4'))];
    const untouched = () => expect([JSON.stringify(sliceOf('shop', 'cart-x7k2p')), JSON.stringify(sliceOf('shop', 'pay-clgo-ipv4'))]).toEqual(before);

    const t = await target();
    const r = await t.applySlice(slice([imp('shop', 'cart'), imp('shop', 'pay')]), 'rev1');
    expect(r.endpointSlices.applied).toEqual([{ namespace: 'shop', name: 'cart-clgo-ipv4' }]);
    expect(r.conflicts).toEqual([{ namespace: 'shop', name: 'pay', reason: expect.stringContaining('EndpointSlice shop/pay-clgo-ipv4 already exists and is managed by someone-else') }]);
    untouched();

    api.setPodReady(SYSTEM_NS, 'tunnel-1', false);
    await waitFor('sync', () => addrs('shop', 'cart-clgo-ipv4')?.join() === '10.1.0.2');
    untouched();

    // Pruning everything removes ours only.
    const r2 = await t.applySlice(slice([]), 'rev2');
    expect(r2.endpointSlices.pruned).toEqual([{ namespace: 'shop', name: 'cart-clgo-ipv4' }]);
    expect(sliceKeys()).toEqual(['shop/cart-x7k2p', 'shop/pay-clgo-ipv4']);
    untouched();
  });

  it('a standby writes no slices on pod changes; it brings them up to date when it takes over', async () => {
    // The leader here manages no slices, so every slice write below is the standby's.
    const leader = await target({ identity: 'leader', endpointSlices: false, watchPods: false });
    await leader.applySlice(slice([imp('shop', 'cart')]), 'rev1');
    const standby = await target({ identity: 'standby' }, false);
    const r = await standby.applySlice(slice([imp('shop', 'cart')]), 'rev1');
    expect(r.leader).toBe(false);
    api.resetCounts();
    api.setPodReady(SYSTEM_NS, 'tunnel-1', false);
    await new Promise((res) => setTimeout(res, 300));
    expect(api.writes('endpointslices').total).toBe(0);
    expect(sliceKeys()).toEqual([]);

    await leader.stop();
    await waitFor('standby writes the slice after takeover', () => addrs('shop', 'cart-clgo-ipv4')?.join() === '10.1.0.2', 3_000);
    expect(standby.isLeader()).toBe(true);
  });

  it('a replica that lost the lease stops updating slices, and resumes when it leads again', async () => {
    const t = await target({ identity: 'x' });
    await t.applySlice(slice([imp('shop', 'cart')]), 'rev1');
    expect(addrs('shop', 'cart-clgo-ipv4')).toEqual(['10.1.0.1', '10.1.0.2']);

    // Someone else holds the lease and keeps renewing it: x steps down and must not write.
    const coord = api.kubeConfig().makeApiClient(CoordinationV1Api);
    let thief = true;
    const steal = (async () => {
      while (thief) {
        try {
          const l = await coord.readNamespacedLease({ namespace: SYSTEM_NS, name: 'clgo-reconciler-east' });
          await coord.replaceNamespacedLease({ namespace: SYSTEM_NS, name: 'clgo-reconciler-east', body: { ...l, spec: { ...l.spec, holderIdentity: 'thief', renewTime: new V1MicroTime(Date.now()) } } });
        } catch {
          // 409 against x's renew: try again.
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      await waitFor('x steps down', () => !t.isLeader(), 3_000);
      api.resetCounts();
      api.setPodReady(SYSTEM_NS, 'tunnel-1', false);
      await new Promise((r) => setTimeout(r, 300));
      expect(api.writes('endpointslices').total).toBe(0);
      expect(addrs('shop', 'cart-clgo-ipv4')).toEqual(['10.1.0.1', '10.1.0.2']);
    } finally {
      thief = false;
      await steal;
    }
    // The thief stops renewing: x takes over after a lease period and catches up.
    await waitFor('x leads again and syncs', () => t.isLeader() && addrs('shop', 'cart-clgo-ipv4')?.join() === '10.1.0.2', 4_000);
  });
});
