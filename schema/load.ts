// Loads a fabric repository (a map of path → bytes: a directory read from disk or a Git tree read
// from the object store) into the typed FabricModel, or into located diagnostics. Pure: no I/O.
// Every diagnostic names file:line:column, the field path inside the document and a one-line hint.
import { checkGateways, checkImports, finish, missingFabric } from './cross-checks.ts';
import { at, Diagnostics } from './diagnostics.ts';
import { byteSize, processFile, upperSize, type Pass } from './layout.ts';
import { DEFAULT_LIMITS, type LoadLimits } from './limits.ts';
import type { Diagnostic, LoadResult, PeerModel, PolicyModel } from './model.ts';
import { addObject, byNsName, buildPeer, newDraft, parseObject, type PeerDraft } from './objects.ts';
import { loadIncremental, type ParseCache } from './parse-cache.ts';
import { decode, parseFile } from './yaml-documents.ts';

export { DEFAULT_LIMITS, type LoadLimits } from './limits.ts';
export { IMPORT_MERGE, SESSION_AFFINITY } from './objects.ts';
export { ParseCache } from './parse-cache.ts';

export interface LoadOptions {
  limits?: Partial<LoadLimits>;
  /** Reuses the parse of files whose text did not change since the last load with this cache. */
  cache?: ParseCache;
}


export function loadFabricFiles(files: ReadonlyMap<string, Uint8Array | string>, options: LoadOptions = {}): LoadResult {
  const limits: LoadLimits = { ...DEFAULT_LIMITS, ...options.limits };
  if (files.size > limits.maxFiles) {
    const diags = new Diagnostics();
    diags.error(at('.'), 'too-many-files', '', `${files.size} files in the fabric repository (limit ${limits.maxFiles})`, 'remove unrelated files or raise the limit');
    return { ok: false, errors: diags.errors, warnings: diags.warnings };
  }
  if (options.cache) {
    let r: LoadResult | null;
    try {
      r = loadIncremental(files, limits, options.cache);
    } catch (err) {
      options.cache.clear(); // never keep a half-updated cache
      throw err;
    }
    if (r) return r;
    options.cache.clear(); // a repository over the size limit: the plain load reports it
  }
  return loadFull(files, limits);
}

function loadFull(files: ReadonlyMap<string, Uint8Array | string>, limits: LoadLimits): LoadResult {
  const diags = new Diagnostics();
  const peers = new Map<string, PeerDraft>();
  const pass: Pass = {
    limits,
    diags,
    draft: (name) => {
      let d = peers.get(name);
      if (!d) {
        d = newDraft(name);
        peers.set(name, d);
      }
      return d;
    },
    fabricObj: null,
    sawFabricFile: false,
  };

  // The exact total is only needed when it may exceed the limit.
  let upper = 0;
  for (const bytes of files.values()) upper += upperSize(bytes);
  const trackTotal = upper > limits.maxTotalBytes;
  let total = 0;
  const paths = [...files.keys()].sort();
  for (const path of paths) {
    const bytes = files.get(path)!;
    if (trackTotal) total += byteSize(bytes);
    if (processFile(pass, path, bytes, null) && total > limits.maxTotalBytes) {
      diags.error(at(path), 'repo-too-large', '', `the fabric repository exceeds ${limits.maxTotalBytes} bytes`, 'remove unrelated large files');
      return { ok: false, errors: diags.errors, warnings: diags.warnings };
    }
  }

  if (!pass.sawFabricFile) missingFabric(diags);

  const peerModels: PeerModel[] = [];
  for (const d of [...peers.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const b = buildPeer(d);
    if (b.missing) diags.add(b.missing);
    else {
      peerModels.push(b.model);
      for (const w of b.warnings) diags.add(w);
    }
  }

  checkGateways(peerModels, diags);
  const byName = new Map(peerModels.map((p) => [p.name, p]));
  let names: string[] | null = null;
  const allNames = (): string[] => (names ??= peerModels.map((x) => x.name));
  for (const p of peerModels) checkImports(p, peers.get(p.name), byName, allNames, diags, null);

  return finish(pass, peerModels);
}


/**
 * Loads loose AccessPolicy / PrivilegedAccessPolicy files (for `clgo policy eval`): the same parsing,
 * schema and selector checks as a fabric repository, without the repository layout.
 */
export function loadPolicyFiles(
  files: ReadonlyMap<string, Uint8Array | string>,
  options: LoadOptions = {},
): { ok: true; policies: PolicyModel[]; warnings: Diagnostic[] } | { ok: false; errors: Diagnostic[]; warnings: Diagnostic[] } {
  const limits: LoadLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const diags = new Diagnostics();
  const d = newDraft('local');
  for (const path of [...files.keys()].sort()) {
    const bytes = files.get(path)!;
    const size = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.byteLength;
    if (size > limits.maxFileBytes) {
      diags.error(at(path), 'file-too-large', '', `file is ${size} bytes (limit ${limits.maxFileBytes})`, 'split it into smaller files');
      continue;
    }
    const parsed = parseFile(path, decode(bytes), limits, diags);
    if (!parsed) continue;
    for (const doc of parsed.docs) {
      const obj = parseObject(parsed.file, doc, ['AccessPolicy', 'PrivilegedAccessPolicy'], 'a policy file', diags);
      if (obj) addObject(d, obj, diags);
    }
  }
  if (diags.errors.length > 0) return { ok: false, errors: diags.errors, warnings: diags.warnings };
  return { ok: true, policies: d.policies.sort(byNsName), warnings: diags.warnings };
}
