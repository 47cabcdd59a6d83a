// Service + EndpointSlice apply against a real kube-apiserver (test/fixtures/kube-apiserver.ts:
// k8s.io/kubernetes v1.34 over embedded etcd, its own process on loopback, TLS, RBAC), through
// the real @kubernetes/client-node as the reconciler's ServiceAccount of deploy/base/rbac.yaml: a
// slice with 5,000 imports applied from scratch (a Service and an EndpointSlice each), re-applied
// unchanged by a fresh target (a restart: target zero writes), with one import's port changed
// (target: one Service + its one slice), and one data-plane pod turning unready (every slice
// rewritten once, debounced). Writes are counted by the server (its audit log), not by the client.
// The server shares the machine's cores with the client, so times are for this machine only.
import type { Benchmark, BenchResult } from './harness.ts';
import { row } from './harness.ts';
import { startKubeTarget, type EndpointSyncReport, type KubeTarget } from '../../reconciler/kube/index.ts';
import { RECONCILER_USER, SYSTEM_NS, imp, slice, startKubeEnv, waitFor } from '../kube/helpers.ts';

const IMPORTS = 5_000;
const NAMESPACES = 50;

export const benchmarks: Benchmark[] = [
  {
    name: 'kube.services',
    description: `Service + EndpointSlice apply for ${IMPORTS} imports in ${NAMESPACES} namespaces against a real kube-apiserver: from scratch, restart with no change, one-import change, one tunnel pod unready`,
    async run(): Promise<BenchResult[]> {
      const namespaces = Array.from({ length: NAMESPACES }, (_, i) => `ns-${i}`);
      const env = await startKubeEnv(namespaces);
      const targets: KubeTarget[] = [];
      const syncs: EndpointSyncReport[] = [];
      const start = async (identity: string) => {
        const t = startKubeTarget({ kubeConfig: env.reconciler, peer: 'east', namespace: SYSTEM_NS, dataplaneSelector: { app: 'clgo-dataplane' }, identity, leaseDurationSeconds: 5, retryPeriodMs: 1_000, watchPods: false, onEndpointsSynced: (r) => syncs.push(r) });
        targets.push(t);
        await t.ready();
        await waitFor('leadership', () => t.isLeader(), 15_000, 50);
        return t;
      };
      const writes = async (mark: number, resource?: string) => (await env.api.writes(mark, { user: RECONCILER_USER, ...(resource ? { resource } : {}) })).total;
      try {
        for (let i = 1; i <= 3; i++) await env.api.createPod({ namespace: SYSTEM_NS, name: `tunnel-${i}`, ip: `10.1.0.${i}`, labels: { app: 'clgo-dataplane' } });
        const imports = Array.from({ length: IMPORTS }, (_, i) => imp(namespaces[i % NAMESPACES] as string, `svc-${i}`, 8000 + (i % 1000)));
        const first = await start('first');
        let mark = await env.api.mark();
        let t0 = performance.now();
        const full = await first.applySlice(slice(imports), 'rev1');
        const fullMs = performance.now() - t0;
        const fullWrites = await writes(mark, 'services');
        const fullSliceWrites = await writes(mark, 'endpointslices');
        const fullErrors = full.errors.length;
        await first.stop();

        const second = await start('second');
        mark = await env.api.mark();
        t0 = performance.now();
        await second.applySlice(slice(imports), 'rev1');
        const restartMs = performance.now() - t0;
        const restartWrites = (await env.api.requests(mark, { user: RECONCILER_USER, verbs: ['create', 'update', 'patch', 'delete'] })).filter((r) => r.resource !== 'leases').length;

        const changed = imports.map((x, i) => (i === 1234 ? imp(x.namespace, x.name, 9999) : x));
        mark = await env.api.mark();
        t0 = performance.now();
        await second.applySlice(slice(changed), 'rev2');
        const oneMs = performance.now() - t0;
        const oneWrites = await writes(mark, 'services');
        const oneSliceWrites = await writes(mark, 'endpointslices');

        // The pod watch is only the standby-free leader's here (watchPods: false = its own namespace).
        mark = await env.api.mark();
        const before = syncs.length;
        t0 = performance.now();
        await env.api.setPodReady(SYSTEM_NS, 'tunnel-2', false);
        const sync = (await waitFor('endpoint sync', () => syncs[before], 600_000, 50)) as EndpointSyncReport;
        const podMs = performance.now() - t0;
        const podWrites = await writes(mark, 'endpointslices');

        return [
          row('kube.services.5000.full.writes', fullWrites, 'requests', `== ${IMPORTS}`, fullWrites === IMPORTS && full.applied.length === IMPORTS && fullErrors === 0),
          row('kube.endpointslices.5000.full.writes', fullSliceWrites, 'requests', `== ${IMPORTS}`, fullSliceWrites === IMPORTS && full.endpointSlices.applied.length === IMPORTS),
          row('kube.services.5000.full.time', fullMs, 'ms', '', null, 'lists + 5,000 Service and 5,000 EndpointSlice server-side applies, 16 in flight, real kube-apiserver on the same cores'),
          row('kube.services.5000.full.rate', ((2 * IMPORTS) / fullMs) * 1000, 'applies/s', '', null),
          row('kube.services.5000.restart.writes', restartWrites, 'requests', '== 0', restartWrites === 0, 'Services, EndpointSlices, status ConfigMap and Events (Lease renewals excluded), counted by the server'),
          row('kube.services.5000.restart.time', restartMs, 'ms', '', null, 'two labelled lists (paged), hash compare'),
          row('kube.services.5000.one-change.writes', oneWrites, 'requests', '== 1', oneWrites === 1),
          row('kube.endpointslices.5000.one-change.writes', oneSliceWrites, 'requests', '== 1', oneSliceWrites === 1, 'the changed port is in the slice'),
          row('kube.services.5000.one-change.time', oneMs, 'ms', '', null),
          row('kube.endpointslices.5000.pod-unready.writes', podWrites, 'requests', `== ${IMPORTS}`, podWrites === IMPORTS && sync.applied.length === IMPORTS),
          row('kube.endpointslices.5000.pod-unready.time', podMs, 'ms', '', null, 'watch event → debounce (200 ms) → list + 5,000 applies'),
        ];
      } finally {
        await Promise.all(targets.map((t) => t.stop()));
        await env.stop();
      }
    },
  },
];
