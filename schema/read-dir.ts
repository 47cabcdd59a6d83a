// Reads a fabric repository checked out on disk into the path → bytes map the loader takes.
// The only I/O of schema/: refuses symlinks and anything outside the root, and bounds sizes and counts.
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { DEFAULT_LIMITS, type LoadLimits } from './load.ts';

export class FabricReadError extends Error {
  override name = 'FabricReadError';
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
  }
}

const SKIP_DIRS = new Set(['.git', 'node_modules']);

export async function readFabricDir(root: string, limits: Partial<LoadLimits> = {}): Promise<Map<string, Uint8Array>> {
  const l = { ...DEFAULT_LIMITS, ...limits };
  const rootStat = await lstat(root).catch(() => null);
  if (!rootStat) throw new FabricReadError(root, 'no such directory');
  if (!rootStat.isDirectory()) throw new FabricReadError(root, 'not a directory');
  const files = new Map<string, Uint8Array>();
  let total = 0;
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => a.name.localeCompare(b.name));
    for (const e of entries) {
      const abs = join(dir, e.name);
      const rel = relative(root, abs).split(sep).join('/');
      if (e.isSymbolicLink()) throw new FabricReadError(rel, 'symbolic links are not allowed in a fabric repository (replace it with the file itself)');
      if (e.isDirectory()) {
        if (!SKIP_DIRS.has(e.name)) await walk(abs);
        continue;
      }
      if (!e.isFile()) throw new FabricReadError(rel, 'not a regular file');
      const st = await lstat(abs);
      if (st.size > l.maxFileBytes) throw new FabricReadError(rel, `file is ${st.size} bytes (limit ${l.maxFileBytes}); split it`);
      total += st.size;
      if (total > l.maxTotalBytes) throw new FabricReadError(rel, `repository exceeds ${l.maxTotalBytes} bytes`);
      if (files.size + 1 > l.maxFiles) throw new FabricReadError(rel, `more than ${l.maxFiles} files`);
      files.set(rel, await readFile(abs));
    }
  };
  await walk(root);
  return files;
}
