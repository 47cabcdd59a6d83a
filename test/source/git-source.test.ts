// The Git source against a real `git http-backend` on loopback: pushed commits are picked up,
// invalid ones are refused with file:line while the last good revision keeps serving, history
// rewrites are refused, signatures are enforced, an outage changes nothing, restarts use the cache.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFabricRepo, type FabricRepo } from '../../reconciler/demo/git-repo.ts';
import { startGitHttpServer, type GitHttpServer } from '../../reconciler/demo/git-http-server.ts';
import { freshExampleFabric, type FreshFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { createGitSource } from '../../reconciler/source/git-source.ts';
import type { AcceptedRevision, FabricSource } from '../../reconciler/source/types.ts';
import { waitFor } from '../fixtures/servers.ts';

const exec = promisify(execFile);
let root: string;
let server: GitHttpServer;
let fresh: FreshFabric;
const sources: FabricSource[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'clgo-git-'));
  server = await startGitHttpServer({ root });
  fresh = await freshExampleFabric();
});

afterAll(async () => {
  await Promise.all(sources.map((s) => s.stop()));
  await server.stop();
  await rm(root, { recursive: true, force: true });
});

let counter = 0;
async function setup(opts: { poll?: number; allowNonFastForward?: boolean } = {}): Promise<{ repo: FabricRepo; source: FabricSource; revisions: AcceptedRevision[]; cacheDir: string; make: () => FabricSource }> {
  const name = `fabric${++counter}`;
  const repo = await createFabricRepo({ root, name, files: fresh.files });
  const cacheDir = join(root, `${name}.cache`);
  const revisions: AcceptedRevision[] = [];
  const make = (): FabricSource => {
    const s = createGitSource({ url: server.repoUrl(`${name}.git`), ref: { branch: 'main' }, cacheDir, pollIntervalMs: opts.poll ?? 60_000, timeoutMs: 2000, maxBackoffMs: 400, allowNonFastForward: opts.allowNonFastForward });
    s.onRevision((r) => void revisions.push(r));
    sources.push(s);
    return s;
  };
  const source = make();
  await source.start();
  return { repo, source, revisions, cacheDir, make };
}

const policy = (name: string): string => `apiVersion: clusterlink.net/v1alpha1
kind: AccessPolicy
metadata:
  name: ${name}
  namespace: perf
spec:
  action: allow
  from: [{ workloadSelector: { matchLabels: { client.clusterlink.net/labels.app: x } } }]
  to: [{ workloadSelector: {} }]
`;

