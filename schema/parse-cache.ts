// The incremental load: what a reconciler remembers between loads, and a load through it.
import { checkGateways, checkImports, finish, missingFabric, sameExportKeys } from './cross-checks.ts';
import { Diagnostics } from './diagnostics.ts';
import { byteSize, processFile, upperSize, type Pass } from './layout.ts';
import type { LoadLimits } from './limits.ts';
import type { Diagnostic, LoadResult, PeerModel } from './model.ts';
import { buildPeer, newDraft, type ParsedObject, type PeerDraft } from './objects.ts';


/**
 * What a reconciler following a repository remembers between loads, so that a commit touching one
 * file costs about one file (and one peer) of work:
 * - per file: its bytes, text, classification, private-key scan and parsed documents;
 * - per peer directory (`peers/<name>/`, always a contiguous run of sorted paths): its diagnostics,
 *   draft and PeerModel, rebuilt only when one of its files changes;
 * - per peer: the cross-reference checks of its imports, re-run only when the peer or a peer it
 *   imports from changed (or, for an unknown-peer error, when the set of peers changed).
 * A load with a cache gives exactly what a load without one gives (same model, same diagnostics in
 * the same order); test/schema/incremental.test.ts checks that over random edit sequences.
 */
export class ParseCache {
  /** @internal */
  readonly files = new Map<string, FileEntry>();
  /** @internal */
  readonly units = new Map<string, UnitState>();
  /** @internal paths outside any peer directory */
  readonly globals = new Set<string>();
  /** @internal unit keys and global paths in path order; null when the set changed */
  segments: string[] | null = null;
  /** @internal names of units with a draft, sorted as peers are; null when the set changed */
  draftOrder: string[] | null = null;
  /** @internal */
  readonly checks = new Map<string, PeerCheck>();
  /** @internal peer name → peers whose cached checks read it */
  readonly dependents = new Map<string, Set<string>>();
  /** @internal peers whose cached checks used the list of all peer names (a "did you mean") */
  readonly nameListUsers = new Set<string>();
  /** @internal */
  lastModels = new Map<string, PeerModel>();
  /** @internal the last load's paths and contents, in its map's order */
  readonly orderKeys: string[] = [];
  /** @internal */
  readonly orderValues: Array<Uint8Array | string> = [];
  /** @internal the limits the cached results were computed under */
  limitsKey = '';
  /** @internal sum of the files' upper size bounds */
  upperTotal = 0;
  get size(): number {
    return this.files.size;
  }
  /** Forgets everything (the next load is a full one). */
  clear(): void {
    this.files.clear();
    this.units.clear();
    this.globals.clear();
    this.segments = null;
    this.draftOrder = null;
    this.checks.clear();
    this.dependents.clear();
    this.nameListUsers.clear();
    this.lastModels = new Map();
    this.upperTotal = 0;
    this.orderKeys.length = 0;
    this.orderValues.length = 0;
  }
}

interface ParsedFile {
  objects: ParsedObject[] | null;
  errors: Diagnostic[];
  warnings: Diagnostic[];
}

export interface FileEntry {
  raw: Uint8Array | string;
  /** Byte size when computed (strings: on demand). */
  size: number | null;
  /** An upper bound of the byte size (UTF-16 length × 3 for strings). */
  upper: number;
  /** Decoded text, when asked for. */
  text: string | null;
  /** `peers/<name>/` for files in a peer directory, else null. */
  unit: string | null;
  /** The private-key scan passed for this content. */
  keyFree: boolean;
  parsed: ParsedFile | null;
}

interface UnitState {
  key: string;
  /** Sorted. */
  paths: string[];
  dirty: boolean;
  errors: Diagnostic[];
  warnings: Diagnostic[];
  draft: PeerDraft | null;
  model: PeerModel | null;
  missing: Diagnostic | null;
  /** buildPeer's warnings: reported where a full load reports them (with the missing-peer errors). */
  modelWarnings: Diagnostic[];
}

interface PeerCheck {
  model: PeerModel;
  deps: string[];
  errors: Diagnostic[];
  warnings: Diagnostic[];
}


function unitOf(path: string): string | null {
  if (!path.startsWith('peers/')) return null;
  const j = path.indexOf('/', 6);
  return j === -1 ? null : path.slice(0, j + 1);
}

