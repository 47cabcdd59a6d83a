// A compressed blob against a real reconciler process: a commit adding a 200 MB file of zeros
// (a few hundred KB on the wire) to a fabric repository served by git http-backend. What must
// hold, measured on the `clgo run --local` process itself: peak RSS (VmHWM, reset before the
// commit) stays within BASELINE + 64 MiB instead of inflating the file (1.1–1.4 GB before the
// bound); the longest event-loop stall (prom-client's event-loop lag max, and the slowest
// /healthz answer polled every 25 ms) stays under MAX_STALL_MS instead of ~19 s; the commit is refused at
// the tree stage with the file named and the last good revision keeps serving; memory is back
// after the refusal and after the revert, and the revert applies — also after a restart with the
// same cache in between (the refusal still names the file and its size).
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFabricRepo, type FabricRepo } from '../../reconciler/demo/git-repo.ts';
import { startGitHttpServer, type GitHttpServer } from '../../reconciler/demo/git-http-server.ts';
import { waitFor } from '../fixtures/servers.ts';
import { blockRange, faultTable, freshFabric, parseMetrics, value } from './harness.ts';

// This file's loopback range: 127.0.189.x (Git server .100, the reconciler's admin endpoint .50).
const R = blockRange(189);
const MiB = 1024 * 1024;
const BOMB_BYTES = 200 * MiB;
/** Bounds this test states (figures in docs/operations.md). */
const PEAK_OVER_BASELINE = 64 * MiB;
/** Generous for a loaded 2-core CI machine (the idle figures are printed beside it); before the bound: ~19 s. */
const MAX_STALL_MS = 2500;
const table = faultTable(import.meta.filename);
let root: string;
let server: GitHttpServer;
let repo: FabricRepo;
let child: ChildProcess;
let logs = '';
let adminUrl = '';