describe('Git source', () => {
  it('applies the head on start and picks up a pushed commit by polling', async () => {
    const { repo, source, revisions } = await setup({ poll: 100 });
    expect(revisions).toHaveLength(1);
    expect(revisions[0]!.revision).toBe(await repo.head());
    expect(revisions[0]!.fabric.peers.map((p) => p.name)).toEqual(['east', 'edge', 'west']);
    const sha = await repo.commit(new Map([['peers/east/policies/extra.yaml', policy('extra')]]), 'east: extra policy');
    expect(await waitFor(() => source.status().lastAppliedRevision === sha, 5000)).toBe(true);
    expect(revisions.at(-1)!.message).toBe('east: extra policy');
    expect(revisions.at(-1)!.files.has('peers/east/policies/extra.yaml')).toBe(true);
  });

  it('refuses an invalid commit with file:line, keeps the last good, and recovers on the next valid one', async () => {
    const { repo, source, revisions } = await setup();
    const good = await repo.head();
    const bad = await repo.commit(new Map([['peers/west/exports/http.yaml', 'apiVersion: clusterlink.net/v1alpha1\nkind: Export\nmetadata:\n  name: http\n  namespace: web\nspec:\n  port: 99999\n']]), 'west: bad port');
    await source.refresh();
    const st = source.status();
    expect(st.lastAttemptedRevision).toBe(bad);
    expect(st.lastAppliedRevision).toBe(good);
    expect(st.lastError).toMatchObject({ revision: bad, stage: 'validate', file: 'peers/west/exports/http.yaml', line: 7 });
    expect(st.history[0]).toMatchObject({ revision: bad, outcome: 'rejected' });
    expect(revisions).toHaveLength(1);
    const fixed = await repo.commit(new Map([['peers/west/exports/http.yaml', fresh.files.get('peers/west/exports/http.yaml')!]]), 'west: fix port');
    await source.refresh();
    expect(source.status().lastAppliedRevision).toBe(fixed);
    expect(source.status().lastError).toBeNull();
  });

  it('refuses a force-pushed history rewrite unless allowed', async () => {
    const { repo, source } = await setup();
    const applied = await repo.commit(new Map([['peers/east/policies/a.yaml', policy('a')]]), 'a');
    await source.refresh();
    expect(source.status().lastAppliedRevision).toBe(applied);
    const rewritten = await repo.rewrite('HEAD~1', new Map([['peers/east/policies/b.yaml', policy('b')]]), 'b (rewritten)');
    await source.refresh();
    expect(source.status().lastAppliedRevision).toBe(applied);
    expect(source.status().lastError).toMatchObject({ revision: rewritten, stage: 'fast-forward' });

    const permissive = await setup({ allowNonFastForward: true });
    await permissive.repo.commit(new Map([['peers/east/policies/a.yaml', policy('a')]]), 'a');
    await permissive.source.refresh();
    const re = await permissive.repo.rewrite('HEAD~1', new Map(), 'rollback');
    await permissive.source.refresh();
    expect(permissive.source.status().lastAppliedRevision).toBe(re);
  });

  it('keeps serving while the server is down, then resumes', async () => {
    const { repo, source } = await setup();
    const good = await repo.head();
    server.setFault('down');
    try {
      await repo.commit(new Map([['peers/east/policies/c.yaml', policy('c')]]), 'c');
      await source.refresh();
      expect(source.status().lastAppliedRevision).toBe(good);
      expect(source.status().lastError?.stage).toBe('fetch');
      expect(source.status().errorsByStage?.fetch).toBeGreaterThanOrEqual(1);
    } finally {
      server.setFault(null);
    }
    await source.refresh();
    expect(source.status().lastAppliedRevision).toBe(await repo.head());
  });

  it('a request that hangs times out instead of blocking the source', async () => {
    const { repo, source } = await setup();
    const good = await repo.head();
    server.setFault('hang');
    const t0 = Date.now();
    try {
      await source.refresh();
    } finally {
      server.setFault(null);
    }
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(source.status().lastError?.message).toMatch(/within 2000 ms/);
    expect(source.status().lastAppliedRevision).toBe(good);
  });

  it('restarts from the cache: the last applied revision serves before any fetch, without re-cloning', async () => {
    const { repo, source, make, cacheDir } = await setup();
    const head = await repo.head();
    await source.stop();
    server.setFault('down');
    try {
      const again = make();
      await again.start();
      expect(again.status().lastAppliedRevision).toBe(head);
      expect(again.status().lastError?.stage).toBe('fetch');
      await again.stop();
    } finally {
      server.setFault(null);
    }
    expect(JSON.parse(await readFile(join(cacheDir, 'clgo-source-state.json'), 'utf8'))).toEqual({ lastAppliedRevision: head });
  });

  it('enforces signed commits when fabric.yaml requires them (SSH signatures)', async () => {
    const keyFile = join(root, 'signer');
    await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'fabric-admin', '-f', keyFile]);
    const publicKey = (await readFile(`${keyFile}.pub`, 'utf8')).trim();
    const other = join(root, 'other');
    await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
    const fabricYaml = Buffer.from(fresh.files.get('fabric.yaml')!).toString().trimEnd();
    const signedFabric = `${fabricYaml}\n  repo:\n    requireSignedCommits: true\n    allowedSigningKeys:\n      - name: admin\n        type: ssh\n        publicKey: "${publicKey}"\n`;
    const { repo, source } = await setup();
    const signed = await repo.commit(new Map([['fabric.yaml', signedFabric]]), 'require signatures', { sign: { keyFile } });
    await source.refresh();
    expect(source.status().lastError).toBeNull();
    expect(source.status().lastAppliedRevision).toBe(signed);
    const unsigned = await repo.commit(new Map([['peers/east/policies/d.yaml', policy('d')]]), 'unsigned');
    await source.refresh();
    expect(source.status().lastError).toMatchObject({ revision: unsigned, stage: 'signature' });
    expect(source.status().lastError?.message).toMatch(/not signed/);
    const wrongKey = await repo.commit(new Map(), 'signed by someone else', { sign: { keyFile: other } });
    await source.refresh();
    expect(source.status().lastError).toMatchObject({ revision: wrongKey, stage: 'signature' });
    const good = await repo.commit(new Map(), 'signed by the admin', { sign: { keyFile } });
    await source.refresh();
    expect(source.status().lastError).toBeNull();
    expect(source.status().lastAppliedRevision).toBe(good);
  });
});
