// Loads a fabric repository (a map of path → bytes: a directory read from disk or a Git tree read
// from the object store) into the typed FabricModel, or into located diagnostics. Pure: no I/O.
// Every diagnostic names file:line:column, the field path inside the document and a one-line hint.
import { closest, distance } from 'fastest-levenshtein';
import jsyaml from 'js-yaml';
import { isMap, isScalar, isSeq, parseAllDocuments, type Document, type Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { API_VERSION, KINDS, PEER_NAME, SERVER_METADATA_FIELDS, kindSchemas, type Kind } from './kinds.ts';
import { assignListenPorts } from './listen-ports.ts';
import type {
  Diagnostic,
  ExportModel,
  FabricModel,
  ImportModel,
  LoadResult,
  PeerModel,
  PolicyModel,
  SourceRef,
} from './model.ts';

export interface LoadLimits {
  maxFiles: number;
  maxFileBytes: number;
  maxTotalBytes: number;
  maxDocumentsPerFile: number;
}

export const DEFAULT_LIMITS: LoadLimits = {
  maxFiles: 200_000,
  maxFileBytes: 4 * 1024 * 1024,
  maxTotalBytes: 512 * 1024 * 1024,
  maxDocumentsPerFile: 10_000,
};

export interface LoadOptions {
  limits?: Partial<LoadLimits>;
  /** Reuses the parse of files whose text did not change since the last load with this cache. */
  cache?: ParseCache;
}

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

interface FileEntry {
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

/** Every field name any kind knows: the vocabulary for "did you mean" hints. */
const KNOWN_FIELDS = [
  'apiVersion', 'kind', 'metadata', 'spec', 'name', 'namespace', 'labels', 'annotations',
  'caCertificates', 'revoked', 'serials', 'fingerprints', 'repo', 'requireSignedCommits', 'allowedSigningKeys',
  'type', 'publicKey', 'gateways', 'host', 'port', 'targetPort', 'sources', 'exportName', 'exportNamespace',
  'peer', 'lbScheme', 'action', 'from', 'to', 'workloadSets', 'workloadSelector', 'matchLabels',
  'matchExpressions', 'key', 'operator', 'values', 'peers', 'status', ...SERVER_METADATA_FIELDS,
];

const PRIVATE_KEY = /-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY-----|PuTTY-User-Key-File|-----BEGIN PGP PRIVATE KEY BLOCK-----/;
/** Import annotation choosing session affinity (Kubernetes' Service sessionAffinity values). */
export const SESSION_AFFINITY = 'clusterlink.net/session-affinity';
/** ClusterLink's Import label asking to merge the import into an existing Service (v1alpha1.LabelImportMerge). */
export const IMPORT_MERGE = 'import.clusterlink.net/merge';
const POLICY_ATTRIBUTE_PREFIXES = ['peer.clusterlink.net/', 'client.clusterlink.net/', 'export.clusterlink.net/'];
const DIR_KIND: Record<string, Kind[]> = {
  exports: ['Export'],
  imports: ['Import'],
  policies: ['AccessPolicy', 'PrivilegedAccessPolicy'],
};

/** A file's text; line starts are computed only when a position is asked for. */
type FileText = { path: string; text: string; lineStarts?: number[] };

/**
 * One YAML document: its plain data, where it starts, and its full syntax tree (with positions)
 * built on first use. Valid files never need the tree, so most of a large fabric is parsed once
 * by the fast parser; errors and cross-reference diagnostics build it for the files involved only.
 */
interface ParsedDoc {
  data: unknown;
  start: SourceRef;
  readonly doc: Document.Parsed;
}

interface ParsedObject {
  kind: Kind;
  file: FileText;
  readonly doc: Document.Parsed;
  source: SourceRef;
  data: unknown;
}

class Diagnostics {
  readonly errors: Diagnostic[] = [];
  readonly warnings: Diagnostic[] = [];
  add(d: Diagnostic): void {
    (d.severity === 'error' ? this.errors : this.warnings).push(d);
  }
  error(at: SourceRef, code: string, path: string, message: string, hint: string): void {
    this.add({ severity: 'error', file: at.file, line: at.line, column: at.column, path, message, hint, code });
  }
  warn(at: SourceRef, code: string, path: string, message: string, hint: string): void {
    this.add({ severity: 'warning', file: at.file, line: at.line, column: at.column, path, message, hint, code });
  }
}

function at(file: string, line = 1, column = 1): SourceRef {
  return { file, line, column };
}

function position(file: FileText, offset: number): SourceRef {
  if (!file.lineStarts) {
    const starts = [0];
    for (let i = file.text.indexOf('\n'); i !== -1; i = file.text.indexOf('\n', i + 1)) starts.push(i + 1);
    file.lineStarts = starts;
  }
  const starts = file.lineStarts;
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((starts[mid] as number) <= offset) lo = mid;
    else hi = mid - 1;
  }
  return { file: file.path, line: lo + 1, column: offset - (starts[lo] as number) + 1 };
}

/** Finds the YAML node at a field path; with `key`, the position of the last key itself. */
function nodeAt(doc: Document.Parsed, path: ReadonlyArray<PropertyKey>, key = false): { node: YamlNode | null; keyNode: YamlNode | null } {
  let node: unknown = doc.contents;
  let keyNode: YamlNode | null = null;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) return { node: node as YamlNode, keyNode: null };
      keyNode = isScalar(pair.key) ? pair.key : null;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) return { node: node as YamlNode, keyNode: null };
      node = item;
      keyNode = null;
    } else {
      break;
    }
  }
  if (key && keyNode) return { node: keyNode, keyNode };
  return { node: (node as YamlNode | null) ?? null, keyNode };
}

function positionOf(obj: { file: FileText; doc: Document.Parsed; source: SourceRef }, path: ReadonlyArray<PropertyKey>, key = false): SourceRef {
  const { node } = nodeAt(obj.doc, path, key);
  const range = node && 'range' in node ? (node.range as [number, number, number] | undefined) : undefined;
  return range ? position(obj.file, range[0]) : obj.source;
}

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? String(seg) : `.${String(seg)}`;
  return out;
}

/** A suggestion only when it is plausibly a typo of what was written, not merely the nearest name. */
function closeEnough(written: string, candidate: string): string | null {
  return distance(written, candidate) <= Math.max(2, Math.floor(written.length / 3)) ? candidate : null;
}

function suggest(name: string): string | null {
  const best = closest(name, KNOWN_FIELDS);
  return distance(name, best) <= Math.max(2, Math.floor(name.length / 3)) ? best : null;
}

function decode(bytes: Uint8Array | string): string {
  return typeof bytes === 'string' ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}

