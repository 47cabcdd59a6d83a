// A commit touching 1,000 imports → every connected Envoy has ACKed it. One control plane (the
// reconciler's startControlPlane, following a fabric repository served by git http-backend)
// serves peer east; several real Envoy processes connect to it as east's tunnel pods (replicas of
// one Deployment: the same snapshot, the same 1,000 import listeners, bound with SO_REUSEPORT as
// Envoy does by default). Each round commits a change that moves all 1,000 imports of east from
// one exporter to the other (west ↔ edge), which changes every import's endpoints (EDS; the
// listeners and clusters stay identical: docs/xds.md), then asks the source to fetch (as the push webhook does). The clock runs from `git push`
// returning to the last Envoy's ACK of every changed type; the part from the revision being
// accepted (fetched, signature/fast-forward checked, validated) to that ACK is reported apart.
// Addresses: 127.0.174.* (control plane .1, egress listeners .10, gateways .2x, Envoy admins .10x).
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parse } from 'yaml';
import { createFabricRepo } from '../../reconciler/demo/git-repo.ts';
import { freshExampleFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { startGitHttpServer } from '../../reconciler/demo/git-http-server.ts';
import { startControlPlane, type ControlPlane } from '../../reconciler/runtime/control-plane.ts';
import { createGitSource } from '../../reconciler/source/git-source.ts';
import { startEnvoy, type EnvoyProcess } from '../fixtures/envoy.ts';
import { writePeerSecret } from '../fixtures/peer-secret.ts';
import { PEER_SECRET_MOUNT } from './envoy-pair.ts';
import { percentile, row, type Benchmark, type BenchResult } from './harness.ts';
import { cpuSeconds } from './tunnel-refs.ts';

const ENVOYS = 4;
const IMPORTS = 1000;
const ROUNDS = 6;
const FIRST_PORT = 20_000;
const CP = '127.0.174.1';
const EGRESS = '127.0.174.10';
/** One round may take this long before the benchmark gives up. */
const ROUND_TIMEOUT_MS = 60_000;

const rewrite = (t: string): string => t.replace(/127\.0\.10\.(\d+)/g, (_, n: string) => `127.0.174.${20 + Number(n)}`).replace(/127\.0\.20\.(\d+)/g, (_, n: string) => `127.0.174.${40 + Number(n)}`);

function importYaml(i: number, exporter: 'west' | 'edge'): string {
  const name = `bulk-${String(i).padStart(4, '0')}`;
  return `apiVersion: clusterlink.net/v1alpha1\nkind: Import\nmetadata:\n  name: ${name}\n  namespace: perf\nspec:\n  port: ${FIRST_PORT + i}\n  sources:\n    - peer: ${exporter}\n      exportName: iperf3\n      exportNamespace: perf\n`;
}
const importPath = (i: number): string => `peers/east/imports/bulk-${String(i).padStart(4, '0')}.yaml`;

interface Synced {
  /** Per Envoy node, the versions it has ACKed of every type (type URL = version, joined). */
  versions: Map<string, string>;
}

/** Every expected node is connected and has ACKed what it was last sent, of every type; null otherwise. */
function synced(cp: ControlPlane, nodes: string[]): Synced | null {
  const byNode = new Map(cp.status().xds.nodes.map((n) => [n.node, n]));
  const versions = new Map<string, string>();
  for (const node of nodes) {
    const n = byNode.get(node);
    if (!n || n.streams === 0) return null;
    const types = Object.entries(n.types);
    if (types.length === 0 || types.some(([, t]) => t.sentVersion !== null && t.ackedVersion !== t.sentVersion)) return null;
    if (!types.some(([type]) => type.endsWith('.Listener'))) return null;
    versions.set(node, types.map(([type, t]) => `${type}=${t.ackedVersion}`).sort().join(' '));
  }
  return { versions };
}

/** One counter or gauge of an Envoy's admin /stats. */
async function envoyStat(e: EnvoyProcess, name: string): Promise<number> {
  const text = await e.admin(`/stats?filter=${encodeURIComponent(`^${name.replaceAll('.', '\\.')}$`)}`);
  const m = new RegExp(`^${name.replaceAll('.', '\\.')}: (\\d+)$`, 'm').exec(text);
  if (!m) throw new Error(`Envoy has no stat ${name}`);
  return Number(m[1]);
}

/** The ClusterLoadAssignment version each node has ACKed (what a move of imports changes). */
function endpointAcks(cp: ControlPlane): Map<string, string | null> {
  return new Map(cp.status().xds.nodes.map((n) => [n.node, Object.entries(n.types).find(([type]) => type.endsWith('.ClusterLoadAssignment'))?.[1].ackedVersion ?? null]));
}

/** The gateway addresses one Envoy's cluster currently has (admin /clusters: `<cluster>::<host:port>::...` lines). */
async function clusterHosts(e: EnvoyProcess, cluster: string): Promise<string[]> {
  const text = await e.admin('/clusters');
  const hosts = new Set<string>();
  for (const line of text.split('\n')) {
    const host = line.startsWith(`${cluster}::`) ? line.slice(cluster.length + 2).split('::')[0]! : '';
    if (/^[\d.]+:\d+$/.test(host)) hosts.add(host);
  }
  return [...hosts].sort();
}

/** Polls (every 2 ms, bounded) until check() returns a value. */
async function until<T>(what: string, check: () => T | null, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== null) return v;
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function run(): Promise<BenchResult[]> {
  const root = await mkdtemp(join(tmpdir(), 'clgo-bench-xds-envoy-'));
  let cp: ControlPlane | null = null;
  let server: Awaited<ReturnType<typeof startGitHttpServer>> | null = null;
  const envoys: EnvoyProcess[] = [];
  const nodes = Array.from({ length: ENVOYS }, (_, i) => `east/pod-${i}`);
  try {
    const fresh = await freshExampleFabric({ rewrite });
    const files = new Map<string, Uint8Array | string>(fresh.files);
    for (let i = 0; i < IMPORTS; i++) files.set(importPath(i), importYaml(i, 'west'));
    const repo = await createFabricRepo({ root, name: 'fabric', files });
    server = await startGitHttpServer({ root, host: '127.0.0.1' });
    const source = createGitSource({ url: server.repoUrl('fabric'), ref: { branch: 'main' }, cacheDir: join(root, 'cache'), pollIntervalMs: 3_600_000 });
    // Registered before the control plane's own listener, so it sees the revision before it is applied.
    let accepted: ((revision: string) => void) | null = null;
    source.onRevision((rev) => accepted?.(rev.revision));
    const east = fresh.peers.east!;
    // The peer Secret as the tunnel pods mount it; every Envoy reads (and authenticates with) these files.
    const secret = await writePeerSecret(join(root, 'east-secret'), east, fresh.ca.certificatePem);
    cp = await startControlPlane({
      peer: 'east',
      source,
      identity: { certificatePem: east.certificatePem, privateKeyPem: east.privateKeyPem },
      identityFiles: secret,
      xds: { host: CP, port: 18000 },
      authz: { host: CP, port: 18001 },
      egressAddress: EGRESS,
      clientAttributes: () => null,
    });
    const control = cp;
    if (!control.status().applied) throw new Error(`the control plane did not apply the first revision: ${JSON.stringify(control.status().lastApplyError ?? control.status().source.lastError)}`);

    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: ENVOYS }, async (_, i) => {
        const host = `127.0.174.${101 + i}`;
        envoys.push(await startEnvoy({ peer: 'east', pod: `pod-${i}`, addresses: { xds: { host: CP, port: 18000 }, admin: { host, port: 9901 }, health: { host, port: 9902 } }, mountDirs: { [PEER_SECRET_MOUNT]: secret.dir }, extraArgs: ['--concurrency', '1'], readyTimeoutMs: 120_000 }));
      }),
    );
    let state = await until('initial configuration ACKed by every Envoy', () => synced(control, nodes), ROUND_TIMEOUT_MS);
    const startupS = (performance.now() - t0) / 1000;
    const active = await envoyStat(envoys[0]!, 'listener_manager.total_listeners_active');
    if (active < IMPORTS) throw new Error(`one Envoy has ${active} active listeners, expected at least ${IMPORTS}`);

    const commitToAck: number[] = [];
    const revisionToAck: number[] = [];
    const revisionToApplied: number[] = [];
    const revisionToFirstAck: number[] = [];
    /** CPU each Envoy spent per round (ms), all Envoys' samples together. */
    const envoyCpuMs: number[] = [];
    const modified: number[] = [];
    const gateway = (peer: 'west' | 'edge'): string => {
      const spec = (parse(String(files.get(`peers/${peer}/peer.yaml`))) as { spec: { gateways: Array<{ host: string; port: number }> } }).spec;
      return `${spec.gateways[0]!.host}:${spec.gateways[0]!.port}`;
    };
    for (let round = 1; round <= ROUNDS; round++) {
      const exporter = round % 2 === 1 ? 'edge' : 'west';
      const changes = new Map<string, string>();
      for (let i = 0; i < IMPORTS; i++) changes.set(importPath(i), importYaml(i, exporter));
      const cpuBefore = envoys.map((e) => cpuSeconds(e.pid));
      const modifiedBefore = await Promise.all(envoys.map((e) => envoyStat(e, 'listener_manager.listener_modified')));
      const before = state;
      const endpointAcksBefore = endpointAcks(control);
      let revisionAt = 0;
      const arrived = new Promise<string>((resolve) => {
        accepted = (rev) => {
          revisionAt = performance.now();
          resolve(rev);
        };
      });
      let appliedAt = 0;
      const applied = control.nextApply().then(() => (appliedAt = performance.now()));
      const sha = await repo.commit(changes, `move ${IMPORTS} imports to ${exporter}`);
      const pushed = performance.now();
      void source.refresh();
      const rev = await Promise.race([arrived, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`round ${round}: no revision within ${ROUND_TIMEOUT_MS} ms: ${JSON.stringify(source.status().lastError)}`)), ROUND_TIMEOUT_MS))]);
      if (rev !== sha) throw new Error(`round ${round}: source accepted ${rev}, pushed ${sha}`);
      let firstAt = 0;
      state = await until(
        `round ${round}: every Envoy ACKs`,
        () => {
          const eds = endpointAcks(control);
          const was = endpointAcksBefore;
          if (firstAt === 0 && nodes.some((n) => eds.get(n) != null && eds.get(n) !== was.get(n))) firstAt = performance.now();
          const s = synced(control, nodes);
          return s && nodes.every((n) => s.versions.get(n) !== before.versions.get(n) && eds.get(n) !== was.get(n)) ? s : null;
        },
        ROUND_TIMEOUT_MS,
      );
      const done = performance.now();
      await applied;
      commitToAck.push(done - pushed);
      revisionToAck.push(done - revisionAt);
      revisionToApplied.push(appliedAt - revisionAt);
      revisionToFirstAck.push(firstAt - revisionAt);
      const err = control.status().lastApplyError;
      if (err && err.revision === sha) throw new Error(`round ${round}: the control plane refused the revision: ${err.message}`);
      // Envoy's own view (not a no-op round): the first and last import's cluster now hold the new
      // exporter's gateway only, and (the point of the resource shape) no listener was modified,
      // so no open tunnel was drained.
      const want = [gateway(exporter)];
      for (const e of envoys) {
        for (const i of [0, IMPORTS - 1]) {
          const cluster = `clusterlink/import/perf/bulk-${String(i).padStart(4, '0')}`;
          const hosts = await clusterHosts(e, cluster);
          if (hosts.join() !== want.join()) throw new Error(`round ${round}: Envoy ${e.pid} ${cluster} has gateways ${JSON.stringify(hosts)}, expected ${JSON.stringify(want)}`);
        }
      }
      const modifiedAfter = await Promise.all(envoys.map((e) => envoyStat(e, 'listener_manager.listener_modified')));
      const most = Math.max(...modifiedAfter.map((m, i) => m - modifiedBefore[i]!));
      modified.push(most);
      // Listener updates go on after the ACK (warming, draining the old filter chains): give them a moment.
      await new Promise((r) => setTimeout(r, 500));
      envoyCpuMs.push(...envoys.map((e, i) => (cpuSeconds(e.pid) - cpuBefore[i]!) * 1000));
      accepted = null;
    }
    const nacks = control.status().xds.nodes.reduce((n, node) => n + Object.values(node.types).reduce((m, t) => m + t.nacks, 0), 0);
    if (nacks > 0) throw new Error(`Envoy NACKed ${nacks} configurations: ${JSON.stringify(control.status().xds.nodes.flatMap((n) => Object.values(n.types).map((t) => t.nack)).filter(Boolean)).slice(0, 1000)}`);
    // Envoy's own account of the time it spent applying each update (all rounds and the first config).
    const applyP50 = async (name: string): Promise<number> => {
      const text = await envoys[0]!.admin(`/stats?usedonly&filter=${encodeURIComponent(`^${name.replaceAll('.', '\\.')}$`)}`);
      return Number(/P50\([^,]+,([\d.]+)\)/.exec(text)?.[1] ?? Number.NaN);
    };
    const [cdsMs, ldsMs] = [await applyP50('cluster_manager.cds.update_duration'), await applyP50('listener_manager.lds.update_duration')];
    const p50 = percentile(commitToAck, 50);
    const r50 = percentile(revisionToAck, 50);
    const note = `${ENVOYS} Envoy processes (--concurrency 1) of peer east on one control plane; each commit moves ${IMPORTS} imports between exporters (every Envoy took in the new endpoints; listeners modified per round, most of any Envoy: ${Math.max(...modified)}); ${ROUNDS} rounds; start-up to first ACK ${startupS.toFixed(1)} s`;
    return [
      row('xds.envoy.commit-to-all-acked.p50', p50, 'ms', '< 200 ms', p50 < 200, `git push returned → source fetch (as on a webhook) → validate → slice → xDS → every Envoy ACKed. ${note}`),
      row('xds.envoy.commit-to-all-acked.p99', percentile(commitToAck, 99), 'ms', '', null),
      row('xds.envoy.revision-to-all-acked.p50', r50, 'ms', '', null, 'accepted revision → slice → resources → pushed → every Envoy ACKed'),
      row('xds.envoy.revision-to-all-acked.p99', percentile(revisionToAck, 99), 'ms', '', null),
      row('xds.envoy.revision-to-pushed.p50', percentile(revisionToApplied, 50), 'ms', '', null, 'accepted revision → slice → resources → written to every ADS stream (the reconciler\'s part)'),
      row('xds.envoy.revision-to-first-envoy-acked.p50', percentile(revisionToFirstAck, 50), 'ms', '', null, `the first of the ${ENVOYS} Envoys to ACK the new listeners`),
      row('xds.envoy.cpu-per-envoy-per-commit.p50', percentile(envoyCpuMs, 50), 'ms', '', null, `CPU one Envoy spends to take in one such commit (${IMPORTS} import endpoint assignments), user + system: on ${availableParallelism()} cores, ${ENVOYS} Envoys need at least ${ENVOYS} × this / cores of wall time`),
      row('xds.envoy.cds-apply.p50', cdsMs, 'ms', '', null, `Envoy's cluster_manager.cds.update_duration (one Envoy, all its CDS updates, the first config's included): a round changes only the ext_authz cluster (its authz-inputs hash)`),
      row('xds.envoy.lds-apply.p50', ldsMs, 'ms', '', null, `Envoy's listener_manager.lds.update_duration (one Envoy, all its LDS updates): the first config (a round changes no listener)`),
      row('xds.envoy.fetch-and-validate.p50', percentile(commitToAck.map((c, i) => c - revisionToAck[i]!), 50), 'ms', '', null, 'git push returned → revision accepted (fetch + checks + validation of the fabric)'),
    ];
  } finally {
    await Promise.all(envoys.map((e) => e.stop()));
    await cp?.close().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  }
}

export const benchmarks: Benchmark[] = [
  {
    name: 'xds-envoy',
    description: `a commit touching ${IMPORTS} imports → every one of ${ENVOYS} real Envoy processes ACKs (git http-backend → reconciler control plane → ADS)`,
    run,
  },
];
