// readCommitTree straight from a repository's object store, with and without the cache of the
// previous revision's objects: same files, same refusals.
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFabricRepo, type FabricRepo } from '../demo/git-repo.ts';
import { BlobCache, readCommitTree, TreeError } from './git-tree.ts';

let root: string;
let repo: FabricRepo;
const text = (m: Map<string, Uint8Array>): Record<string, string> => Object.fromEntries([...m].map(([p, b]) => [p, Buffer.from(b).toString()]));

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'clgo-tree-'));
  repo = await createFabricRepo({
    root,
    name: 'r',
    files: new Map([
      ['fabric.yaml', 'f\n'],
      ['peers/a/exports/x.yaml', 'same\n'],
      ['peers/b/exports/x.yaml', 'same\n'], // an identical subtree at two paths
      ['peers/a/peer.yaml', 'a\n'],
      ['.github/workflows/ci.yaml', 'skipped\n'],
    ]),
  });
});
afterAll(() => rm(root, { recursive: true, force: true }));

describe('readCommitTree', () => {
  it('reads every file once per path, skipping top-level CI folders, cached or not', async () => {
    const head = await repo.head();
    const plain = await readCommitTree(repo.bareDir, head);
    expect(text(plain)).toEqual({ 'fabric.yaml': 'f\n', 'peers/a/exports/x.yaml': 'same\n', 'peers/b/exports/x.yaml': 'same\n', 'peers/a/peer.yaml': 'a\n' });
    const cache = new BlobCache();
    await readCommitTree(repo.bareDir, head, {}, {}, cache);
    const next = await repo.commit(new Map([['peers/a/peer.yaml', 'a2\n']]), 'change a');
    const cached = await readCommitTree(repo.bareDir, next, {}, {}, cache);
    expect(text(cached)).toEqual(text(await readCommitTree(repo.bareDir, next)));
    expect(text(cached)['peers/a/peer.yaml']).toBe('a2\n');
  });

  it('refuses a symbolic link in a subtree, also when its siblings come from the cache', async () => {
    const cache = new BlobCache();
    await readCommitTree(repo.bareDir, await repo.head(), {}, {}, cache);
    await symlink('../../fabric.yaml', join(repo.workDir, 'peers/b/exports/link.yaml'));
    const bad = await repo.commit(new Map(), 'add a symlink');
    await expect(readCommitTree(repo.bareDir, bad, {}, {}, cache)).rejects.toThrow(TreeError);
    await expect(readCommitTree(repo.bareDir, bad)).rejects.toThrow(/peers\/b\/exports\/link\.yaml is a symbolic link/);
  });

  it('enforces the file-count limit on files that come from the cache', async () => {
    const cache = new BlobCache();
    const head = await repo.commit(new Map([['peers/b/exports/link.yaml', null]]), 'remove the symlink');
    await readCommitTree(repo.bareDir, head, {}, {}, cache);
    await expect(readCommitTree(repo.bareDir, head, { maxFiles: 2 }, {}, cache)).rejects.toThrow(/more than 2 files/);
  });
});