/** VmRSS / VmHWM of the reconciler process, in bytes (Linux /proc). */
async function memory(): Promise<{ rss: number; peak: number }> {
  const text = await readFile(`/proc/${child.pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

interface PeerStatus {
  applied: { revision: string } | null;
  source: { lastError?: { revision: string | null; stage: string; message: string; file?: string } };
}
const status = async (): Promise<PeerStatus> => ((await (await fetch(`${adminUrl}/status.json`)).json()) as { peers: PeerStatus[] }).peers[0]!;
const lagMaxMs = async (): Promise<number> => value(parseMetrics(await (await fetch(`${adminUrl}/metrics`)).text()), 'clgo_nodejs_eventloop_lag_max_seconds') * 1000;

/** Polls /healthz every 25 ms until stopped; the slowest answer (a failure counts as the time until it failed). */
function healthPoller(): { stop(): Promise<{ slowestMs: number; polls: number; failures: number }> } {
  let running = true;
  let slowestMs = 0;
  let polls = 0;
  let failures = 0;
  const loop = (async () => {
    while (running) {
      const t0 = performance.now();
      try {
        const res = await fetch(`${adminUrl}/healthz`, { signal: AbortSignal.timeout(30_000) });
        if (res.status !== 200) failures++;
        await res.text();
      } catch {
        failures++;
      }
      slowestMs = Math.max(slowestMs, performance.now() - t0);
      polls++;
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { slowestMs, polls, failures };
    },
  };
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'clgo-faults-bomb-'));
  const fresh = await freshFabric(R);
  repo = await createFabricRepo({ root, name: 'fabric', files: fresh.files });
  server = await startGitHttpServer({ root, host: '127.0.189.100' });
  await writeFile(join(root, 'west.key'), fresh.peers.west!.privateKeyPem, { mode: 0o600 });
  await startReconciler();
}, 60_000);

/** `clgo run --local` for west, following the repository with a persistent cache. */
async function startReconciler(): Promise<void> {
  logs = '';
  child = spawn(
    process.execPath,
    ['bin/clgo.mjs', 'run', '--local', '--peer', 'west', '--git', server.repoUrl('fabric.git'), '--cache', join(root, 'cache'), '--poll', '300ms', '--key', join(root, 'west.key'), '--egress-address', R.egress.west, '--admin', '127.0.189.50:0', '--log-level', 'warn'],
    { cwd: join(import.meta.dirname, '../..') },
  );
  child.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
  child.stdout!.on('data', (d: Buffer) => (logs += d.toString()));
  await waitFor(() => /status (http:\/\/127\.0\.189\.50:\d+)\//.test(logs) || child.exitCode !== null, 30_000);
  adminUrl = /status (http:\/\/127\.0\.189\.50:\d+)\//.exec(logs)?.[1] ?? '';
}

async function stopReconciler(): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
}

afterAll(async () => {
  if (child) await stopReconciler();
  await server?.stop();
  await rm(root, { recursive: true, force: true });
  await table.flush();
});

describe('fault: a compressed 200 MB blob in a commit', () => {
  it('is refused from its pack header: bounded peak RSS and event-loop stall, last good revision kept, memory back, revert applied', async () => {
    expect(adminUrl, logs).not.toBe('');
    const good = await repo.head();
    expect(await waitFor(async () => (await status()).applied?.revision === good, 30_000)).toBe(true);
    // Settle, then the baseline; VmHWM is reset (clear_refs 5) so it measures this case only.
    await new Promise((r) => setTimeout(r, 1500));
    const baseline = (await memory()).rss;
    // The same measurements over 3 s with nothing happening: what this machine's load alone causes.
    await lagMaxMs(); // resets prom-client's lag histogram
    const idlePoller = healthPoller();
    await new Promise((r) => setTimeout(r, 3000));
    const idle = { ...(await idlePoller.stop()), lag: await lagMaxMs() };
    await writeFile(`/proc/${child.pid}/clear_refs`, '5');

    const poller = healthPoller();
    await mkdir(join(repo.workDir, 'peers/west'), { recursive: true });
    await pipeline(
      Readable.from((function* () {
        for (let i = 0; i < BOMB_BYTES / MiB; i++) yield Buffer.alloc(MiB);
      })()),
      createWriteStream(join(repo.workDir, 'peers/west/zeros.bin')),
    );
    const bomb = await repo.commit(new Map(), 'add a 200 MB file of zeros');
    const t0 = performance.now();
    const refused = await waitFor(async () => (await status()).source.lastError?.revision === bomb, 60_000);
    const refusedMs = performance.now() - t0;
    // A few more polls of the source while the bomb is still the head.
    await new Promise((r) => setTimeout(r, 1500));
    const health = await poller.stop();
    const lag = await lagMaxMs();
    const afterRefusal = await memory();
    const st = await status();
    expect(refused).toBe(true);
    expect(st.source.lastError).toMatchObject({ stage: 'tree', file: 'peers/west/zeros.bin' });
    expect(st.source.lastError!.message).toMatch(/209715200 bytes, over the \d+-byte limit/);
    expect(st.applied?.revision).toBe(good);
    expect((await fetch(`${adminUrl}/readyz`)).status).toBe(200);

    // Restarted with the same cache: the server does not send the object again, and the refusal still names its size.
    await stopReconciler();
    await startReconciler();
    expect(await waitFor(async () => (await status()).source.lastError?.revision === bomb, 30_000)).toBe(true);
    expect((await status()).source.lastError).toMatchObject({ stage: 'tree', file: 'peers/west/zeros.bin', message: expect.stringMatching(/209715200 bytes/) });
    expect((await status()).applied?.revision).toBe(good);

    // The revert: fetched (its pack does not carry the big object again) and applied.
    await unlink(join(repo.workDir, 'peers/west/zeros.bin'));
    const revert = await repo.commit(new Map(), 'revert: remove the 200 MB file');
    expect(await waitFor(async () => (await status()).applied?.revision === revert, 30_000)).toBe(true);
    await new Promise((r) => setTimeout(r, 1000));
    // A new process since the restart: its RSS against the first one's baseline.
    const afterRevert = await memory();

    const mb = (n: number): string => `${Math.round(n / MiB)} MiB`;
    const figures = `baseline RSS ${mb(baseline)}, peak ${mb(afterRefusal.peak)} (+${mb(afterRefusal.peak - baseline)}), after refusal ${mb(afterRefusal.rss)}, after revert ${mb(afterRevert.rss)}; event-loop lag max ${Math.round(lag)} ms, slowest /healthz ${Math.round(health.slowestMs)} ms over ${health.polls} polls (idle, same machine: ${Math.round(idle.lag)} / ${Math.round(idle.slowestMs)} ms)`;
    console.log(`git bomb: ${figures}`);
    expect(afterRefusal.peak - baseline, figures).toBeLessThan(PEAK_OVER_BASELINE);
    expect(health.failures, figures).toBe(0);
    expect(health.slowestMs, figures).toBeLessThan(MAX_STALL_MS);
    expect(lag, figures).toBeLessThan(MAX_STALL_MS);
    expect(afterRefusal.rss - baseline, figures).toBeLessThan(PEAK_OVER_BASELINE);
    expect(afterRevert.rss - baseline, figures).toBeLessThan(PEAK_OVER_BASELINE);
    table.add({ case: 'commit adding a 200 MB file of zeros (compressed blob), reconciler process', held: `refused at stage tree (peers/west/zeros.bin, size from the pack header, never inflated); last good revision kept, ready; ${figures}; revert applied`, recoveryMs: refusedMs, recoveryNote: 'pushed → refusal recorded (the server compresses 200 MB first)' });
  }, 180_000);
});
