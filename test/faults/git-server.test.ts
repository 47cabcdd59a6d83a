// Faults of the Git server the reconcilers follow (a real `git http-backend` behind
// reconciler/demo/git-http-server.ts): down for a whole case, hanging, and serving a corrupted
// pack. What must hold: the data plane keeps serving the last good revision byte for byte, the
// failure is recorded with its stage, a reconciler restarted while the server is down serves the
// last applied revision from its cache, and the next good fetch applies the new revision.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFabricRepo, type FabricRepo } from '../../reconciler/demo/git-repo.ts';
import { startGitHttpServer, type GitHttpServer } from '../../reconciler/demo/git-http-server.ts';
import { createRuntimeMetrics } from '../../reconciler/runtime/metrics.ts';
import { createGitSource } from '../../reconciler/source/git-source.ts';
import type { FabricSource } from '../../reconciler/source/types.ts';
import { waitFor } from '../fixtures/servers.ts';
import { blockRange, echoMany, faultTable, freshFabric, liveStream, parseMetrics, PEERS, startFabric, value, type FabricHarness, type PeerName } from './harness.ts';

// This file's loopback range: 127.0.105.x (Git server on .100).
const R = blockRange(105);
const table = faultTable(import.meta.filename);
let root: string;
let server: GitHttpServer;
let repo: FabricRepo;
let fabric: FabricHarness;
const sources: Partial<Record<PeerName, FabricSource>> = {};

const applied = (p: PeerName): string | undefined => fabric.runtimes[p].status().applied?.revision;
const refreshAll = (): Promise<void[]> => Promise.all(PEERS.map((p) => sources[p]!.refresh()));
const lastGood = async (p: PeerName): Promise<number> => value(parseMetrics(await createRuntimeMetrics(fabric.runtimes[p], { processMetrics: false }).render()), 'clgo_fabric_last_good');
const fetchErrors = async (p: PeerName): Promise<number> => value(parseMetrics(await createRuntimeMetrics(fabric.runtimes[p], { processMetrics: false }).render()), 'clgo_reconcile_errors_total', { stage: 'fetch' });
const perf = { host: R.egress.east, port: 5201, localAddress: R.client.perf };
const web = { host: R.egress.east, port: 8080, localAddress: R.client.web };
/** A policy file with an incompressible comment, so the pack of its commit is several KiB (the corrupt-pack fault flips a byte every 512). */
const bulkyPolicy = (name: string): string =>
  `# ${randomBytes(6144).toString('base64')}\napiVersion: clusterlink.net/v1alpha1\nkind: AccessPolicy\nmetadata:\n  name: ${name}\n  namespace: perf\nspec:\n  action: allow\n  from: [{ workloadSelector: { matchLabels: { client.clusterlink.net/labels.app: ${name} } } }]\n  to: [{ workloadSelector: {} }]\n`;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'clgo-faults-git-'));
  const fresh = await freshFabric(R);
  repo = await createFabricRepo({ root, name: 'fabric', files: fresh.files });
  server = await startGitHttpServer({ root, host: '127.0.105.100' });
  fabric = await startFabric({
    range: R,
    fresh,
    source: (peer) =>
      (sources[peer] = createGitSource({ url: server.repoUrl('fabric.git'), ref: { branch: 'main' }, cacheDir: join(root, `cache-${peer}`), pollIntervalMs: 600_000, timeoutMs: 1500, maxBackoffMs: 600_000 })),
  });
  const head = await repo.head();
  for (const p of PEERS) expect(applied(p)).toBe(head);
}, 60_000);

afterAll(async () => {
  await fabric?.close();
  await server?.stop();
  await rm(root, { recursive: true, force: true });
  await table.flush();
});

