// Webhook replays and bursts against a real Git source (git http-backend): a delivery replayed 50
// times costs one fetch, 50 distinct pushes in a burst cost at most two (one running, one pending),
// and GitHub's form-encoded payload (`payload=<json>`) is accepted like JSON.
import { createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFabricRepo, type FabricRepo } from '../../reconciler/demo/git-repo.ts';
import { startGitHttpServer, type GitHttpServer } from '../../reconciler/demo/git-http-server.ts';
import { EXAMPLE_DIR } from '../../reconciler/demo/fresh-fabric.ts';
import { startAdminServer, type AdminServer } from '../../reconciler/runtime/admin-server.ts';
import { createGitSource } from '../../reconciler/source/git-source.ts';
import type { FabricSource } from '../../reconciler/source/types.ts';
import { createWebhookHandler } from '../../reconciler/source/webhook.ts';
import { readFabricDir } from '../../schema/read-dir.ts';
import { waitFor } from '../fixtures/servers.ts';
import { faultTable } from './harness.ts';

// This file's loopback addresses: 127.0.186.x (Git server .100, admin server .1).
const SECRET = 'a-webhook-secret-of-enough-length';
const table = faultTable(import.meta.filename);
let root: string;
let server: GitHttpServer;
let repo: FabricRepo;
let source: FabricSource;
let admin: AdminServer;
let pushes = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'clgo-hook-replay-'));
  server = await startGitHttpServer({ root, host: '127.0.186.100' });
  repo = await createFabricRepo({ root, name: 'fabric', files: await readFabricDir(EXAMPLE_DIR) });
  source = createGitSource({ url: server.repoUrl('fabric.git'), ref: { branch: 'main' }, cacheDir: join(root, 'cache'), pollIntervalMs: 600_000 });
  await source.start();
  admin = await startAdminServer({ host: '127.0.186.1', status: () => ({}), ready: () => true });
  admin.mount(
    '/webhook',
    createWebhookHandler({
      secret: SECRET,
      ref: 'refs/heads/main',
      onPush: () => {
        pushes++;
        void source.refresh();
      },
    }),
  );
});

afterAll(async () => {
  await admin?.close();
  await source?.stop();
  await server?.stop();
  await rm(root, { recursive: true, force: true });
  await table.flush();
});

const sign = (body: string): string => `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
const github = (body: string, delivery: string, contentType = 'application/json'): Promise<Response> =>
  fetch(`${admin.url}/webhook`, { method: 'POST', body, headers: { 'content-type': contentType, 'x-github-event': 'push', 'x-github-delivery': delivery, 'x-hub-signature-256': sign(body) } });
const commit = (n: number): Promise<string> =>
  repo.commit(new Map([[`peers/east/policies/replay-${n}.yaml`, `apiVersion: clusterlink.net/v1alpha1\nkind: AccessPolicy\nmetadata:\n  name: replay-${n}\n  namespace: perf\nspec:\n  action: deny\n  from: [{ workloadSelector: { matchLabels: { client.clusterlink.net/labels.app: r${n} } } }]\n  to: [{ workloadSelector: {} }]\n`]]), `replay ${n}`);
/** Waits until the Git server has been quiet for 300 ms (bounded), so counts are final. */
async function settled(): Promise<void> {
  let last = -1;
  for (let i = 0; i < 100 && server.requests() !== last; i++) {
    last = server.requests();
    await new Promise((r) => setTimeout(r, 300));
  }
}

describe('fault: webhook replays', () => {
  it('one delivery replayed 50 times: answered at once, one fetch', async () => {
    const sha = await commit(1);
    const body = JSON.stringify({ ref: 'refs/heads/main', after: sha });
    const before = server.requests();
    const t0 = performance.now();
    const answers = await Promise.all(Array.from({ length: 50 }, () => github(body, 'delivery-1').then((r) => r.status)));
    const answeredMs = performance.now() - t0;
    expect(answers.filter((s) => s === 202)).toHaveLength(1);
    expect(answers.filter((s) => s === 200)).toHaveLength(49);
    expect(pushes).toBe(1);
    expect(await waitFor(() => source.status().lastAppliedRevision === sha, 10_000)).toBe(true);
    await settled();
    const requests = server.requests() - before;
    // One fetch is two requests to git http-backend (info/refs, then git-upload-pack).
    expect(requests).toBeLessThanOrEqual(2);
    table.add({ case: 'webhook: one signed delivery replayed 50 times at once', held: `1 accepted, 49 answered "already received"; ${requests} Git request(s) (one fetch); revision applied`, recoveryMs: answeredMs, recoveryNote: 'all 50 answered' });
  });

  it('50 distinct pushes in a burst: at most one fetch running and one pending', async () => {
    const sha = await commit(2);
    const body = JSON.stringify({ ref: 'refs/heads/main', after: sha });
    const before = server.requests();
    const t0 = performance.now();
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => github(body, `burst-${i}`).then((r) => r.status)));
    expect(answers.every((s) => s === 202)).toBe(true);
    expect(await waitFor(() => source.status().lastAppliedRevision === sha, 10_000)).toBe(true);
    const appliedMs = performance.now() - t0;
    await settled();
    const requests = server.requests() - before;
    expect(requests).toBeLessThanOrEqual(4);
    table.add({ case: 'webhook: 50 distinct signed pushes in a burst', held: `${requests} Git requests (≤ 2 fetches: one running, one pending), not one fetch per push`, recoveryMs: appliedMs, recoveryNote: 'burst → revision applied' });
  });

  it("GitHub's form-encoded payload (payload=<json>) is accepted", async () => {
    const sha = await commit(3);
    const form = new URLSearchParams({ payload: JSON.stringify({ ref: 'refs/heads/main', after: sha }) }).toString();
    const res = await github(form, 'form-1', 'application/x-www-form-urlencoded');
    expect(res.status).toBe(202);
    expect(await waitFor(() => source.status().lastAppliedRevision === sha, 10_000)).toBe(true);
    // A form without the field is refused, and fetches nothing.
    const empty = 'other=1';
    expect((await github(empty, 'form-2', 'application/x-www-form-urlencoded')).status).toBe(400);
  });
});