/** Reports zod issues at the exact YAML position of the offending field. */
function reportSchemaIssues(obj: { file: FileText; doc: Document.Parsed; source: SourceRef }, kind: string, issues: z.core.$ZodIssue[], diags: Diagnostics): void {
  for (const issue of issues) {
    const path = issue.path as PropertyKey[];
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) {
        const fieldPath = [...path, k];
        const s = suggest(k);
        diags.error(
          positionOf(obj, fieldPath, true),
          'unknown-field',
          formatPath(fieldPath),
          `unknown field "${k}" in ${kind}${path.length ? ` ${formatPath(path)}` : ''}`,
          s ? `did you mean "${s}"?` : `remove it; see schema/json/${kind}.json for the fields ${kind} accepts`,
        );
      }
      continue;
    }
    // zod 4 does not report the input by default: a field is missing when the document lacks it.
    const missing = issue.code === 'invalid_type' && !obj.doc.hasIn(path);
    const where = missing ? (path.length > 1 ? positionOf(obj, path.slice(0, -1), true) : obj.source) : positionOf(obj, path);
    diags.error(
      where,
      missing ? 'missing-field' : 'invalid-field',
      formatPath(path),
      missing ? `missing required field "${formatPath(path)}" in ${kind}` : `${formatPath(path) || kind}: ${issue.message}`,
      missing ? `add ${formatPath(path)}; see schema/json/${kind}.json` : hintFor(issue),
    );
  }
}

function hintFor(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_value' && 'values' in issue) return `use one of: ${(issue.values as unknown[]).map(String).join(', ')}`;
  if (issue.code === 'invalid_type') return `expected ${issue.expected}`;
  return 'fix the value as the message says';
}

