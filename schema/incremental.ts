// A loader that remembers the previous load: files whose text is unchanged are not parsed again.
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
