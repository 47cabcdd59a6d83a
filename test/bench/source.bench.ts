// Commit-to-new-revision latency of the Git source on loopback, for a 2,000-file fabric repository
// served by git http-backend: from `git push` returning to the source handing the validated
// revision on, via a signed GitHub push webhook and via polling (1 s interval).
import { createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createFabricRepo } from '../../reconciler/demo/git-repo.ts';
import { startGitHttpServer } from '../../reconciler/demo/git-http-server.ts';
import { startAdminServer } from '../../reconciler/runtime/admin-server.ts';
import { createGitSource } from '../../reconciler/source/git-source.ts';
import type { FabricSource } from '../../reconciler/source/types.ts';
import { createWebhookHandler } from '../../reconciler/source/webhook.ts';
import { generateFabricFiles } from '../fixtures/generate-fabric.ts';
import { percentile, row, type Benchmark, type BenchResult } from './harness.ts';

const SECRET = 'bench-webhook-secret-0123456789';
const ROUNDS = 10;

async function measure(mode: 'webhook' | 'poll'): Promise<{ samples: number[]; files: number }> {
  const root = await mkdtemp(join(tmpdir(), `clgo-bench-source-${mode}-`));
  const files = generateFabricFiles({ peers: 60, exports: 400, imports: 1000, policies: 480 });
  const repo = await createFabricRepo({ root, name: 'fabric', files });
  const server = await startGitHttpServer({ root, host: '127.0.0.1' });
  let source: FabricSource | null = null;
  const admin = await startAdminServer({ host: '127.0.0.1', port: 0, status: () => ({}), ready: () => true });
  try {
    source = createGitSource({ url: server.repoUrl('fabric'), ref: { branch: 'main' }, cacheDir: join(root, 'cache'), pollIntervalMs: mode === 'poll' ? 1000 : 3_600_000 });
    let arrived: ((rev: string) => void) | null = null;
    source.onRevision((rev) => arrived?.(rev.revision));
    await source.start();
    const src = source;
    admin.mount('/webhook', createWebhookHandler({ secret: SECRET, onPush: () => void src.refresh() }));
    const policy = [...files.keys()].find((p) => p.includes('/policies/'))!;
    const samples: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const got = new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${mode}: no revision within 10 s`)), 10_000);
        arrived = (rev) => {
          clearTimeout(t);
          resolve(rev);
        };
      });
      const sha = await repo.commit(new Map([[policy, `${files.get(policy)!}# round ${i}\n`]]), `round ${i}`);
      const pushed = performance.now();
      if (mode === 'webhook') {
        const body = JSON.stringify({ ref: 'refs/heads/main', after: sha });
        const sig = createHmac('sha256', SECRET).update(body).digest('hex');
        await fetch(`${admin.url}/webhook`, { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${sig}` } });
      }
      const rev = await got;
      if (rev !== sha) throw new Error(`${mode}: got ${rev}, pushed ${sha}`);
      samples.push(performance.now() - pushed);
    }
    return { samples, files: files.size };
  } finally {
    await source?.stop();
    await admin.close();
    await server.stop();
    await rm(root, { recursive: true, force: true });
  }
}

async function run(): Promise<BenchResult[]> {
  const webhook = await measure('webhook');
  const poll = await measure('poll');
  const w50 = percentile(webhook.samples, 50);
  return [
    row('source.webhook.p50', w50, 'ms', '< 300 ms', w50 < 300, `push → validated revision, ${webhook.files}-file repo, ${ROUNDS} commits`),
    row('source.webhook.p99', percentile(webhook.samples, 99), 'ms', '', null),
    row('source.poll-1s.p50', percentile(poll.samples, 50), 'ms', '', null, 'poll every 1 s: about half an interval plus the fetch'),
  ];
}

export const benchmarks: Benchmark[] = [{ name: 'source', description: 'commit → new revision via webhook and via poll (git http-backend, 2,000-file repo)', run }];