// YAML the fast parser may read exactly as the reference one does: no anchors, aliases, tags,
// directives, merge keys or explicit document ends. Anything else takes the reference path.
const NEEDS_REFERENCE_PARSER = /[&*!%]|<<|^\.\.\.|^---[ \t]*[^\s#]/m;

/** Start of each document's first content line, or null when the layout is not a simple one. */
function simpleDocumentStarts(file: FileText, count: number): SourceRef[] | null {
  if (count === 1 && !file.text.startsWith('---') && !file.text.includes('\n---')) {
    // One document without markers (the common case): it starts at the first content line.
    const m = /^[ \t]*[^\s#]/m.exec(file.text);
    return [position(file, m ? m.index : 0)];
  }
  const starts: number[] = [];
  let current: number | null = null; // content offset of the document being read
  let marker: number | null = null; // offset of its `---`, if any
  let opened = false;
  const lines = file.text.split('\n');
  let offset = 0;
  for (const line of lines) {
    const trimmed = line.trimStart();
    if (/^---\s*(#.*)?$/.test(line)) {
      if (opened || current !== null) starts.push(current ?? marker ?? offset);
      opened = true;
      current = null;
      marker = offset;
    } else if (current === null && trimmed !== '' && !trimmed.startsWith('#')) {
      current = offset;
      opened = true;
    }
    offset += line.length + 1;
  }
  if (opened) starts.push(current ?? marker ?? 0);
  if (starts.length !== count) return null;
  return starts.map((o) => position(file, o));
}

/** Lazily built reference syntax trees of one file, shared by its documents. */
class ReferenceTree {
  private tree: Document.Parsed[] | null = null;
  constructor(private readonly text: string) {}
  get docs(): Document.Parsed[] {
    if (!this.tree) {
      const parsed = parseAllDocuments(this.text, { uniqueKeys: true, prettyErrors: false });
      this.tree = Array.isArray(parsed) ? parsed : [];
    }
    return this.tree;
  }
}

/** A document read by a fast parser: its syntax tree is built from the file on first use. */
class FastDoc implements ParsedDoc {
  constructor(
    readonly data: unknown,
    readonly start: SourceRef,
    private readonly tree: ReferenceTree,
    private readonly index: number,
  ) {}
  get doc(): Document.Parsed {
    return this.tree.docs[this.index] as Document.Parsed;
  }
}

// ---- The plain-YAML parser: block mappings and sequences of simple plain scalars, one document.
// It gives up (returns undefined) on anything else (quotes, multi-line or spaced scalars, tabs,
// anchors, tags, comments after values, non-ASCII, duplicate keys...), which then takes the js-yaml
// path. What it accepts it reads exactly as js-yaml's CORE_SCHEMA (and the yaml library) do.
const BAIL: unique symbol = Symbol('bail');
const PLAIN_KEY = /^[A-Za-z][A-Za-z0-9._/-]*$/;
const PLAIN_SCALAR = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;
const DECIMAL = /^(?:0|[1-9][0-9]{0,14})$/;
const PRINTABLE = /^[\x20-\x7e\n]*$/;
const RESERVED: Record<string, boolean | null> = { null: null, Null: null, NULL: null, true: true, True: true, TRUE: true, false: false, False: false, FALSE: false };

function plainScalar(v: string): unknown {
  if (!PLAIN_SCALAR.test(v)) throw BAIL;
  const c = v.charCodeAt(0);
  if (c >= 48 && c <= 57) {
    if (DECIMAL.test(v)) return Number(v);
    // Two dots or more is neither an int nor a float in either parser (e.g. an IPv4 address).
    if (v.indexOf('.') !== v.lastIndexOf('.')) return v;
    throw BAIL;
  }
  if (Object.hasOwn(RESERVED, v)) throw BAIL;
  return v;
}

function valueScalar(v: string): unknown {
  if (v.charCodeAt(0) === 91 /* [ */) {
    if (v.charCodeAt(v.length - 1) !== 93) throw BAIL;
    const inner = v.slice(1, -1);
    if (inner.trim() === '') {
      if (inner !== '') throw BAIL;
      return [];
    }
    return inner.split(',').map((item) => plainScalar(item.trim()));
  }
  if (v === '{}') return {};
  return plainScalar(v);
}

/** The single document of `text`, and the 1-based line its content starts on; undefined to bail. */
function fastYaml(text: string): { data: unknown; line: number } | undefined {
  if (!PRINTABLE.test(text)) return undefined;
  const indents: number[] = [];
  const contents: string[] = [];
  let firstLine = 0;
  let lineNo = 0;
  for (let start = 0; start <= text.length; lineNo++) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    const lineStart = start;
    start = end + 1;
    let p = lineStart;
    while (p < end && text.charCodeAt(p) === 32) p++;
    if (p === end) continue; // blank
    if (text.charCodeAt(p) === 35 /* # */) continue; // comment line
    if (text.charCodeAt(end - 1) === 32) return undefined;
    if (contents.length === 0) firstLine = lineNo + 1;
    indents.push(p - lineStart);
    contents.push(text.slice(p, end));
  }
  if (contents.length === 0 || indents[0] !== 0) return undefined;
  const parser = new PlainBlockParser(indents, contents);
  try {
    if (parser.isItem(0)) return undefined;
    const data = parser.map(0);
    if (parser.i !== contents.length) return undefined;
    return { data, line: firstLine };
  } catch (err) {
    if (err === BAIL) return undefined;
    throw err;
  }
}

/** Block structure over content lines (indent, text after the indent); throws BAIL when unsure. */
class PlainBlockParser {
  i = 0;
  private readonly n: number;
  constructor(
    private readonly indents: number[],
    private readonly contents: string[],
  ) {
    this.n = contents.length;
  }
  isItem(k: number): boolean {
    const c = this.contents[k] as string;
    return c.charCodeAt(0) === 45 /* - */ && (c.length === 1 || c.charCodeAt(1) === 32);
  }
  node(ind: number): unknown {
    return this.isItem(this.i) ? this.seq(ind) : this.map(ind);
  }
  map(ind: number): Record<string, unknown> {
    const { indents, contents, n } = this;
    const obj: Record<string, unknown> = {};
    while (this.i < n && indents[this.i] === ind && !this.isItem(this.i)) {
      const c = contents[this.i] as string;
      const colon = c.indexOf(':');
      if (colon <= 0) throw BAIL;
      const key = c.slice(0, colon);
      if (!PLAIN_KEY.test(key) || Object.hasOwn(RESERVED, key) || Object.hasOwn(obj, key)) throw BAIL;
      this.i++;
      let value: unknown;
      if (colon === c.length - 1) {
        const next = this.i < n ? (indents[this.i] as number) : -1;
        if (next > ind) value = this.node(next);
        else if (next === ind && this.isItem(this.i)) value = this.seq(ind);
        else value = null;
      } else {
        if (c.charCodeAt(colon + 1) !== 32 || c.charCodeAt(colon + 2) === 32) throw BAIL;
        value = valueScalar(c.slice(colon + 2));
      }
      obj[key] = value;
    }
    if (this.i < n && ((indents[this.i] as number) > ind || (indents[this.i] === ind && this.isItem(this.i)))) throw BAIL;
    return obj;
  }
  seq(ind: number): unknown[] {
    const { indents, contents, n } = this;
    const arr: unknown[] = [];
    while (this.i < n && indents[this.i] === ind && this.isItem(this.i)) {
      const rest = (contents[this.i] as string).slice(2);
      if (rest === '' || rest.charCodeAt(0) === 32 || rest.charCodeAt(0) === 45 || rest.charCodeAt(0) === 35) throw BAIL;
      const colon = rest.indexOf(':');
      if (colon > 0 && (colon === rest.length - 1 || rest.charCodeAt(colon + 1) === 32)) {
        // "- key: value": a mapping whose keys sit two columns in.
        contents[this.i] = rest;
        indents[this.i] = ind + 2;
        arr.push(this.map(ind + 2));
      } else {
        arr.push(valueScalar(rest));
        this.i++;
      }
    }
    if (this.i < n && (indents[this.i] as number) > ind) throw BAIL;
    return arr;
  }
}

function parseFile(path: string, text: string, limits: LoadLimits, diags: Diagnostics): { file: FileText; docs: ParsedDoc[] } | null {
  const file: FileText = { path, text };
  const tree = new ReferenceTree(text);
  if (!NEEDS_REFERENCE_PARSER.test(text)) {
    if (!text.startsWith('---') && !text.includes('\n---')) {
      const fast = limits.maxDocumentsPerFile >= 1 ? fastYaml(text) : undefined;
      if (fast) return { file, docs: [new FastDoc(fast.data, { file: path, line: fast.line, column: 1 }, tree, 0)] };
    }
    let datas: unknown[] | null = null;
    try {
      // CORE_SCHEMA: YAML 1.2 core types only (no timestamps, no merge keys), as the reference parser reads them.
      datas = jsyaml.loadAll(text, undefined, { schema: jsyaml.CORE_SCHEMA, json: false });
    } catch {
      datas = null; // the reference parser reports the error with its position
    }
    const starts = datas ? simpleDocumentStarts(file, datas.length) : null;
    if (datas && starts) {
      if (datas.length > limits.maxDocumentsPerFile) {
        diags.error(at(path), 'too-many-documents', '', `${datas.length} YAML documents in one file (limit ${limits.maxDocumentsPerFile})`, 'split the file');
        return null;
      }
      return { file, docs: datas.map((data, i) => new FastDoc(data, starts[i] as SourceRef, tree, i)) };
    }
  }
  const docs = tree.docs;
  if (docs.length > limits.maxDocumentsPerFile) {
    diags.error(at(path), 'too-many-documents', '', `${docs.length} YAML documents in one file (limit ${limits.maxDocumentsPerFile})`, 'split the file');
    return null;
  }
  let ok = true;
  for (const doc of docs) {
    for (const e of doc.errors) {
      ok = false;
      const p = position(file, e.pos[0]);
      diags.error(p, 'yaml-syntax', '', `YAML syntax error: ${e.message.split('\n')[0]}`, 'fix the YAML syntax (indentation, quoting, duplicate keys)');
    }
  }
  if (!ok) return null;
  const out: ParsedDoc[] = [];
  for (const doc of docs) {
    let data: unknown;
    try {
      data = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      // Unresolved aliases and alias bombs (billion laughs) surface here, not as syntax errors.
      diags.error(docStart(file, doc), 'yaml-alias', '', `YAML aliases: ${(err as Error).message.split('\n')[0]}`, 'write the values out instead of using anchors and aliases (*name)');
      return null;
    }
    out.push({ data, start: docStart(file, doc), doc });
  }
  return { file, docs: out };
}

/** parseFile + parseObject for one file, through its cache entry when given (diagnostics are replayed). */
function parseObjects(path: string, text: string, allowed: Kind[], dirHint: string, limits: LoadLimits, diags: Diagnostics, entry: FileEntry | null): ParsedObject[] | null {
  if (entry?.parsed) {
    for (const d of entry.parsed.errors) diags.add(d);
    for (const d of entry.parsed.warnings) diags.add(d);
    return entry.parsed.objects;
  }
  const local = entry ? new Diagnostics() : diags;
  const parsed = parseFile(path, text, limits, local);
  const objects: ParsedObject[] | null = parsed ? [] : null;
  if (parsed) {
    for (const d of parsed.docs) {
      const o = parseObject(parsed.file, d, allowed, dirHint, local);
      if (o) objects!.push(o);
    }
  }
  if (entry) {
    for (const d of local.errors) diags.add(d);
    for (const d of local.warnings) diags.add(d);
    entry.parsed = { objects, errors: local.errors, warnings: local.warnings };
  }
  return objects;
}

function docStart(file: FileText, doc: Document.Parsed): SourceRef {
  const range = doc.contents && 'range' in doc.contents ? doc.contents.range : doc.range;
  return position(file, range ? range[0] : 0);
}

interface Classified {
  kind: 'fabric' | 'peer' | 'cert' | 'objects' | 'ignored' | 'unknown-peer-file';
  peer?: string;
  dir?: string;
}

const IGNORED: Classified = { kind: 'ignored' };
const FABRIC: Classified = { kind: 'fabric' };

function classify(path: string, parts: string[]): Classified {
  if (path === 'fabric.yaml' || path === 'fabric.yml') return FABRIC;
  if (parts[0] !== 'peers') return IGNORED;
  const peer = parts[1];
  if (peer === undefined || parts.length < 3) return IGNORED;
  if (parts.length === 3 && (parts[2] === 'peer.yaml' || parts[2] === 'peer.yml')) return { kind: 'peer', peer };
  if (parts.length === 3 && parts[2] === 'peer.pem') return { kind: 'cert', peer };
  if (parts.length === 3 && /^(README|CODEOWNERS|OWNERS)(\.md)?$/i.test(parts[2] ?? '')) return IGNORED;
  // ClusterLink ships policies as JSON, which is YAML: read both.
  if (parts.length === 4 && parts[2] && DIR_KIND[parts[2]] && /\.(ya?ml|json)$/.test(parts[3] ?? '')) return { kind: 'objects', peer, dir: parts[2] };
  if (parts.length === 4 && parts[2] && DIR_KIND[parts[2]] && /^README(\.md)?$/i.test(parts[3] ?? '')) return IGNORED;
  return { kind: 'unknown-peer-file', peer };
}

function lineOfOffset(text: string, offset: number): SourceRef {
  let line = 1;
  let last = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    last = i + 1;
  }
  return { file: '', line, column: offset - last + 1 };
}

/** A document's file, start and (lazily) syntax tree: what positions are computed from. */
class DocRef {
  constructor(
    readonly file: FileText,
    readonly source: SourceRef,
    private readonly parsed: ParsedDoc,
  ) {}
  get doc(): Document.Parsed {
    return this.parsed.doc;
  }
}

class CheckedObject extends DocRef implements ParsedObject {
  constructor(
    readonly kind: Kind,
    file: FileText,
    source: SourceRef,
    readonly data: unknown,
    parsed: ParsedDoc,
  ) {
    super(file, source, parsed);
  }
}

// ---- Fast schema checks for the common kinds. Each returns exactly what the zod schema's parse
// returns (keys in schema order, absent optional keys absent) when the data is valid, and undefined
// when it is not or when unsure: zod then decides and reports.
const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;
const NO: unique symbol = Symbol('no');

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;

interface Field {
  key: string;
  optional: boolean;
  check: (x: unknown) => unknown;
}
const req = (key: string, check: (x: unknown) => unknown): Field => ({ key, optional: false, check });
const opt = (key: string, check: (x: unknown) => unknown): Field => ({ key, optional: true, check });

/**
 * A strict object: no unknown keys, required keys present. zod returns a copy with the keys in
 * schema order; when the input already is exactly that copy (keys in schema order, every value
 * returned as is), the input itself is returned and nothing is allocated.
 */
function vObject(v: unknown, fields: readonly Field[]): Record<string, unknown> {
  if (!isRecord(v)) throw NO;
  let canonical = true;
  let last = -1;
  for (const k in v) {
    let idx = -1;
    for (let j = 0; j < fields.length; j++) {
      if (fields[j]!.key === k) {
        idx = j;
        break;
      }
    }
    if (idx < 0) throw NO;
    if (idx < last) canonical = false;
    last = idx;
  }
  let out: Record<string, unknown> | null = canonical ? null : {};
  for (const f of fields) {
    const x = v[f.key];
    if (x === undefined) {
      if (!f.optional) throw NO;
      continue;
    }
    const r = f.check(x);
    if (out === null && r !== x) {
      // Not the input after all: copy the fields before this one (all returned as they were).
      out = {};
      for (const g of fields) {
        if (g === f) break;
        const y = v[g.key];
        if (y !== undefined) out[g.key] = y;
      }
    }
    if (out !== null) out[f.key] = r;
  }
  return out ?? v;
}
function vLabel(v: unknown): string {
  if (typeof v !== 'string' || v.length > 63 || !DNS1123.test(v)) throw NO;
  return v;
}
function vPort(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) throw NO;
  return v;
}
function vString(v: unknown, min = 0, max = Infinity): string {
  if (typeof v !== 'string' || v.length < min || v.length > max) throw NO;
  return v;
}
const vAnyString = (v: unknown): string => vString(v);
/** A record of strings: zod copies it as it is, so the input itself is returned. */
function vRecord(v: unknown, key: (k: string) => void, value: (x: unknown) => string): Record<string, string> {
  if (!isRecord(v)) throw NO;
  for (const k of Object.keys(v)) {
    if (k === '__proto__') throw NO;
    key(k);
    value(v[k]);
  }
  return v as Record<string, string>;
}
/** An array; the input itself when every item is returned as is. */
function vArray(v: unknown, item: (x: unknown) => unknown, min = 0): unknown[] {
  if (!Array.isArray(v) || v.length < min) throw NO;
  let out: unknown[] | null = null;
  for (let i = 0; i < v.length; i++) {
    const x: unknown = v[i];
    const r = item(x);
    if (out === null && r !== x) out = v.slice(0, i);
    if (out !== null) out.push(r);
  }
  return out ?? v;
}
function labelKeyCheck(k: string): void {
  if (k.length > 317 || !LABEL_KEY.test(k)) throw NO;
}
function labelValueCheck(x: unknown): string {
  const s = vString(x, 0, 63);
  if (!LABEL_VALUE.test(s)) throw NO;
  return s;
}
const selectorKeyCheck = (k: string): void => void vString(k, 1, 512);
const vLabels = (v: unknown): Record<string, string> => vRecord(v, labelKeyCheck, labelValueCheck);
const vStrings = (v: unknown): unknown[] => vArray(v, vAnyString);