describe('fault: Git server', () => {
  it('down for the whole case (connections reset, then hanging): traffic continues on the last good revision; a restart serves it from the cache', async () => {
    const good = await repo.head();
    const stream = await liveStream(perf);
    server.setFault('down');
    const next = await repo.commit(new Map([['peers/east/policies/bulk-a.yaml', bulkyPolicy('bulk-a')]]), 'add a policy while the server is down');
    await refreshAll();
    for (const p of PEERS) {
      const st = fabric.runtimes[p].status();
      expect(st.source.lastError?.stage).toBe('fetch');
      expect(st.applied?.revision).toBe(good);
      expect(st.ready).toBe(true);
      expect(await lastGood(p)).toBe(0);
      expect(await fetchErrors(p)).toBeGreaterThanOrEqual(1);
    }
    // Hanging server: each fetch is bounded by the source's time-out (1.5 s here).
    server.setFault('hang');
    const t0 = performance.now();
    await sources.west!.refresh();
    const hangMs = performance.now() - t0;
    expect(hangMs).toBeLessThan(5000);
    expect(fabric.runtimes.west.status().source.lastError?.stage).toBe('fetch');
    server.setFault('down');
    // Traffic on the last good revision: new tunnels byte for byte, the open one untouched.
    expect((await echoMany(4, perf)).ok).toBe(4);
    expect((await echoMany(2, web)).ok).toBe(2);
    expect(await stream.drained()).toBe(true);
    // A reconciler restarted while the server is down serves the last applied revision from its cache.
    const restart = performance.now();
    await fabric.stop('east');
    expect(stream.stats().closed || (await waitFor(() => stream.stats().closed, 2000))).toBe(true);
    await fabric.start('east');
    expect(applied('east')).toBe(good);
    expect(fabric.runtimes.east.status().source.lastError?.stage).toBe('fetch');
    expect((await echoMany(1, perf)).ok).toBe(1);
    const restartMs = performance.now() - restart;
    expect((await echoMany(3, perf)).ok).toBe(3);
    // Server back: the next fetch applies the new revision everywhere.
    server.setFault(null);
    const back = performance.now();
    await refreshAll();
    for (const p of PEERS) expect(applied(p)).toBe(next);
    const recoverMs = performance.now() - back;
    for (const p of PEERS) expect(await lastGood(p)).toBe(1);
    expect((await echoMany(2, perf)).ok).toBe(2);
    const st = stream.stats();
    table.add({
      case: 'Git server down (resets, then hangs) for the whole case',
      held: `last good revision served; ${st.verified} B of the open stream echoed exactly until east's own restart; 7 new tunnels byte-exact; fetch errors recorded (stage fetch), clgo_fabric_last_good 0; hanging fetch bounded (${Math.round(hangMs)} ms); east restarted with the server down served from its cache`,
      recoveryMs: recoverMs,
      recoveryNote: `server back → new revision on 3 peers, on the next fetch (poll or webhook); east restart with server down → traffic in ${Math.round(restartMs)} ms`,
    });
    stream.stop();
  }, 30_000);

  it('serves a corrupted pack: the revision is refused, the last good one keeps serving; a clean fetch applies it', async () => {
    const good = await repo.head();
    for (const p of PEERS) expect(applied(p)).toBe(good);
    const stream = await liveStream(web);
    const next = await repo.commit(new Map([['peers/east/policies/bulk-b.yaml', bulkyPolicy('bulk-b')]]), 'add a policy served corrupted');
    server.setFault('corrupt-pack');
    await refreshAll();
    for (const p of PEERS) {
      const st = fabric.runtimes[p].status();
      expect(st.applied?.revision).toBe(good);
      expect(['fetch', 'tree']).toContain(st.source.lastError?.stage);
      expect(await lastGood(p)).toBe(0);
    }
    expect((await echoMany(3, perf)).ok).toBe(3);
    expect(await stream.drained()).toBe(true);
    const stage = fabric.runtimes.east.status().source.lastError?.stage;
    const message = fabric.runtimes.east.status().source.lastError?.message ?? '';
    server.setFault(null);
    const back = performance.now();
    await refreshAll();
    const recovered = PEERS.filter((p) => applied(p) === next);
    const recoverMs = performance.now() - back;
    expect(recovered).toEqual([...PEERS]);
    expect((await echoMany(2, perf)).ok).toBe(2);
    expect(await stream.drained()).toBe(true);
    table.add({
      case: 'Git server serves a corrupted pack',
      held: `revision refused at stage ${stage} (${message.slice(0, 50).replace(/[^\x20-\x7e]/g, '?')}…), last good kept on 3 peers; open stream (${stream.stats().verified} B) and 3 new tunnels byte-exact; nothing corrupt cached`,
      recoveryMs: recoverMs,
      recoveryNote: 'clean fetch → revision applied on 3 peers',
    });
    stream.stop();
  }, 30_000);
});
