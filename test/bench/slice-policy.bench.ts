// The pure cores at fabric scale: load + validate + slice of every peer for 1,000 peers / 20,000
// exports / 50,000 imports / 5,000 policies; the same after one changed file; and policy decisions
// per second with 5,000 policies on one peer.
import { performance } from 'node:perf_hooks';
import { loadFabricFiles } from '../../schema/load.ts';
import type { PolicyModel } from '../../schema/model.ts';
import { compilePolicies, decide, type AccessRequest } from '../../reconciler/policy/index.ts';
import { createIncrementalLoader } from '../../schema/incremental.ts';
import { createFabricIndexer, sliceAll, sliceFromIndex } from '../../reconciler/slice/slice.ts';
import { generateFabricFiles, peerName } from '../fixtures/generate-fabric.ts';
import { percentile, row, type Benchmark, type BenchResult } from './harness.ts';

const SIZE = { peers: 1000, exports: 20_000, imports: 50_000, policies: 5000 };

function fullPass(files: Map<string, string>): number {
  const t0 = performance.now();
  const r = loadFabricFiles(files);
  if (!r.ok) throw new Error(`generated fabric invalid: ${r.errors[0]?.file}:${r.errors[0]?.line} ${r.errors[0]?.message}`);
  const slices = sliceAll(r.fabric);
  if (slices.size !== SIZE.peers) throw new Error('missing slices');
  return performance.now() - t0;
}

async function sliceBench(): Promise<BenchResult[]> {
  const files = generateFabricFiles(SIZE);
  fullPass(files); // warm-up (JIT, caches of certificate fingerprints)
  const full = Math.min(fullPass(files), fullPass(files));

  // One reconciler's view after one changed file: incremental reload (only the changed file is
  // re-parsed, only its peer rebuilt and re-checked), incremental index update, then this peer's slice.
  const loader = createIncrementalLoader();
  const indexer = createFabricIndexer();
  const first = loader.load(files);
  if (!first.ok) throw new Error('incremental load failed');
  indexer.update(first.fabric);
  const path = [...files.keys()].find((p) => p.includes('/policies/'))!;
  const samples: number[] = [];
  for (let i = 0; i < 30; i++) {
    const changed = new Map(files);
    changed.set(path, (files.get(path) as string).replace('action: allow', i % 2 ? 'action: deny' : 'action: allow').replace('action: deny', i % 2 ? 'action: deny' : 'action: allow'));
    const t0 = performance.now();
    const r = loader.load(changed);
    if (!r.ok) throw new Error('reload failed');
    sliceFromIndex(indexer.update(r.fabric), peerName(7));
    samples.push(performance.now() - t0);
  }
  const reslice = percentile(samples, 50);
  return [
    row('slice.full-1000-peers', full, 'ms', '< 2000 ms', full < 2000, `load+validate+slice of ${SIZE.peers} peers, ${SIZE.exports} exports, ${SIZE.imports} imports, ${SIZE.policies} policies`),
    row('slice.one-file-change.p50', reslice, 'ms', '< 50 ms', reslice < 50, 'incremental reload + this peer\'s slice'),
  ];
}

function policyBench(): BenchResult[] {
  // 5,000 policies on one peer: the generated ones re-homed onto peer p0000, half of them user policies in "web".
  const files = generateFabricFiles({ peers: 200, exports: 2000, imports: 0, policies: 5000 });
  const r = loadFabricFiles(files);
  if (!r.ok) throw new Error('generated fabric invalid');
  const policies: PolicyModel[] = r.fabric.peers.flatMap((p) => p.policies).map((p) => ({ ...p, peer: 'p0000', namespace: p.namespace === null ? null : 'web' }));
  const compiled = compilePolicies(policies);
  const requests: AccessRequest[] = Array.from({ length: 1024 }, (_, i) => ({
    direction: i % 2 ? 'ingress' : 'egress',
    namespace: 'web',
    self: 'p0000',
    selfLabels: { tier: 'core' },
    client: { namespace: 'web', serviceAccount: 'sa', labels: { app: `a${i % 17}` } },
    peer: { name: peerName((i * 7) % 200), labels: { region: `r${i % 7}` } },
    export: { name: `svc-${String((i * 13) % 2000).padStart(4, '0')}`, namespace: 'web', labels: { app: 'x' } },
  }));
  let allowed = 0;
  const run = (n: number): number => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) if (decide(compiled, requests[i & 1023] as AccessRequest).allowed) allowed++;
    return performance.now() - t0;
  };
  run(50_000);
  const n = 300_000;
  const ms = run(n);
  const perSec = (n / ms) * 1000;
  return [row('policy.decisions-per-sec-5000-policies', perSec, '/s', '> 200000 /s', perSec > 200_000, `one core; ${((allowed / (n + 50_000)) * 100).toFixed(0)}% allowed`)];
}

export const benchmarks: Benchmark[] = [
  { name: 'slice', description: 'load + validate + slice at 1,000 peers, and after one changed file', run: sliceBench },
  { name: 'policy', description: 'policy decisions per second with 5,000 policies', run: async () => policyBench() },
];