function sameContent(a: Uint8Array | string, b: Uint8Array | string): boolean {
  if (typeof a === 'string' || typeof b === 'string') return a === b;
  if (a.byteLength !== b.byteLength) return false;
  return (Buffer.isBuffer(a) ? a : Buffer.from(a.buffer, a.byteOffset, a.byteLength)).equals(b);
}

/**
 * A load through the cache: files are compared with what the cache remembers, peer directories
 * with a changed, added or deleted file are rebuilt, the others reused as they are; null when the
 * repository may exceed the size limit (the plain load then reports exactly where).
 */
export function loadIncremental(files: ReadonlyMap<string, Uint8Array | string>, limits: LoadLimits, cache: ParseCache): LoadResult | null {
  // What is remembered was computed under these limits.
  const limitsKey = JSON.stringify(limits);
  if (cache.limitsKey !== limitsKey) {
    cache.clear();
    cache.limitsKey = limitsKey;
  }
  const unitFor = (key: string): UnitState => {
    let u = cache.units.get(key);
    if (!u) {
      u = { key, paths: [], dirty: true, errors: [], warnings: [], draft: null, model: null, missing: null, modelWarnings: [] };
      cache.units.set(key, u);
      cache.segments = null;
    }
    return u;
  };
  // The last load's files in its order: a source handing over a copy of the previous map with a few
  // entries replaced is checked by walking both in step, without a lookup per file.
  const keys = cache.orderKeys;
  const vals = cache.orderValues;
  let i = 0;
  files.forEach((bytes, path) => {
    const k = i++;
    // Strings are immutable: the same string is the same content. Byte arrays are compared with
    // the cache's own copy (a caller may reuse and overwrite a buffer).
    if (keys[k] === path && vals[k] === bytes && typeof bytes === 'string') return;
    keys[k] = path;
    vals[k] = bytes;
    let e = cache.files.get(path);
    if (e && sameContent(e.raw, bytes)) {
      if (typeof bytes === 'string') e.raw = bytes;
      return;
    }
    const raw = typeof bytes === 'string' ? bytes : Buffer.from(bytes); // a copy
    const unit = unitOf(path);
    if (e) {
      cache.upperTotal -= e.upper;
      e.raw = raw;
      e.size = null;
      e.upper = upperSize(bytes);
      e.text = null;
      e.keyFree = false;
      e.parsed = null;
    } else {
      e = { raw, size: null, upper: upperSize(bytes), text: null, unit, keyFree: false, parsed: null };
      cache.files.set(path, e);
      if (unit) unitFor(unit).paths.push(path);
      else {
        cache.globals.add(path);
        cache.segments = null;
      }
    }
    if (unit) unitFor(unit).dirty = true;
    cache.upperTotal += e.upper;
  });
  keys.length = i;
  vals.length = i;
  if (cache.files.size !== files.size) {
    // Deleted files.
    const gone = new Set<string>();
    for (const [path, e] of cache.files) {
      if (files.has(path)) continue;
      cache.files.delete(path);
      cache.upperTotal -= e.upper;
      if (e.unit) {
        unitFor(e.unit).dirty = true;
        gone.add(e.unit);
      } else {
        cache.globals.delete(path);
        cache.segments = null;
      }
    }
    for (const key of gone) {
      const u = cache.units.get(key)!;
      u.paths = u.paths.filter((p) => files.has(p));
      if (u.paths.length === 0) {
        cache.units.delete(key);
        cache.segments = null;
        if (u.draft) cache.draftOrder = null;
      }
    }
  }
  if (cache.upperTotal > limits.maxTotalBytes) {
    let total = 0;
    for (const bytes of files.values()) total += byteSize(bytes);
    if (total > limits.maxTotalBytes) return null;
  }

  const diags = new Diagnostics();
  const pass: Pass = {
    limits,
    diags,
    draft: () => {
      throw new Error('internal: a file outside peers/<name>/ asked for a peer draft');
    },
    fabricObj: null,
    sawFabricFile: false,
  };
  cache.segments ??= [...cache.units.keys(), ...cache.globals].sort();
  for (const seg of cache.segments) {
    const u = cache.units.get(seg);
    if (!u) {
      processFile(pass, seg, files.get(seg)!, cache.files.get(seg)!);
      continue;
    }
    if (u.dirty) rebuildUnit(u, files, limits, cache);
    for (const d of u.errors) diags.add(d);
    for (const d of u.warnings) diags.add(d);
  }

  if (!pass.sawFabricFile) missingFabric(diags);

  cache.draftOrder ??= [...cache.units.values()]
    .filter((u) => u.draft !== null)
    .sort((a, b) => a.draft!.name.localeCompare(b.draft!.name) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .map((u) => u.key);
  const peerModels: PeerModel[] = [];
  for (const key of cache.draftOrder) {
    const u = cache.units.get(key)!;
    if (u.missing) diags.add(u.missing);
    else {
      peerModels.push(u.model!);
      for (const w of u.modelWarnings) diags.add(w);
    }
  }

  checkGateways(peerModels, diags);
  crossCheckIncremental(peerModels, cache, diags);
  return finish(pass, peerModels);
}

function rebuildUnit(u: UnitState, files: ReadonlyMap<string, Uint8Array | string>, limits: LoadLimits, cache: ParseCache): void {
  const diags = new Diagnostics();
  const name = u.key.slice('peers/'.length, -1);
  let draft: PeerDraft | null = null;
  const pass: Pass = {
    limits,
    diags,
    draft: (n) => {
      if (n !== name) throw new Error(`internal: peer ${n} in ${u.key}`);
      return (draft ??= newDraft(n));
    },
    fabricObj: null,
    sawFabricFile: false,
  };
  u.paths.sort();
  for (const path of u.paths) processFile(pass, path, files.get(path)!, cache.files.get(path)!);
  if ((u.draft === null) !== (draft === null)) cache.draftOrder = null;
  u.draft = draft;
  u.errors = diags.errors;
  u.warnings = diags.warnings;
  const built = draft ? buildPeer(draft) : null;
  u.model = built?.model ?? null;
  u.missing = built?.missing ?? null;
  u.modelWarnings = built?.model ? built.warnings : [];
  u.dirty = false;
}

function dropCheck(cache: ParseCache, name: string): void {
  const c = cache.checks.get(name);
  if (!c) return;
  for (const dep of c.deps) cache.dependents.get(dep)?.delete(name);
  cache.nameListUsers.delete(name);
  cache.checks.delete(name);
}

/** checkImports for the peers whose inputs changed; the others' diagnostics are replayed. */
function crossCheckIncremental(peerModels: PeerModel[], cache: ParseCache, diags: Diagnostics): void {
  const byName = new Map(peerModels.map((p) => [p.name, p]));
  const prev = cache.lastModels;
  const invalid = new Set<string>();
  let namesChanged = false;
  const touch = (name: string): void => {
    invalid.add(name);
    for (const d of cache.dependents.get(name) ?? []) invalid.add(d);
  };
  for (const [name, model] of byName) {
    const old = prev.get(name);
    if (old === model) continue;
    if (old === undefined) namesChanged = true;
    // Other peers' checks read only which exports a peer has (and in which order, for hints).
    if (old === undefined || !sameExportKeys(old, model)) touch(name);
    else invalid.add(name);
  }
  for (const name of prev.keys()) {
    if (byName.has(name)) continue;
    namesChanged = true;
    touch(name);
    dropCheck(cache, name);
  }
  if (namesChanged) for (const n of cache.nameListUsers) invalid.add(n);
  let names: string[] | null = null;
  const allNames = (): string[] => (names ??= peerModels.map((x) => x.name));
  for (const p of peerModels) {
    let c = cache.checks.get(p.name);
    if (!c || c.model !== p || invalid.has(p.name)) {
      dropCheck(cache, p.name);
      const local = new Diagnostics();
      const unit = cache.units.get(`peers/${p.name}/`);
      const deps = new Set<string>();
      const r = checkImports(p, unit?.draft ?? undefined, byName, allNames, local, deps);
      c = { model: p, deps: [...deps], errors: local.errors, warnings: local.warnings };
      cache.checks.set(p.name, c);
      for (const dep of c.deps) {
        let set = cache.dependents.get(dep);
        if (!set) cache.dependents.set(dep, (set = new Set()));
        set.add(p.name);
      }
      if (r.usedNames) cache.nameListUsers.add(p.name);
    }
    for (const d of c.errors) diags.add(d);
    for (const d of c.warnings) diags.add(d);
  }
  cache.lastModels = byName;
}