const METADATA: Field[] = [req('name', vLabel), opt('namespace', vLabel), opt('labels', vLabels), opt('annotations', (v) => vRecord(v, () => undefined, vAnyString))];
const vOperator = (v: unknown): unknown => {
  if (v !== 'In' && v !== 'NotIn' && v !== 'Exists' && v !== 'DoesNotExist') throw NO;
  return v;
};
const REQUIREMENT: Field[] = [req('key', (v) => vString(v, 1, 512)), req('operator', vOperator), opt('values', vStrings)];
const SELECTOR: Field[] = [opt('matchLabels', (v) => vRecord(v, selectorKeyCheck, vAnyString)), opt('matchExpressions', (v) => vArray(v, (e) => vObject(e, REQUIREMENT)))];
const WORKLOADS: Field[] = [opt('workloadSets', vStrings), opt('workloadSelector', (v) => vObject(v, SELECTOR))];
const vWorkloads = (v: unknown): unknown[] => vArray(v, (w) => vObject(w, WORKLOADS));
const GATEWAY: Field[] = [req('host', (v) => vString(v, 1, 253)), req('port', vPort)];
const SOURCE: Field[] = [req('exportName', vLabel), req('exportNamespace', vLabel), req('peer', vLabel)];
const vAction = (v: unknown): unknown => {
  if (v !== 'allow' && v !== 'deny') throw NO;
  return v;
};
const vLbScheme = (v: unknown): unknown => {
  if (v !== 'round-robin' && v !== 'random' && v !== 'static') throw NO;
  return v;
};
const POLICY_SPEC: Field[] = [req('action', vAction), req('from', vWorkloads), req('to', vWorkloads)];
const SPECS: Partial<Record<Kind, Field[]>> = {
  Peer: [req('gateways', (v) => vArray(v, (g) => vObject(g, GATEWAY), 1))],
  Export: [opt('host', (v) => vString(v, 1, 253)), req('port', vPort)],
  Import: [req('port', vPort), opt('targetPort', vPort), req('sources', (v) => vArray(v, (x) => vObject(x, SOURCE), 1)), opt('lbScheme', vLbScheme)],
  AccessPolicy: POLICY_SPEC,
  PrivilegedAccessPolicy: POLICY_SPEC,
};
const TOP: Partial<Record<Kind, Field[]>> = Object.fromEntries(
  Object.entries(SPECS).map(([kind, spec]) => [
    kind,
    [
      req('apiVersion', (v) => {
        if (v !== API_VERSION) throw NO;
        return v;
      }),
      req('kind', (v) => {
        if (v !== kind) throw NO;
        return v;
      }),
      req('metadata', (v) => vObject(v, METADATA)),
      req('spec', (v) => vObject(v, spec)),
    ],
  ]),
);

