// A loader that remembers the previous load. Files whose bytes are unchanged are not decoded,
// scanned or parsed again; peer directories (peers/<name>/) none of whose files changed keep their
// drafts, diagnostics and PeerModel objects; the cross-reference checks of a peer's imports re-run
// only when that peer, or the set of exports of a peer it imports from, changed. The result is
// exactly what a full load gives (test/schema/incremental.test.ts compares them over random edits).
// Unchanged peers keep their PeerModel identity, which createFabricIndexer (reconciler/slice) uses
// to update its index for the changed peers only.
// The reconciler keeps one per followed repository; `clgo validate` (one shot) does not need it.
import { loadFabricFiles, ParseCache, type LoadOptions } from './load.ts';
import type { LoadResult } from './model.ts';

export interface IncrementalLoader {
  load(files: ReadonlyMap<string, Uint8Array | string>): LoadResult;
  /** Files currently remembered. */
  readonly cachedFiles: number;
}

export function createIncrementalLoader(options: Omit<LoadOptions, 'cache'> = {}): IncrementalLoader {
  const cache = new ParseCache();
  return {
    load: (files) => loadFabricFiles(files, { ...options, cache }),
    get cachedFiles() {
      return cache.size;
    },
  };
}
