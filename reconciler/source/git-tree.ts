// Reads a commit's tree straight from the object store (no working checkout): every regular file
// as path → bytes, refusing symlinks, submodules, odd paths, and trees over the size limits.
import fs from 'node:fs';
import git from 'isomorphic-git';
import type { LoadLimits } from '../../schema/load.ts';
import { DEFAULT_LIMITS } from '../../schema/load.ts';

export class TreeError extends Error {
  override name = 'TreeError';
  constructor(
    message: string,
    readonly file?: string,
  ) {
    super(message);
  }
}

const SKIPPED_TOP = new Set(['.github', '.gitlab', 'node_modules']);

/**
 * What the last tree read held, by object id: blobs, and whole subtrees (flattened, with their
 * height). A new revision re-reads only the subtrees and blobs it changed — typically one peer's
 * directory. Holds one revision's objects at a time.
 */
export class BlobCache {
  /** @internal */
  blobs = new Map<string, Uint8Array>();
  /** @internal */
  trees = new Map<string, Subtree>();
}

interface Subtree {
  /** Paths relative to the subtree, with their blob ids and bytes. */
  files: Array<[string, string, Uint8Array]>;
  /** Levels of nesting below this tree (0: files only). */
  height: number;
}

const MAX_DEPTH = 16;

/**
 * `dropped`: objects cut out of fetched packs for their size (pack-guard.ts); a tree entry naming
 * one is refused with its size instead of a bare "object not found".
 */
export async function readCommitTree(
  gitdir: string,
  commitOid: string,
  limits: Partial<LoadLimits> = {},
  cache: object = {},
  blobCache?: BlobCache,
  dropped?: ReadonlyMap<string, { bytes: number; limit: number }>,
): Promise<Map<string, Uint8Array>> {
  const lim = { ...DEFAULT_LIMITS, ...limits };
  const files = new Map<string, Uint8Array>();
  const seenBlobs = new Map<string, Uint8Array>();
  const seenTrees = new Map<string, Subtree>();
  let total = 0;
  const { commit } = await git.readCommit({ fs, gitdir, oid: commitOid, cache });

  const addFile = (path: string, oid: string, blob: Uint8Array): void => {
    if (files.size >= lim.maxFiles) throw new TreeError(`more than ${lim.maxFiles} files in the tree`, path);
    if (blob.length > lim.maxFileBytes) throw new TreeError(`${path} is ${blob.length} bytes, over the ${lim.maxFileBytes}-byte limit per file`, path);
    total += blob.length;
    if (total > lim.maxTotalBytes) throw new TreeError(`the tree exceeds ${lim.maxTotalBytes} bytes in total`, path);
    seenBlobs.set(oid, blob);
    files.set(path, blob);
  };

  /** Reads one tree below the root (the root is special: some top-level folders are skipped). */
  async function subtree(treeOid: string, prefix: string, depth: number): Promise<Subtree> {
    const cached = seenTrees.get(treeOid) ?? blobCache?.trees.get(treeOid);
    if (cached) {
      if (depth + cached.height > MAX_DEPTH) throw new TreeError(`tree nesting deeper than ${MAX_DEPTH} levels at ${prefix}`, prefix);
      for (const [rel, oid, blob] of cached.files) addFile(`${prefix}/${rel}`, oid, blob);
      seenTrees.set(treeOid, cached);
      return cached;
    }
    const out: Subtree = { files: [], height: 0 };
    await readEntries(treeOid, prefix, depth, (rel, oid, blob) => out.files.push([rel, oid, blob]), (h) => (out.height = Math.max(out.height, h + 1)));
    seenTrees.set(treeOid, out);
    return out;
  }

  async function readEntries(treeOid: string, prefix: string, depth: number, onFile: (rel: string, oid: string, blob: Uint8Array) => void, onSubtree: (height: number) => void): Promise<void> {
    if (depth > MAX_DEPTH) throw new TreeError(`tree nesting deeper than ${MAX_DEPTH} levels at ${prefix || '/'}`, prefix);
    const { tree } = await git.readTree({ fs, gitdir, oid: treeOid, cache });
    for (const entry of tree) {
      const path = prefix ? `${prefix}/${entry.path}` : entry.path;
      if (entry.path === '.' || entry.path === '..' || entry.path.includes('/') || entry.path.includes('\\') || entry.path.includes('\0')) {
        throw new TreeError(`refusing tree entry with an unsafe name: ${JSON.stringify(path)}`, path);
      }
      if (!prefix && SKIPPED_TOP.has(entry.path)) continue;
      if (entry.mode === '120000') throw new TreeError(`${path} is a symbolic link; the fabric repository must hold regular files only`, path);
      if (entry.mode === '160000') throw new TreeError(`${path} is a submodule; the fabric repository must not contain submodules`, path);
      const cut = dropped?.get(entry.oid);
      if (cut) throw new TreeError(`${path} is ${cut.bytes} bytes, over the ${cut.limit}-byte limit per file (refused from the pack's object header, before inflating)`, path);
      if (entry.type === 'tree') {
        const sub = await subtree(entry.oid, path, depth + 1);
        for (const [rel, oid, blob] of sub.files) onFile(`${entry.path}/${rel}`, oid, blob);
        onSubtree(sub.height);
        continue;
      }
      if (entry.type !== 'blob') continue;
      const blob = blobCache?.blobs.get(entry.oid) ?? (await readBlob(entry.oid, path));
      addFile(path, entry.oid, blob);
      onFile(entry.path, entry.oid, blob);
    }
  }

  async function readBlob(oid: string, path: string): Promise<Uint8Array> {
    try {
      return (await git.readBlob({ fs, gitdir, oid, cache })).blob;
    } catch (err) {
      if ((err as { code?: string }).code === 'NotFoundError') throw new TreeError(`${path}: object ${oid} is not in the local store (cut out of a fetched pack, or the cache was damaged); the revision is refused`, path);
      throw err;
    }
  }

  await readEntries(commit.tree, '', 0, () => undefined, () => undefined);
  if (blobCache) {
    blobCache.blobs = seenBlobs;
    blobCache.trees = seenTrees;
  }
  return files;
}