function fastValidate(kind: Kind, data: Record<string, unknown>): unknown {
  const top = TOP[kind];
  if (!top) return undefined;
  try {
    return vObject(data, top);
  } catch (err) {
    if (err === NO) return undefined;
    throw err;
  }
}

/** Parses one YAML document into a checked object of the expected kinds. */
function parseObject(file: FileText, parsed: ParsedDoc, allowed: Kind[], dirHint: string, diags: Diagnostics): ParsedObject | null {
  const source = parsed.start;
  const data = parsed.data;
  if (data === null || data === undefined) return null; // an empty document (e.g. trailing ---)
  if (typeof data !== 'object' || Array.isArray(data)) {
    diags.error(source, 'not-an-object', '', 'a document must be a Kubernetes-style object (apiVersion, kind, metadata, spec)', 'start the document with apiVersion: clusterlink.net/v1alpha1 and kind: ...');
    return null;
  }
  const rec = data as Record<string, unknown>;
  const kind = rec.kind;
  const allowedKind = typeof kind === 'string' && allowed.includes(kind as Kind);
  if (allowedKind && rec.apiVersion === API_VERSION) {
    // The common case first, without allocating anything for error reports.
    const fast = fastValidate(kind as Kind, rec);
    if (fast !== undefined) return new CheckedObject(kind as Kind, file, source, fast, parsed);
  }
  const base = new DocRef(file, source, parsed);
  if (typeof kind !== 'string' || !(KINDS as string[]).includes(kind)) {
    const s = typeof kind === 'string' ? closest(kind, KINDS) : null;
    diags.error(positionOf(base, ['kind']), 'unknown-kind', 'kind', `unknown kind ${JSON.stringify(kind ?? null)}`, s && distance(String(kind), s) <= 3 ? `did you mean "${s}"?` : `use one of: ${allowed.join(', ')}`);
    return null;
  }
  if (rec.apiVersion !== API_VERSION) {
    diags.error(positionOf(base, ['apiVersion']), 'bad-api-version', 'apiVersion', `apiVersion must be ${API_VERSION}, got ${JSON.stringify(rec.apiVersion ?? null)}`, `set apiVersion: ${API_VERSION}`);
    return null;
  }
  if (!allowed.includes(kind as Kind)) {
    diags.error(positionOf(base, ['kind']), 'wrong-directory', 'kind', `a ${kind} does not belong in ${dirHint}`, `move it to ${kindHome(kind as Kind)}`);
    return null;
  }
  const result = kindSchemas[kind as Kind].safeParse(data);
  if (!result.success) {
    reportSchemaIssues(base, kind, result.error.issues, diags);
    return null;
  }
  noteIgnoredFields(base, rec, diags);
  return new CheckedObject(kind as Kind, file, source, result.data, parsed);
}

/** `status:` and server-set metadata (kubectl get -o yaml output) are accepted; say once per object that they mean nothing here. */
function noteIgnoredFields(obj: DocRef, rec: Record<string, unknown>, diags: Diagnostics): void {
  const meta = isRecord(rec.metadata) ? rec.metadata : {};
  const ignored = [...(rec.status !== undefined ? ['status'] : []), ...SERVER_METADATA_FIELDS.filter((f) => meta[f] !== undefined).map((f) => `metadata.${f}`)];
  if (ignored.length === 0) return;
  const first = ignored[0]!;
  diags.warn(
    positionOf(obj, first.split('.'), true),
    'ignored-server-fields',
    first,
    `${ignored.join(', ')} ${ignored.length === 1 ? 'is' : 'are'} set by a Kubernetes API server and ignored here`,
    'nothing to do (kubectl get -o yaml output may be committed as is); delete them to silence this note',
  );
}

function kindHome(kind: Kind): string {
  switch (kind) {
    case 'Fabric':
      return 'fabric.yaml at the repository root';
    case 'Peer':
      return 'peers/<peer>/peer.yaml';
    case 'Export':
      return 'peers/<peer>/exports/';
    case 'Import':
      return 'peers/<peer>/imports/';
    default:
      return 'peers/<peer>/policies/';
  }
}

const byNsName = <T extends { namespace: string | null; name: string }>(a: T, b: T): number =>
  (a.namespace ?? '').localeCompare(b.namespace ?? '') || a.name.localeCompare(b.name);

interface PeerDraft {
  name: string;
  peerYaml: ParsedObject | null;
  certificatePem: string | null;
  exports: ExportModel[];
  imports: ImportModel[];
  policies: PolicyModel[];
  objects: Map<string, SourceRef>;
  /** The object each import was read from: positions of its sources for cross-reference errors. */
  importObjects: Map<ImportModel, ParsedObject>;
}

const newDraft = (name: string): PeerDraft => ({ name, peerYaml: null, certificatePem: null, exports: [], imports: [], policies: [], objects: new Map(), importObjects: new Map() });

/** One pass over files, in path order: where diagnostics go, the peer drafts, the Fabric object. */
interface Pass {
  limits: LoadLimits;
  diags: Diagnostics;
  draft(name: string): PeerDraft;
  fabricObj: ParsedObject | null;
  sawFabricFile: boolean;
}

const PEER_DIR_NAME = PEER_NAME;
const TEXTUAL_NAME = /\.(ya?ml|pem|key|crt|txt|md|json|env)$/i;

const byteSize = (bytes: Uint8Array | string): number => (typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.byteLength);
const upperSize = (bytes: Uint8Array | string): number => (typeof bytes === 'string' ? bytes.length * 3 : bytes.byteLength);
/** Every match of PRIVATE_KEY contains one of these: a cheap filter before the regex. */
const mayHoldKey = (text: string): boolean => text.includes('PRIVATE KEY') || text.includes('PuTTY-User-Key-File');

/**
 * The per-file step of a load. Returns false where the file was skipped by an early check
 * (which, as before, also skips the repository size check after it).
 */
