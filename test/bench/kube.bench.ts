// Service + EndpointSlice apply against the Kubernetes API stand-in, through the real
// @kubernetes/client-node: a slice with 5,000 imports applied from scratch (a Service and an
// EndpointSlice each), re-applied unchanged by a fresh target (a restart: target zero writes), with
// one import's port changed (target: one Service + its one slice), and one data-plane pod turning
// unready (every slice rewritten once, debounced). Times include the stand-in's own work (same
// process), so they are an upper bound for the client side.
import type { Benchmark, BenchResult } from './harness.ts';
import { row } from './harness.ts';
import { startKubeApiStandin } from '../fixtures/kube-api-standin.ts';
import { startKubeTarget, type EndpointSyncReport, type KubeTarget } from '../../reconciler/kube/index.ts';
import { imp, slice, waitFor } from '../kube/helpers.ts';

const IMPORTS = 5_000;
const NAMESPACES = 50;

export const benchmarks: Benchmark[] = [
  {
    name: 'kube.services',
    description: `Service + EndpointSlice apply for ${IMPORTS} imports in ${NAMESPACES} namespaces, restart with no change, one-import change, one tunnel pod unready`,
    async run(): Promise<BenchResult[]> {
      const namespaces = Array.from({ length: NAMESPACES }, (_, i) => `ns-${i}`);
      const api = await startKubeApiStandin({ namespaces: ['default', 'clusterlink-system', ...namespaces] });
      for (let i = 1; i <= 3; i++) api.addPod({ namespace: 'clusterlink-system', name: `tunnel-${i}`, ip: `10.1.0.${i}`, labels: { app: 'clgo-dataplane' } });
      const targets: KubeTarget[] = [];
      const syncs: EndpointSyncReport[] = [];
      const start = async (identity: string) => {
        const t = startKubeTarget({ kubeConfig: api.kubeConfig(), peer: 'east', namespace: 'clusterlink-system', dataplaneSelector: { app: 'clgo-dataplane' }, identity, leaseDurationSeconds: 2, retryPeriodMs: 200, watchPods: false, onEndpointsSynced: (r) => syncs.push(r) });
        targets.push(t);
        await t.ready();
        await waitFor('leadership', () => t.isLeader(), 5_000);
        return t;
      };
      try {
        const imports = Array.from({ length: IMPORTS }, (_, i) => imp(namespaces[i % NAMESPACES] as string, `svc-${i}`, 8000 + (i % 1000)));
        const first = await start('first');
        api.resetCounts();
        let t0 = performance.now();
        const full = await first.applySlice(slice(imports), 'rev1');
        const fullMs = performance.now() - t0;
        const fullWrites = api.writes('services').total;
        const fullSliceWrites = api.writes('endpointslices').total;
        await first.stop();

        const second = await start('second');
        api.resetCounts();
        t0 = performance.now();
        await second.applySlice(slice(imports), 'rev1');
        const restartMs = performance.now() - t0;
        const restartWrites = api.writes('services').total + api.writes('endpointslices').total + api.writes('configmaps').total + api.writes('events').total;

        const changed = imports.map((x, i) => (i === 1234 ? { ...x, port: 9999 } : x));
        api.resetCounts();
        t0 = performance.now();
        await second.applySlice(slice(changed), 'rev2');
        const oneMs = performance.now() - t0;
        const oneWrites = api.writes('services').total;
        const oneSliceWrites = api.writes('endpointslices').total;

        api.resetCounts();
        const before = syncs.length;
        t0 = performance.now();
        api.setPodReady('clusterlink-system', 'tunnel-2', false);
        const sync = (await waitFor('endpoint sync', () => syncs[before], 60_000)) as EndpointSyncReport;
        const podMs = performance.now() - t0;
        const podWrites = api.writes('endpointslices').total;

        return [
          row('kube.services.5000.full.writes', fullWrites, 'requests', `== ${IMPORTS}`, fullWrites === IMPORTS && full.applied.length === IMPORTS),
          row('kube.endpointslices.5000.full.writes', fullSliceWrites, 'requests', `== ${IMPORTS}`, fullSliceWrites === IMPORTS && full.endpointSlices.applied.length === IMPORTS),
          row('kube.services.5000.full.time', fullMs, 'ms', '', null, 'lists + 5,000 Service and 5,000 EndpointSlice server-side applies, 16 in flight'),
          row('kube.services.5000.full.rate', ((2 * IMPORTS) / fullMs) * 1000, 'applies/s', '', null),
          row('kube.services.5000.restart.writes', restartWrites, 'requests', '== 0', restartWrites === 0, 'Services, EndpointSlices, status ConfigMap and Events'),
          row('kube.services.5000.restart.time', restartMs, 'ms', '', null, 'two labelled lists, hash compare'),
          row('kube.services.5000.one-change.writes', oneWrites, 'requests', '== 1', oneWrites === 1),
          row('kube.endpointslices.5000.one-change.writes', oneSliceWrites, 'requests', '== 1', oneSliceWrites === 1, 'the changed port is in the slice'),
          row('kube.services.5000.one-change.time', oneMs, 'ms', '', null),
          row('kube.endpointslices.5000.pod-unready.writes', podWrites, 'requests', `== ${IMPORTS}`, podWrites === IMPORTS && sync.applied.length === IMPORTS),
          row('kube.endpointslices.5000.pod-unready.time', podMs, 'ms', '', null, 'watch event → debounce (200 ms) → list + 5,000 applies'),
        ];
      } finally {
        await Promise.all(targets.map((t) => t.stop()));
        await api.close();
      }
    },
  },
];
