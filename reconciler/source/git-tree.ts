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
 * The blobs of the last tree read, by object id: a new revision re-reads (inflates) only the blobs
 * it changed. Holds one revision's files at a time.
 */
export class BlobCache {
  /** @internal */
  blobs = new Map<string, Uint8Array>();
}

export async function readCommitTree(gitdir: string, commitOid: string, limits: Partial<LoadLimits> = {}, cache: object = {}, blobCache?: BlobCache): Promise<Map<string, Uint8Array>> {
  const lim = { ...DEFAULT_LIMITS, ...limits };
  const files = new Map<string, Uint8Array>();
  const seen = new Map<string, Uint8Array>();
  let total = 0;
  const { commit } = await git.readCommit({ fs, gitdir, oid: commitOid, cache });

  async function walk(treeOid: string, prefix: string, depth: number): Promise<void> {
    if (depth > 16) throw new TreeError(`tree nesting deeper than 16 levels at ${prefix || '/'}`, prefix);
    const { tree } = await git.readTree({ fs, gitdir, oid: treeOid, cache });
    for (const entry of tree) {
      const path = prefix ? `${prefix}/${entry.path}` : entry.path;
      if (entry.path === '.' || entry.path === '..' || entry.path.includes('/') || entry.path.includes('\\') || entry.path.includes('\0')) {
        throw new TreeError(`refusing tree entry with an unsafe name: ${JSON.stringify(path)}`, path);
      }
      if (!prefix && SKIPPED_TOP.has(entry.path)) continue;
      if (entry.mode === '120000') throw new TreeError(`${path} is a symbolic link; the fabric repository must hold regular files only`, path);
      if (entry.mode === '160000') throw new TreeError(`${path} is a submodule; the fabric repository must not contain submodules`, path);
      if (entry.type === 'tree') {
        await walk(entry.oid, path, depth + 1);
        continue;
      }
      if (entry.type !== 'blob') continue;
      if (files.size >= lim.maxFiles) throw new TreeError(`more than ${lim.maxFiles} files in the tree`, path);
      const blob = blobCache?.blobs.get(entry.oid) ?? (await git.readBlob({ fs, gitdir, oid: entry.oid, cache })).blob;
      seen.set(entry.oid, blob);
      if (blob.length > lim.maxFileBytes) throw new TreeError(`${path} is ${blob.length} bytes, over the ${lim.maxFileBytes}-byte limit per file`, path);
      total += blob.length;
      if (total > lim.maxTotalBytes) throw new TreeError(`the tree exceeds ${lim.maxTotalBytes} bytes in total`, path);
      files.set(path, blob);
    }
  }
  await walk(commit.tree, '', 0);
  if (blobCache) blobCache.blobs = seen;
  return files;
}