function processFile(pass: Pass, path: string, bytes: Uint8Array | string, entry: FileEntry | null): boolean {
  const { diags, limits } = pass;
  const parts = path.split('/');
  if (path.startsWith('/') || parts.some((s) => s === '..' || s === '')) {
    diags.error(at(path), 'bad-path', '', `path escapes the repository or is not normalised: ${path}`, 'use relative paths inside the repository');
    return false;
  }
  let size = entry?.size ?? null;
  if (upperSize(bytes) > limits.maxFileBytes) {
    size ??= byteSize(bytes);
    if (size > limits.maxFileBytes) {
      diags.error(at(path), 'file-too-large', '', `file is ${size} bytes (limit ${limits.maxFileBytes})`, 'split it into smaller files');
      return false;
    }
  }
  const cls = classify(path, parts);
  const isTextual = cls.kind !== 'ignored' || TEXTUAL_NAME.test(path) || (size ??= byteSize(bytes)) < 1024 * 1024;
  if (entry && size !== null) entry.size = size;
  let text = '';
  if (isTextual) text = entry ? (entry.text ??= decode(bytes)) : decode(bytes);
  // A file whose exact content passed the private-key scan before needs no second scan.
  if (!entry?.keyFree) {
    const keyMatch = mayHoldKey(text) ? PRIVATE_KEY.exec(text) : null;
    if (keyMatch) {
      const p = lineOfOffset(text, keyMatch.index);
      diags.error({ ...p, file: path }, 'private-key', '', 'this file contains a private key: private keys never belong in the fabric repository', 'delete it from the repository (and its history), and keep the key only on the peer that owns it; rotate it, it has been exposed');
      return false;
    }
    if (entry) entry.keyFree = true;
  }
  if (cls.peer !== undefined && !PEER_DIR_NAME.test(cls.peer)) {
    diags.error(at(path), 'bad-peer-name', '', `peer directory "${cls.peer}" is not a peer name (a DNS-1123 subdomain of at most 63 characters)`, 'rename the directory: lower-case letters, digits, "-" and "." (e.g. cluster17.us-east), at most 63 characters');
    return false;
  }
  switch (cls.kind) {
    case 'ignored':
      if (holdsFabricObject(path, text, limits)) misplaced(diags, path, text);
      break;
    case 'unknown-peer-file':
      if (holdsFabricObject(path, text, limits)) misplaced(diags, path, text);
      else diags.warn(at(path), 'unknown-file', '', `file is not part of the fabric layout and is ignored`, 'objects go in peers/<peer>/{peer.yaml,peer.pem,exports/,imports/,policies/}');
      break;
    case 'cert':
      pass.draft(cls.peer!).certificatePem = text;
      break;
    case 'fabric':
    case 'peer':
    case 'objects': {
      pass.sawFabricFile ||= cls.kind === 'fabric';
      const allowed: Kind[] = cls.kind === 'fabric' ? ['Fabric'] : cls.kind === 'peer' ? ['Peer'] : DIR_KIND[cls.dir!]!;
      const dirHint = cls.kind === 'objects' ? `peers/${cls.peer}/${cls.dir}/` : path;
      const objects = parseObjects(path, text, allowed, dirHint, limits, diags, entry);
      if (!objects) break;
      if (cls.kind === 'fabric') {
        if (objects.length > 1 || pass.fabricObj) diags.error(objects[1]?.source ?? at(path), 'duplicate-fabric', '', 'more than one Fabric object', 'keep exactly one Fabric in fabric.yaml');
        pass.fabricObj ??= objects[0] ?? null;
      } else if (cls.kind === 'peer') {
        const d = pass.draft(cls.peer!);
        if (objects.length > 1) diags.error(objects[1]!.source, 'duplicate-peer', '', 'more than one Peer object in peer.yaml', 'keep exactly one Peer per peer.yaml');
        const peerObj = objects[0];
        if (peerObj) {
          const name = (peerObj.data as z.infer<typeof kindSchemas.Peer>).metadata.name;
          if (name !== cls.peer) {
            diags.error(positionOf(peerObj, ['metadata', 'name']), 'ownership', 'metadata.name', `Peer "${name}" is defined in peers/${cls.peer}/: a peer's directory must carry its name`, `set metadata.name: ${cls.peer}, or move the file to peers/${name}/`);
          } else {
            d.peerYaml = peerObj;
          }
        }
      } else {
        for (const obj of objects) addObject(pass.draft(cls.peer!), obj, diags);
      }
      break;
    }
  }
  return true;
}

/**
 * Whether a file outside the layout holds a clusterlink.net object (a policy saved next to the
 * policies/ folder, a `.yml.bak`, a top-level policies/ folder...): loading nothing from it silently
 * would leave, say, a deny policy quietly unenforced, so it is an error.
 */
function holdsFabricObject(path: string, text: string, limits: LoadLimits): boolean {
  if (!/\.(ya?ml|json)$/i.test(path) || !text.includes(API_VERSION)) return false;
  const parsed = parseFile(path, text, limits, new Diagnostics());
  return parsed !== null && parsed.docs.some((d) => isRecord(d.data) && d.data.apiVersion === API_VERSION && (KINDS as unknown[]).includes(d.data.kind));
}

function misplaced(diags: Diagnostics, path: string, text: string): void {
  const p = lineOfOffset(text, text.indexOf(API_VERSION));
  diags.error({ ...p, file: path }, 'misplaced-object', '', `this file holds a ${API_VERSION} object, but it is not where the fabric layout reads objects: it would be ignored`, 'move it to fabric.yaml or peers/<peer>/{peer.yaml,exports/,imports/,policies/} (.yaml, .yml or .json)');
}

/** A draft's PeerModel (with its warnings), or the diagnostic saying its peer.yaml is missing. */
function buildPeer(d: PeerDraft): { model: PeerModel; missing: null; warnings: Diagnostic[] } | { model: null; missing: Diagnostic } {
  if (!d.peerYaml) {
    const anyObject = d.exports[0]?.source ?? d.imports[0]?.source ?? d.policies[0]?.source;
    const missing: Diagnostic = {
      severity: 'error',
      file: `peers/${d.name}/peer.yaml`,
      line: 1,
      column: 1,
      path: '',
      message: `peers/${d.name}/ has no peer.yaml${anyObject ? ` (objects such as ${anyObject.file} need it)` : ''}`,
      hint: `add peers/${d.name}/peer.yaml with kind: Peer and metadata.name: ${d.name}`,
      code: 'missing-peer',
    };
    return { model: null, missing };
  }
  const spec = d.peerYaml.data as z.infer<typeof kindSchemas.Peer>;
  const declaredLabels = spec.metadata.labels ?? {};
  const warnings = new Diagnostics();
  if (Object.keys(declaredLabels).length > 0) {
    warnings.warn(
      positionOf(d.peerYaml, ['metadata', 'labels'], true),
      'unattested-peer-labels',
      'metadata.labels',
      `labels in peers/${d.name}/peer.yaml feed no policy decision: other peers' policies trust peer labels, so only the fabric admins set them`,
      `ask the fabric admins to set them in fabric.yaml (spec.peers.${d.name}.labels), then remove them here (docs/policy.md, "Who may change what")`,
    );
  }
  const imports = d.imports.sort(byNsName);
  const listenPorts = assignListenPorts(imports);
  imports.forEach((imp, i) => (imp.listenPort = listenPorts[i]!));
  return {
    warnings: warnings.warnings,
    model: {
      name: d.name,
      declaredLabels,
      gateways: spec.spec.gateways,
      certificatePem: d.certificatePem,
      exports: d.exports.sort(byNsName),
      imports,
      policies: [...d.policies.filter((p) => p.tier === 'privileged').sort(byNsName), ...d.policies.filter((p) => p.tier === 'user').sort(byNsName)],
      source: d.peerYaml.source,
    },
    missing: null,
  };
}

