// Push webhooks in front of a real Git source: a signed GitHub/Gitea/GitLab push makes the source
// fetch at once (well before its next poll); forged, oversized or garbage requests are refused
// and trigger nothing.
import { createHmac, randomBytes } from 'node:crypto';
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

const SECRET = 'a-webhook-secret-of-enough-length';
let root: string;
let server: GitHttpServer;
let repo: FabricRepo;
let source: FabricSource;
let admin: AdminServer;
let pushes = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'clgo-hook-'));
  server = await startGitHttpServer({ root });
  repo = await createFabricRepo({ root, name: 'fabric', files: await readFabricDir(EXAMPLE_DIR) });
  // A poll far in the future: only the webhook can make this source fetch during the test.
  source = createGitSource({ url: server.repoUrl('fabric.git'), ref: { branch: 'main' }, cacheDir: join(root, 'cache'), pollIntervalMs: 600_000 });
  await source.start();
  admin = await startAdminServer({ status: () => ({}), ready: () => true });
  admin.mount('/webhook', createWebhookHandler({ secret: SECRET, ref: 'refs/heads/main', onPush: () => {
    pushes++;
    void source.refresh();
  } }));
});

afterAll(async () => {
  await admin.close();
  await source.stop();
  await server.stop();
  await rm(root, { recursive: true, force: true });
});

const post = (body: string | Buffer, headers: Record<string, string>): Promise<Response> => fetch(`${admin.url}/webhook`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
const sign = (body: string): string => createHmac('sha256', SECRET).update(body).digest('hex');

async function commitSomething(n: number): Promise<string> {
  return repo.commit(new Map([[`peers/east/policies/hook-${n}.yaml`, `apiVersion: clusterlink.net/v1alpha1\nkind: AccessPolicy\nmetadata:\n  name: hook-${n}\n  namespace: perf\nspec:\n  action: deny\n  from: [{ workloadSelector: { matchLabels: { client.clusterlink.net/labels.app: x${n} } } }]\n  to: [{ workloadSelector: {} }]\n`]]), `hook ${n}`);
}

describe('push webhooks', () => {
  it('a signed GitHub push triggers an immediate fetch', async () => {
    const sha = await commitSomething(1);
    const body = JSON.stringify({ ref: 'refs/heads/main', after: sha });
    const t0 = Date.now();
    const res = await post(body, { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${sign(body)}` });
    expect(res.status).toBe(202);
    expect(await waitFor(() => source.status().lastAppliedRevision === sha, 5000)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('Gitea (HMAC) and GitLab (token) pushes are accepted too', async () => {
    const sha = await commitSomething(2);
    const body = JSON.stringify({ ref: 'refs/heads/main', after: sha });
    expect((await post(body, { 'x-gitea-event': 'push', 'x-gitea-signature': sign(body) })).status).toBe(202);
    expect(await waitFor(() => source.status().lastAppliedRevision === sha, 5000)).toBe(true);
    const sha3 = await commitSomething(3);
    const body3 = JSON.stringify({ ref: 'refs/heads/main', checkout_sha: sha3 });
    expect((await post(body3, { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': SECRET })).status).toBe(202);
    expect(await waitFor(() => source.status().lastAppliedRevision === sha3, 5000)).toBe(true);
  });

  it('refuses forged, unsigned, oversized and garbage requests without fetching', async () => {
    const sha = await commitSomething(4);
    const before = { pushes, requests: server.requests() };
    const body = JSON.stringify({ ref: 'refs/heads/main', after: sha });
    expect((await post(body, { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${createHmac('sha256', 'wrong-secret-wrong-secret').update(body).digest('hex')}` })).status).toBe(401);
    expect((await post(body, { 'x-github-event': 'push' })).status).toBe(401);
    expect((await post(body, { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': 'guess' })).status).toBe(401);
    expect((await post(randomBytes(4096), { 'x-gitea-event': 'push', 'x-gitea-signature': 'deadbeef' })).status).toBe(401);
    const huge = 'x'.repeat(2 * 1024 * 1024);
    expect((await post(huge, { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${sign(huge)}` })).status).toBe(413);
    expect((await fetch(`${admin.url}/webhook`)).status).toBe(405);
    // Authentic but not JSON, or for another branch: no fetch either.
    expect((await post('not json', { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${sign('not json')}` })).status).toBe(400);
    const other = JSON.stringify({ ref: 'refs/heads/feature' });
    expect((await post(other, { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${sign(other)}` })).status).toBe(202);
    await new Promise((r) => setTimeout(r, 200));
    expect(pushes).toBe(before.pushes);
    expect(server.requests()).toBe(before.requests);
    expect(source.status().lastAppliedRevision).not.toBe(sha);
  });
});
