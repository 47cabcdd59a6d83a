// A fabric source over a local directory, for development and local mode. chokidar reports
// changes; reads are debounced so an editor's atomic save (write temp, rename over) or a
// `git checkout` touching many files yields one revision, and a revision is the SHA-256 of the
// sorted paths and bytes, so saving an unchanged file is not a new revision.
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { loadFabricFiles, ParseCache, type LoadLimits } from '../../schema/load.ts';
import type { LoadResult } from '../../schema/model.ts';
import { FabricReadError, readFabricDir } from '../../schema/read-dir.ts';
import { createRevisionTracker } from './revision-tracker.ts';
import type { FabricSource, RevisionListener } from './types.ts';

export interface DirectorySourceOptions {
  dir: string;
  /** Quiet time after the last change before reading (ms). */
  debounceMs?: number;
  /** Watch for changes (default true); false reads only on start() and refresh(). */
  watch?: boolean;
  limits?: Partial<LoadLimits>;
  load?: (files: ReadonlyMap<string, Uint8Array>) => LoadResult;
}

export function treeRevision(files: ReadonlyMap<string, Uint8Array>): string {
  const h = createHash('sha256');
  for (const path of [...files.keys()].sort()) {
    const bytes = files.get(path)!;
    h.update(path).update('\0').update(String(bytes.length)).update('\0').update(bytes);
  }
  return h.digest('hex');
}

export function createDirectorySource(opts: DirectorySourceOptions): FabricSource {
  const dir = resolve(opts.dir);
  const debounceMs = opts.debounceMs ?? 200;
  // One parse cache per source: a new revision re-parses only the files it changed.
  const parseCache = new ParseCache();
  const load = opts.load ?? ((files) => loadFabricFiles(files, { limits: opts.limits, cache: parseCache }));
  const tracker = createRevisionTracker({ kind: 'directory', url: dir });
  let watcher: FSWatcher | null = null;
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> = Promise.resolve();
  let stopped = false;

  async function readOnce(): Promise<void> {
    if (tracker.suspended()) return;
    let files: Map<string, Uint8Array>;
    try {
      files = await readFabricDir(dir, opts.limits);
    } catch (err) {
      // FabricReadError names the offending path; anything else is an I/O failure of the directory.
      const message = err instanceof FabricReadError ? err.message : `cannot read ${dir}: ${(err as Error).message}`;
      tracker.rejected(null, { stage: 'tree', message });
      return;
    }
    const revision = treeRevision(files);
    tracker.fetched();
    if (!tracker.isNew(revision)) return;
    const result = load(files);
    if (!result.ok) {
      const first = result.errors[0];
      tracker.rejected(revision, {
        stage: 'validate',
        message: `${result.errors.length} error(s); first: ${first ? `${first.message} (${first.hint})` : 'unknown'}`,
        ...(first ? { file: first.file, line: first.line, column: first.column } : {}),
      });
      return;
    }
    await tracker.accept({ revision, fabric: result.fabric, files, warnings: result.warnings });
  }

  /** Serialises reads: a change during a read schedules exactly one more. */
  function refresh(): Promise<void> {
    running = running.then(() => (stopped ? undefined : readOnce()));
    return running;
  }

  return {
    async start() {
      stopped = false;
      if (opts.watch !== false) {
        watcher = watch(dir, {
          ignoreInitial: true,
          ignored: (p: string) => /(^|[/\\])(\.git|node_modules)([/\\]|$)/.test(p),
          // Atomic saves: wait for the writer to finish before reporting.
          awaitWriteFinish: { stabilityThreshold: Math.min(100, debounceMs), pollInterval: 20 },
          atomic: true,
        });
        watcher.on('all', () => {
          if (timer) clearTimeout(timer);
          timer = setTimeout(() => {
            timer = null;
            void refresh();
          }, debounceMs);
        });
        await new Promise<void>((r) => watcher!.once('ready', () => r()));
      }
      await refresh();
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await watcher?.close();
      watcher = null;
      await running;
    },
    onRevision(listener: RevisionListener) {
      tracker.onRevision(listener);
    },
    refresh,
    status: () => tracker.status(),
    suspend: (on) => tracker.suspend(on),
  };
}