/** The checks after the per-file pass, once peers and their cross-references are known. */
function finish(pass: Pass, peerModels: PeerModel[]): LoadResult {
  const { diags, fabricObj } = pass;
  if (pass.sawFabricFile && !fabricObj && diags.errors.length === 0) {
    diags.error(at('fabric.yaml'), 'missing-fabric', '', 'fabric.yaml holds no Fabric object', 'add the Fabric document (apiVersion: clusterlink.net/v1alpha1, kind: Fabric, metadata.name, spec.caCertificates)');
  }
  if (!fabricObj || diags.errors.length > 0) return { ok: false, errors: diags.errors, warnings: diags.warnings };
  const f = fabricObj.data as z.infer<typeof kindSchemas.Fabric>;
  const peerLabels: Record<string, Record<string, string>> = {};
  const names = new Set(peerModels.map((p) => p.name));
  for (const [name, attested] of Object.entries(f.spec.peers ?? {})) {
    peerLabels[name] = attested.labels ?? {};
    if (!names.has(name)) {
      // A warning, not an error: a peer's team deleting its directory must not be blocked by fabric.yaml.
      diags.warn(positionOf(fabricObj, ['spec', 'peers', name], true), 'attested-peer-missing', `spec.peers.${name}`, `fabric.yaml attests labels of peer "${name}", which has no peers/${name}/ directory`, 'remove the entry, or fix the name (a typo leaves the real peer without its labels)');
    }
  }
  const fabric: FabricModel = {
    name: f.metadata.name,
    caCertificates: f.spec.caCertificates,
    revoked: { serials: f.spec.revoked?.serials ?? [], fingerprints: f.spec.revoked?.fingerprints ?? [] },
    repo: { requireSignedCommits: f.spec.repo?.requireSignedCommits ?? false, allowedSigningKeys: f.spec.repo?.allowedSigningKeys ?? [] },
    peers: peerModels,
    peerLabels,
    source: fabricObj.source,
  };
  return { ok: true, fabric, warnings: diags.warnings };
}

const missingFabric = (diags: Diagnostics): void =>
  diags.error(at('fabric.yaml'), 'missing-fabric', '', 'fabric.yaml is missing', 'create fabric.yaml with kind: Fabric (clgo create fabric does it)');

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
function loadIncremental(files: ReadonlyMap<string, Uint8Array | string>, limits: LoadLimits, cache: ParseCache): LoadResult | null {
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

function addObject(d: PeerDraft, obj: ParsedObject, diags: Diagnostics): void {
  const meta = (obj.data as { metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> } }).metadata;
  const claimed = meta.labels?.['clusterlink.net/peer'];
  if (claimed !== undefined && claimed !== d.name) {
    diags.error(positionOf(obj, ['metadata', 'labels', 'clusterlink.net/peer']), 'ownership', 'metadata.labels.clusterlink.net/peer', `object under peers/${d.name}/ claims to belong to peer "${claimed}"`, `everything under peers/${d.name}/ is ${d.name}'s decision: move it to peers/${claimed}/ or fix the label`);
    return;
  }
  const privileged = obj.kind === 'PrivilegedAccessPolicy';
  if (privileged && meta.namespace !== undefined) {
    diags.error(positionOf(obj, ['metadata', 'namespace'], true), 'cluster-scoped', 'metadata.namespace', 'PrivilegedAccessPolicy is cluster-wide and takes no namespace', 'remove metadata.namespace, or use a (namespaced) AccessPolicy');
    return;
  }
  const namespace = privileged ? null : (meta.namespace ?? 'default');
  const key = `${obj.kind}/${namespace ?? ''}/${meta.name}`;
  const first = d.objects.get(key);
  if (first) {
    diags.error(positionOf(obj, ['metadata', 'name']), 'duplicate', 'metadata.name', `duplicate ${obj.kind} ${namespace ? `${namespace}/` : ''}${meta.name} in peer ${d.name} (first defined at ${first.file}:${first.line})`, 'rename one of them or delete the duplicate');
    return;
  }
  d.objects.set(key, obj.source);
  const labels = meta.labels ?? {};
  switch (obj.kind) {
    case 'Export': {
      const s = (obj.data as z.infer<typeof kindSchemas.Export>).spec;
      if (s.host === undefined && !DNS1123.test(meta.name)) {
        diags.warn(positionOf(obj, ['metadata', 'name']), 'export-host-default', 'spec.host', `export ${meta.name} has no host, and its default ${meta.name}.${namespace}.svc.cluster.local names a Service that cannot exist (Service names are DNS-1123 labels)`, 'set spec.host to the Service (or host) that serves this export');
      }
      d.exports.push({ peer: d.name, name: meta.name, namespace: namespace!, labels, host: s.host ?? `${meta.name}.${namespace}.svc.cluster.local`, port: s.port, source: obj.source });
      break;
    }
    case 'Import': {
      const s = (obj.data as z.infer<typeof kindSchemas.Import>).spec;
      if (labels[IMPORT_MERGE] !== undefined) {
        diags.error(
          positionOf(obj, ['metadata', 'labels', IMPORT_MERGE], true),
          'unsupported',
          `metadata.labels.${IMPORT_MERGE}`,
          `${IMPORT_MERGE} (merging the import into an existing Service) is not supported: the reconciler owns the Services it applies and deletes them with the import, which would delete a Service it does not own`,
          'remove the label and point clients at the import\'s own Service (its name and namespace); see docs/policy.md, "YAML accepted"',
        );
        return;
      }
      if (s.sources.length === 0) {
        diags.warn(positionOf(obj, ['spec', 'sources'], true), 'import-no-sources', 'spec.sources', `import ${namespace}/${meta.name} has no sources: its Service is created and every connection to it is refused`, 'add a source (peer, exportName, exportNamespace), or delete the import');
      }
      const imp: ImportModel = {
        peer: d.name,
        name: meta.name,
        namespace: namespace!,
        labels,
        port: s.port,
        targetPort: s.targetPort ?? null,
        listenPort: s.targetPort ?? s.port, // final value set per peer by assignListenPorts
        // Empty or absent export name/namespace: the import's own (ClusterLink's authz manager does the same).
        sources: s.sources.map((src) => ({ peer: src.peer, exportName: src.exportName || meta.name, exportNamespace: src.exportNamespace || namespace! })),
        lbScheme: s.lbScheme ?? 'round-robin',
        sessionAffinity: 'None',
        source: obj.source,
      };
      const affinity = meta.annotations?.[SESSION_AFFINITY];
      if (affinity === 'ClientIP') imp.sessionAffinity = 'ClientIP';
      else if (affinity !== undefined && affinity !== 'None') {
        diags.error(positionOf(obj, ['metadata', 'annotations', SESSION_AFFINITY]), 'bad-annotation', `metadata.annotations.${SESSION_AFFINITY}`, `session affinity "${affinity}" is not known`, 'use ClientIP (a client keeps its exporter) or None');
        return;
      }
      d.imports.push(imp);
      d.importObjects.set(imp, obj);
      break;
    }
    case 'AccessPolicy':
    case 'PrivilegedAccessPolicy': {
      const s = (obj.data as z.infer<typeof kindSchemas.AccessPolicy>).spec;
      if (!checkSelectors(obj, s, diags)) return;
      d.policies.push({ peer: d.name, tier: privileged ? 'privileged' : 'user', kind: obj.kind, name: meta.name, namespace, action: s.action, from: s.from, to: s.to, source: obj.source });
      break;
    }
    default:
      break;
  }
}

