// EndpointSlices for the selector-less import Services against a real kube-apiserver: the
// endpoints are the ready data-plane pods of the reconciler's namespace (Pods created through the
// API, their status written as a kubelet would), kept up to date from the Pod watch, written only
// when they change. The reconciler authenticates as the ServiceAccount of deploy/base/rbac.yaml.
// One server for the file: each test has its own peer, data-plane label and namespaces.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CoordinationV1Api, V1MicroTime } from '@kubernetes/client-node';
import { startKubeTarget, type EndpointSyncReport, type KubeTarget, type KubeTargetOptions } from '../../reconciler/kube/index.ts';
import { RECONCILER_USER, SYSTEM_NS, imp, keys, slice, startKubeEnv, waitFor, type KubeEnv } from './helpers.ts';

interface SliceView {
  metadata: { name: string; namespace: string; labels: Record<string, string>; annotations: Record<string, string>; ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string }[] };
  addressType: string;
  endpoints?: { addresses: string[]; conditions: { ready: boolean }; targetRef: { kind: string; namespace: string; name: string }; nodeName?: string }[];
  ports: { name: string; port: number; protocol: string }[];
}

describe('kube target: EndpointSlices for import Services (real API server)', () => {
  let env: KubeEnv;
  const targets: KubeTarget[] = [];
  let syncs: EndpointSyncReport[];

  beforeAll(async () => {
    env = await startKubeEnv(['shop', 'bank', 'shop2', 'shop3', 'bank4', 'shop4', 'shop5', 'shop6', 'shop7']);
  });
  afterAll(async () => {
    await env?.stop();
  });
  afterEach(async () => {
    await Promise.all(targets.splice(0).map((t) => t.stop()));
  });

  /** Two ready tunnel pods, one not ready; decoys: same labels in another namespace, other labels here. */
  async function pods(peer: string, net: string, decoyNs: string) {
    const dp = { app: `dp-${peer}` };
    await env.api.createPod({ namespace: SYSTEM_NS, name: `${peer}-tunnel-1`, ip: `${net}.1`, labels: dp, nodeName: 'node-a' });
    await env.api.createPod({ namespace: SYSTEM_NS, name: `${peer}-tunnel-2`, ip: `${net}.2`, labels: dp });
    await env.api.createPod({ namespace: SYSTEM_NS, name: `${peer}-tunnel-3`, ip: `${net}.3`, labels: dp, ready: false });
    await env.api.createPod({ namespace: decoyNs, name: `${peer}-imposter`, ip: `${net}.99`, labels: dp });
    await env.api.createPod({ namespace: SYSTEM_NS, name: `${peer}-reconciler-0`, ip: `${net}.100`, labels: { app: `reconciler-${peer}` } });
    return dp;
  }

  async function target(peer: string, extra: Partial<KubeTargetOptions> = {}, lead = true): Promise<KubeTarget> {
    const t = startKubeTarget({
      kubeConfig: env.reconciler,
      peer,
      namespace: SYSTEM_NS,
      dataplaneSelector: { app: `dp-${peer}` },
      leaseDurationSeconds: 2,
      retryPeriodMs: 200,
      endpointsDebounceMs: 150,
      podWatchBackoff: { initialMs: 50, maxMs: 500 },
      onEndpointsSynced: (r) => syncs.push(r),
      ...extra,
    });
    targets.push(t);
    await t.ready();
    if (lead) await waitFor('leadership', () => t.isLeader(), 10_000);
    return t;
  }

  const sliceOf = (ns: string, name: string) => env.get<SliceView>('discovery.k8s.io/v1', 'EndpointSlice', ns, name);
  const addrs = async (ns: string, name: string) => (await sliceOf(ns, name))?.endpoints?.map((e) => e.addresses[0]).join() ?? null;
  const sliceKeys = async (peer: string) => keys(await env.list('discovery.k8s.io/v1', 'EndpointSlice', undefined, `clusterlink.net/peer=${peer}`));
  const sliceWrites = (mark: number) => env.api.writes(mark, { resource: 'endpointslices', user: RECONCILER_USER });

  it('gives an import Service an EndpointSlice with the ready tunnel pod IPs', async () => {
    syncs = [];
    await pods('e1', '10.1.1', 'shop2');
    const t = await target('e1');
    const r = await t.applySlice(slice([imp('shop', 'cart', 80, { targetPort: 18080 }), imp('bank', 'ledger', 5432)]), 'rev1');
    expect(r.errors).toEqual([]);
    expect(r.endpointSlices.applied).toEqual([{ namespace: 'bank', name: 'ledger-clgo-ipv4' }, { namespace: 'shop', name: 'cart-clgo-ipv4' }]);
    expect(r.endpointSliceWrites).toBe(2);

    const svc = (await env.get<{ metadata: { uid: string }; spec: Record<string, unknown> }>('v1', 'Service', 'shop', 'cart'))!;
    expect(svc.spec.selector).toBeUndefined();
    const s = (await sliceOf('shop', 'cart-clgo-ipv4'))!;
    expect(s.metadata.labels).toEqual({ 'kubernetes.io/service-name': 'cart', 'endpointslice.kubernetes.io/managed-by': 'clusterlink-gitops', 'clusterlink.net/peer': 'e1' });
    expect(s.metadata.annotations['clusterlink.net/spec-hash']).toMatch(/^[0-9a-f]{32}$/);
    expect(s.metadata.ownerReferences).toEqual([{ apiVersion: 'v1', kind: 'Service', name: 'cart', uid: svc.metadata.uid }]);
    expect(s.addressType).toBe('IPv4');
    // The data plane listens on the import's targetPort.
    expect(s.ports).toEqual([{ name: 'tcp', port: 18080, protocol: 'TCP' }]);
    expect(s.endpoints).toEqual([
      { addresses: ['10.1.1.1'], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: 'Pod', namespace: SYSTEM_NS, name: 'e1-tunnel-1', uid: expect.any(String) }, nodeName: 'node-a' },
      { addresses: ['10.1.1.2'], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: 'Pod', namespace: SYSTEM_NS, name: 'e1-tunnel-2', uid: expect.any(String) } },
    ]);
    expect((await sliceOf('bank', 'ledger-clgo-ipv4'))!.ports).toEqual([{ name: 'tcp', port: 5432, protocol: 'TCP' }]);
    // No IPv6 pod IP, no IPv6 slice.
    expect(await sliceKeys('e1')).toEqual(['bank/ledger-clgo-ipv4', 'shop/cart-clgo-ipv4']);
  });

  it('follows tunnel pods becoming unready, ready, deleted, added and terminating (debounced, every owned slice)', async () => {
    syncs = [];
    const dp = await pods('e2', '10.1.2', 'shop');
    // A wide debounce window so that the burst below is one pass even on a loaded machine.
    const t = await target('e2', { endpointsDebounceMs: 1_500 });
    await t.applySlice(slice([imp('shop2', 'cart'), imp('shop2', 'pay')]), 'rev1');
    const both = async (want: string) => (await addrs('shop2', 'cart-clgo-ipv4')) === want && (await addrs('shop2', 'pay-clgo-ipv4')) === want;

    let mark = await env.api.mark();
    await env.api.setPodReady(SYSTEM_NS, 'e2-tunnel-1', false);
    await waitFor('tunnel-1 out', () => both('10.1.2.2'), 10_000, 100);
    expect(await sliceWrites(mark)).toEqual({ total: 2, patch: 2 });

    await env.api.setPodReady(SYSTEM_NS, 'e2-tunnel-3', true);
    await waitFor('tunnel-3 in', () => both('10.1.2.2,10.1.2.3'), 10_000, 100);

    await env.api.deletePod(SYSTEM_NS, 'e2-tunnel-2');
    await waitFor('tunnel-2 gone', () => both('10.1.2.3'), 10_000, 100);

    await env.api.createPod({ namespace: SYSTEM_NS, name: 'e2-tunnel-4', ip: '10.1.2.4', labels: dp, nodeName: 'node-b' });
    await waitFor('tunnel-4 in', () => both('10.1.2.3,10.1.2.4'), 10_000, 100);

    // A graceful delete of a scheduled pod leaves it terminating (no kubelet to finish it): no longer an endpoint.
    await env.api.deletePod(SYSTEM_NS, 'e2-tunnel-4', { graceful: true });
    expect((await env.get<{ metadata: { deletionTimestamp?: string } }>('v1', 'Pod', SYSTEM_NS, 'e2-tunnel-4'))?.metadata.deletionTimestamp).toBeDefined();
    await waitFor('tunnel-4 terminating', () => both('10.1.2.3'), 10_000, 100);

    // A burst of changes inside the debounce window is one pass (one write per slice).
    await new Promise((r) => setTimeout(r, 1_600));
    const before = syncs.length;
    mark = await env.api.mark();
    await env.api.setPodReady(SYSTEM_NS, 'e2-tunnel-1', true);
    await env.api.setPodReady(SYSTEM_NS, 'e2-tunnel-3', false);
    await env.api.createPod({ namespace: SYSTEM_NS, name: 'e2-tunnel-5', ip: '10.1.2.5', labels: dp });
    await waitFor('burst applied', () => both('10.1.2.1,10.1.2.5'), 10_000, 100);
    await new Promise((r) => setTimeout(r, 1_600));
    expect(syncs.length).toBe(before + 1);
    expect(await sliceWrites(mark)).toEqual({ total: 2, patch: 2 });

    // Pods that are not the data plane change nothing (no pass, no write).
    mark = await env.api.mark();
    await env.api.createPod({ namespace: 'shop', name: 'e2-imposter-2', ip: '10.1.2.98', labels: dp });
    await env.api.createPod({ namespace: SYSTEM_NS, name: 'e2-reconciler-1', ip: '10.1.2.101', labels: { app: 'reconciler-e2' } });
    await new Promise((r) => setTimeout(r, 1_600));
    expect(syncs.length).toBe(before + 1);
    expect((await sliceWrites(mark)).total).toBe(0);
  });

  it('keeps an IPv6 slice only while a ready tunnel pod has an IPv6 address', async () => {
    syncs = [];
    const dp = { app: 'dp-e3' };
    await env.api.createPod({ namespace: SYSTEM_NS, name: 'e3-tunnel-1', ip: '10.1.3.1', labels: dp });
    await env.api.createPod({ namespace: SYSTEM_NS, name: 'e3-tunnel-2', ip: '10.1.3.2', ips: ['10.1.3.2', 'fd00::3:2'], labels: dp });
    const t = await target('e3');
    await t.applySlice(slice([imp('shop3', 'cart')]), 'rev1');
    expect(await sliceKeys('e3')).toEqual(['shop3/cart-clgo-ipv4', 'shop3/cart-clgo-ipv6']);
    expect((await sliceOf('shop3', 'cart-clgo-ipv6'))!.addressType).toBe('IPv6');
    expect(await addrs('shop3', 'cart-clgo-ipv6')).toBe('fd00::3:2');
    expect(await addrs('shop3', 'cart-clgo-ipv4')).toBe('10.1.3.1,10.1.3.2');

    await env.api.setPodReady(SYSTEM_NS, 'e3-tunnel-2', false);
    await waitFor('IPv6 slice pruned', async () => (await sliceKeys('e3')).join() === 'shop3/cart-clgo-ipv4', 10_000, 100);
    expect(await addrs('shop3', 'cart-clgo-ipv4')).toBe('10.1.3.1');
  });

  it('restart with nothing changed writes nothing; one import change writes one Service (+ its slice only if its port changed)', async () => {
    syncs = [];
    await pods('e4', '10.1.4', 'shop');
    const imports = Array.from({ length: 20 }, (_, i) => imp(i % 2 ? 'shop4' : 'bank4', `svc-${i}`, 8000 + i));
    const first = await target('e4', { identity: 'a' });
    await first.applySlice(slice(imports), 'rev1');
    expect(await sliceKeys('e4')).toHaveLength(20);
    await first.stop();
    targets.splice(0);

    const second = await target('e4', { identity: 'b' });
    let mark = await env.api.mark();
    const r = await second.applySlice(slice(imports), 'rev1');
    expect(r.serviceWrites).toBe(0);
    expect(r.endpointSliceWrites).toBe(0);
    expect(r.endpointSlices.unchanged).toBe(20);
    const writes = await env.api.requests(mark, { user: RECONCILER_USER, verbs: ['create', 'update', 'patch', 'delete'] });
    expect(writes.filter((w) => w.resource !== 'leases')).toEqual([]);

    // A label change: the Service is rewritten, its slice is not.
    mark = await env.api.mark();
    const relabelled = imports.map((i) => (i.name === 'svc-3' ? { ...i, labels: { tier: 'web' } } : i));
    const r2 = await second.applySlice(slice(relabelled), 'rev2');
    expect(r2.applied).toEqual([{ namespace: 'shop4', name: 'svc-3' }]);
    expect(await env.api.writes(mark, { resource: 'services' })).toEqual({ total: 1, patch: 1 });
    expect((await sliceWrites(mark)).total).toBe(0);

    // A port change: the Service and its slice.
    mark = await env.api.mark();
    const moved = relabelled.map((i) => (i.name === 'svc-4' ? imp(i.namespace, i.name, 9999) : i));
    const r3 = await second.applySlice(slice(moved), 'rev3');
    expect(r3.applied).toEqual([{ namespace: 'bank4', name: 'svc-4' }]);
    expect(r3.endpointSlices.applied).toEqual([{ namespace: 'bank4', name: 'svc-4-clgo-ipv4' }]);
    expect(await env.api.writes(mark, { resource: 'services' })).toEqual({ total: 1, patch: 1 });
    expect(await sliceWrites(mark)).toEqual({ total: 1, patch: 1 });
    expect((await sliceOf('bank4', 'svc-4-clgo-ipv4'))!.ports[0]!.port).toBe(9999);
  });

  it('never touches an EndpointSlice it does not own', async () => {
    syncs = [];
    await pods('e5', '10.1.5', 'shop');
    // The EndpointSlice controller's slice for some Service, and a foreign slice squatting on our name.
    await env.createAs('kube-controller-manager', { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'cart-x7k2p', namespace: 'shop5', labels: { 'kubernetes.io/service-name': 'cart', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } }, addressType: 'IPv4', endpoints: [{ addresses: ['10.9.9.9'] }], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] } as never);
    await env.createAs('kubectl-create', { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'pay-clgo-ipv4', namespace: 'shop5', labels: { 'kubernetes.io/service-name': 'pay', 'endpointslice.kubernetes.io/managed-by': 'someone-else' } }, addressType: 'IPv4', endpoints: [], ports: [] } as never);
    const rv = async () => [(await sliceOf('shop5', 'cart-x7k2p'))?.metadata, (await sliceOf('shop5', 'pay-clgo-ipv4'))?.metadata].map((m) => (m as { resourceVersion?: string } | undefined)?.resourceVersion);
    const before = await rv();
    expect(before.every(Boolean)).toBe(true);

    const t = await target('e5');
    const r = await t.applySlice(slice([imp('shop5', 'cart'), imp('shop5', 'pay')]), 'rev1');
    expect(r.endpointSlices.applied).toEqual([{ namespace: 'shop5', name: 'cart-clgo-ipv4' }]);
    expect(r.conflicts).toEqual([{ namespace: 'shop5', name: 'pay', reason: expect.stringContaining('EndpointSlice shop5/pay-clgo-ipv4 already exists and is managed by someone-else') }]);
    expect(await rv()).toEqual(before);

    await env.api.setPodReady(SYSTEM_NS, 'e5-tunnel-1', false);
    await waitFor('sync', async () => (await addrs('shop5', 'cart-clgo-ipv4')) === '10.1.5.2', 10_000, 100);
    expect(await rv()).toEqual(before);

    // Pruning everything removes ours only.
    const r2 = await t.applySlice(slice([]), 'rev2');
    expect(r2.endpointSlices.pruned).toEqual([{ namespace: 'shop5', name: 'cart-clgo-ipv4' }]);
    expect(keys(await env.list('discovery.k8s.io/v1', 'EndpointSlice', 'shop5'))).toEqual(['shop5/cart-x7k2p', 'shop5/pay-clgo-ipv4']);
    expect(await rv()).toEqual(before);
  });

  it('a standby writes no slices on pod changes; it brings them up to date when it takes over', async () => {
    syncs = [];
    await pods('e6', '10.1.6', 'shop');
    // The leader here manages no slices, so every slice write below is the standby's.
    const leader = await target('e6', { identity: 'leader', endpointSlices: false, watchPods: false });
    await leader.applySlice(slice([imp('shop6', 'cart')]), 'rev1');
    const standby = await target('e6', { identity: 'standby' }, false);
    const r = await standby.applySlice(slice([imp('shop6', 'cart')]), 'rev1');
    expect(r.leader).toBe(false);
    const mark = await env.api.mark();
    await env.api.setPodReady(SYSTEM_NS, 'e6-tunnel-1', false);
    await new Promise((res) => setTimeout(res, 1_000));
    expect((await sliceWrites(mark)).total).toBe(0);
    expect(await sliceKeys('e6')).toEqual([]);

    await leader.stop();
    await waitFor('standby writes the slice after takeover', async () => (await addrs('shop6', 'cart-clgo-ipv4')) === '10.1.6.2', 10_000, 100);
    expect(standby.isLeader()).toBe(true);
  });

  it('a replica that lost the lease stops updating slices, and resumes when it leads again', async () => {
    syncs = [];
    await pods('e7', '10.1.7', 'shop');
    const t = await target('e7', { identity: 'x' });
    await t.applySlice(slice([imp('shop7', 'cart')]), 'rev1');
    expect(await addrs('shop7', 'cart-clgo-ipv4')).toBe('10.1.7.1,10.1.7.2');

    // Someone else holds the lease and keeps renewing it: x steps down and must not write.
    const coord = env.admin.makeApiClient(CoordinationV1Api);
    let thief = true;
    const steal = (async () => {
      while (thief) {
        try {
          const l = await coord.readNamespacedLease({ namespace: SYSTEM_NS, name: 'clgo-reconciler-e7' });
          await coord.replaceNamespacedLease({ namespace: SYSTEM_NS, name: 'clgo-reconciler-e7', body: { ...l, spec: { ...l.spec, holderIdentity: 'thief', renewTime: new V1MicroTime(Date.now()) } } });
        } catch {
          // 409 against x's renew: try again.
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    try {
      await waitFor('x steps down', () => !t.isLeader(), 10_000);
      const mark = await env.api.mark();
      await env.api.setPodReady(SYSTEM_NS, 'e7-tunnel-1', false);
      await new Promise((r) => setTimeout(r, 1_000));
      expect((await sliceWrites(mark)).total).toBe(0);
      expect(await addrs('shop7', 'cart-clgo-ipv4')).toBe('10.1.7.1,10.1.7.2');
    } finally {
      thief = false;
      await steal;
    }
    // The thief stops renewing: x takes over after a lease period and catches up.
    await waitFor('x leads again and syncs', async () => t.isLeader() && (await addrs('shop7', 'cart-clgo-ipv4')) === '10.1.7.2', 15_000, 100);
  });
});