function checkSelectors(obj: ParsedObject, spec: z.infer<typeof kindSchemas.AccessPolicy>['spec'], diags: Diagnostics): boolean {
  let ok = true;
  for (const side of ['from', 'to'] as const) {
    spec[side].forEach((wsos, i) => {
      if (wsos.workloadSets && wsos.workloadSets.length > 0) {
        ok = false;
        diags.error(positionOf(obj, ['spec', side, i, 'workloadSets'], true), 'unsupported', `spec.${side}[${i}].workloadSets`, 'workloadSets are not supported (as in ClusterLink)', 'use workloadSelector with matchLabels or matchExpressions');
      }
      const sel = wsos.workloadSelector;
      const keys: Array<[string, PropertyKey[]]> = [
        ...Object.keys(sel?.matchLabels ?? {}).map((k): [string, PropertyKey[]] => [k, ['spec', side, i, 'workloadSelector', 'matchLabels', k]]),
        ...(sel?.matchExpressions ?? []).map((e, j): [string, PropertyKey[]] => [e.key, ['spec', side, i, 'workloadSelector', 'matchExpressions', j, 'key']]),
      ];
      for (const [k, keyPath] of keys) {
        if (!POLICY_ATTRIBUTE_PREFIXES.some((p) => k.startsWith(p))) {
          diags.warn(positionOf(obj, keyPath, true), 'unknown-attribute', `spec.${side}[${i}].workloadSelector`, `attribute "${k}" is not one ClusterLink defines, so this selector can never match it`, `use peer.clusterlink.net/..., client.clusterlink.net/... or export.clusterlink.net/... (see docs/policy.md)`);
        }
      }
      (sel?.matchExpressions ?? []).forEach((e, j) => {
        const needsValues = e.operator === 'In' || e.operator === 'NotIn';
        const hasValues = (e.values?.length ?? 0) > 0;
        if (needsValues !== hasValues) {
          ok = false;
          diags.error(
            positionOf(obj, ['spec', side, i, 'workloadSelector', 'matchExpressions', j, 'operator']),
            'bad-selector',
            `spec.${side}[${i}].workloadSelector.matchExpressions[${j}]`,
            needsValues ? `operator ${e.operator} needs a non-empty values list` : `operator ${e.operator} takes no values`,
            needsValues ? 'add values: [...]' : 'remove values',
          );
        }
      });
    });
  }
  return ok;
}

/** `<ns>/<name>` of each export of a peer (computed once per PeerModel). */
const exportKeysOf = new WeakMap<PeerModel, Set<string>>();
function exportKeys(p: PeerModel): Set<string> {
  let keys = exportKeysOf.get(p);
  if (!keys) {
    keys = new Set(p.exports.map((e) => `${e.namespace}/${e.name}`));
    exportKeysOf.set(p, keys);
  }
  return keys;
}

function sameExportKeys(a: PeerModel, b: PeerModel): boolean {
  if (a.exports.length !== b.exports.length) return false;
  for (let i = 0; i < a.exports.length; i++) {
    const x = a.exports[i]!;
    const y = b.exports[i]!;
    if (x.namespace !== y.namespace || x.name !== y.name) return false;
  }
  return true;
}

function checkGateways(peersList: PeerModel[], diags: Diagnostics): void {
  const gatewayOwner = new Map<string, string>();
  for (const p of peersList) {
    for (const g of p.gateways) {
      const key = `${g.host}:${g.port}`;
      const other = gatewayOwner.get(key);
      if (other && other !== p.name) diags.error(p.source, 'duplicate-gateway', 'spec.gateways', `gateway ${key} is also peer ${other}'s`, 'each peer needs its own gateway address');
      gatewayOwner.set(key, p.name);
    }
  }
}

/**
 * The cross-reference checks of one peer's imports. What they read of other peers: the peers
 * named by its sources (`deps`), and the list of all peer names when a "did you mean" was needed.
 */
function sourcePosition(obj: ParsedObject | undefined, imp: ImportModel, i: number): SourceRef {
  return obj ? positionOf(obj, ['spec', 'sources', i]) : imp.source;
}

function checkImports(p: PeerModel, draft: PeerDraft | undefined, byName: Map<string, PeerModel>, allNames: () => string[], diags: Diagnostics, deps: Set<string> | null): { usedNames: boolean } {
  let usedNames = false;
  const objects = draft?.importObjects;
  const ports = new Map<number, ImportModel>();
  for (const imp of p.imports) {
    // Positions only when reporting: computing them needs the file's full syntax tree.
    const obj = objects?.get(imp);
    const listenPort = imp.listenPort;
    const clash = ports.get(listenPort);
    if (clash) {
      const where = obj ? positionOf(obj, ['spec', (obj.data as z.infer<typeof kindSchemas.Import>).spec.targetPort !== undefined ? 'targetPort' : 'port']) : imp.source;
      diags.error(where, 'port-conflict', 'spec.targetPort', `import ${imp.namespace}/${imp.name} listens on targetPort ${listenPort}, already used by import ${clash.namespace}/${clash.name} (${clash.source.file}:${clash.source.line})`, 'give one of them another targetPort, or drop targetPort and let the listen port be assigned');
    }
    ports.set(listenPort, imp);
    const sources = imp.sources;
    for (let i = 0; i < sources.length; i++) {
      const src = sources[i]!;
      deps?.add(src.peer);
      const exporter = byName.get(src.peer);
      if (!exporter) {
        usedNames = true;
        const names = allNames();
        const s = names.length ? closeEnough(src.peer, closest(src.peer, names)) : null;
        diags.error(sourcePosition(obj, imp, i), 'unknown-peer', `spec.sources[${i}].peer`, `import source names peer "${src.peer}", which is not in the fabric`, s ? `did you mean "${s}"? (peers live in peers/<name>/)` : 'add the peer (peers/<name>/peer.yaml), fix the name, or remove this source if the peer left the fabric');
      } else if (!exportKeys(exporter).has(`${src.exportNamespace}/${src.exportName}`)) {
        const candidates = exporter.exports.map((e) => `${e.namespace}/${e.name}`);
        const s = candidates.length ? closeEnough(`${src.exportNamespace}/${src.exportName}`, closest(`${src.exportNamespace}/${src.exportName}`, candidates)) : null;
        diags.error(sourcePosition(obj, imp, i), 'unknown-export', `spec.sources[${i}].exportName`, `peer ${src.peer} has no export ${src.exportNamespace}/${src.exportName}`, s ? `did you mean ${s}? (see peers/${src.peer}/exports/)` : candidates.length ? `peer ${src.peer} exports ${candidates.slice(0, 5).join(', ')}${candidates.length > 5 ? ', …' : ''} (see peers/${src.peer}/exports/)` : `peer ${src.peer} exports nothing yet: ask its owners to add peers/${src.peer}/exports/${src.exportName}.yaml`);
      } else if (src.peer === p.name) {
        diags.warn(sourcePosition(obj, imp, i), 'self-import', `spec.sources[${i}].peer`, `peer ${p.name} imports its own export ${src.exportNamespace}/${src.exportName}`, 'use the local Service directly instead');
      }
    }
    // A source listed twice: reported at each repetition.
    for (let i = 1; i < sources.length; i++) {
      const src = sources[i]!;
      let repeated = false;
      for (let j = 0; j < i && !repeated; j++) {
        const o = sources[j]!;
        repeated = o.peer === src.peer && o.exportNamespace === src.exportNamespace && o.exportName === src.exportName;
      }
      if (repeated) diags.error(sourcePosition(obj, imp, i), 'duplicate-source', `spec.sources[${i}]`, `source ${src.peer}/${src.exportNamespace}/${src.exportName} is listed twice`, 'remove the duplicate');
    }
  }
  return { usedNames };
}
