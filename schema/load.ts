// Loads a fabric repository (a map of path → bytes: a directory read from disk or a Git tree read
// from the object store) into the typed FabricModel, or into located diagnostics. Pure: no I/O.
// Every diagnostic names file:line:column, the field path inside the document and a one-line hint.
import { closest, distance } from 'fastest-levenshtein';
import jsyaml from 'js-yaml';
import { isMap, isScalar, isSeq, parseAllDocuments, type Document, type Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { API_VERSION, KINDS, kindSchemas, type Kind } from './kinds.ts';
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
 * Parsed documents per file path, keyed by the file's exact text: a reconciler following a
 * repository keeps one, so a commit touching one file re-parses one file.
 */
export class ParseCache {
  /** @internal */
  readonly entries = new Map<string, { text: string; objects: ParsedObject[] | null; errors: Diagnostic[]; warnings: Diagnostic[] }>();
  get size(): number {
    return this.entries.size;
  }
}

/** Every field name any kind knows: the vocabulary for "did you mean" hints. */
const KNOWN_FIELDS = [
  'apiVersion', 'kind', 'metadata', 'spec', 'name', 'namespace', 'labels', 'annotations',
  'caCertificates', 'revoked', 'serials', 'fingerprints', 'repo', 'requireSignedCommits', 'allowedSigningKeys',
  'type', 'publicKey', 'gateways', 'host', 'port', 'targetPort', 'sources', 'exportName', 'exportNamespace',
  'peer', 'lbScheme', 'action', 'from', 'to', 'workloadSets', 'workloadSelector', 'matchLabels',
  'matchExpressions', 'key', 'operator', 'values',
];

const PRIVATE_KEY = /-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY-----|PuTTY-User-Key-File|-----BEGIN PGP PRIVATE KEY BLOCK-----/;
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

function parseFile(path: string, text: string, limits: LoadLimits, diags: Diagnostics): { file: FileText; docs: ParsedDoc[] } | null {
  const file: FileText = { path, text };
  let tree: Document.Parsed[] | null = null;
  const referenceTree = (): Document.Parsed[] => {
    if (!tree) {
      const parsed = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: false });
      tree = Array.isArray(parsed) ? parsed : [];
    }
    return tree;
  };
  if (!NEEDS_REFERENCE_PARSER.test(text)) {
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
      return {
        file,
        docs: datas.map((data, i) => ({
          data,
          start: starts[i] as SourceRef,
          get doc(): Document.Parsed {
            return referenceTree()[i] as Document.Parsed;
          },
        })),
      };
    }
  }
  const docs = referenceTree();
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

/** parseFile + parseObject for one file, through the cache when given (diagnostics are replayed). */
function parseObjectsCached(path: string, text: string, allowed: Kind[], dirHint: string, limits: LoadLimits, diags: Diagnostics, cache: ParseCache | undefined): ParsedObject[] | null {
  const hit = cache?.entries.get(path);
  if (hit && hit.text === text) {
    for (const d of hit.errors) diags.add(d);
    for (const d of hit.warnings) diags.add(d);
    return hit.objects;
  }
  const local = new Diagnostics();
  const parsed = parseFile(path, text, limits, local);
  const objects = parsed ? parsed.docs.map((d) => parseObject(parsed.file, d, allowed, dirHint, local)).filter((o): o is ParsedObject => o !== null) : null;
  for (const d of local.errors) diags.add(d);
  for (const d of local.warnings) diags.add(d);
  cache?.entries.set(path, { text, objects, errors: local.errors, warnings: local.warnings });
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

function classify(path: string): Classified {
  if (path === 'fabric.yaml' || path === 'fabric.yml') return { kind: 'fabric' };
  const parts = path.split('/');
  if (parts[0] !== 'peers') return { kind: 'ignored' };
  const peer = parts[1];
  if (peer === undefined || parts.length < 3) return { kind: 'ignored' };
  if (parts.length === 3 && (parts[2] === 'peer.yaml' || parts[2] === 'peer.yml')) return { kind: 'peer', peer };
  if (parts.length === 3 && parts[2] === 'peer.pem') return { kind: 'cert', peer };
  if (parts.length === 3 && /^(README|CODEOWNERS|OWNERS)(\.md)?$/i.test(parts[2] ?? '')) return { kind: 'ignored' };
  if (parts.length === 4 && parts[2] && DIR_KIND[parts[2]] && /\.ya?ml$/.test(parts[3] ?? '')) return { kind: 'objects', peer, dir: parts[2] };
  if (parts.length === 4 && parts[2] && DIR_KIND[parts[2]] && /^README(\.md)?$/i.test(parts[3] ?? '')) return { kind: 'ignored' };
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

/** Parses one YAML document into a checked object of the expected kinds. */
function parseObject(file: FileText, parsed: ParsedDoc, allowed: Kind[], dirHint: string, diags: Diagnostics): ParsedObject | null {
  const source = parsed.start;
  const data = parsed.data;
  if (data === null || data === undefined) return null; // an empty document (e.g. trailing ---)
  const base = {
    file,
    source,
    get doc(): Document.Parsed {
      return parsed.doc;
    },
  };
  if (typeof data !== 'object' || Array.isArray(data)) {
    diags.error(source, 'not-an-object', '', 'a document must be a Kubernetes-style object (apiVersion, kind, metadata, spec)', 'start the document with apiVersion: clusterlink.net/v1alpha1 and kind: ...');
    return null;
  }
  const rec = data as Record<string, unknown>;
  const kind = rec.kind;
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
  return {
    kind: kind as Kind,
    file,
    source,
    data: result.data,
    get doc(): Document.Parsed {
      return parsed.doc;
    },
  };
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
  /** Position of each import source (`<ns>/<name>#<index>`), for cross-reference errors. */
  sourcePositions: Map<string, () => SourceRef>;
}

export function loadFabricFiles(files: ReadonlyMap<string, Uint8Array | string>, options: LoadOptions = {}): LoadResult {
  const limits: LoadLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const diags = new Diagnostics();

  if (files.size > limits.maxFiles) {
    diags.error(at('.'), 'too-many-files', '', `${files.size} files in the fabric repository (limit ${limits.maxFiles})`, 'remove unrelated files or raise the limit');
    return { ok: false, errors: diags.errors, warnings: diags.warnings };
  }

  let total = 0;
  let fabricObj: ParsedObject | null = null;
  let sawFabricFile = false;
  const peers = new Map<string, PeerDraft>();
  const draft = (name: string): PeerDraft => {
    let d = peers.get(name);
    if (!d) {
      d = { name, peerYaml: null, certificatePem: null, exports: [], imports: [], policies: [], objects: new Map(), sourcePositions: new Map() };
      peers.set(name, d);
    }
    return d;
  };

  const paths = [...files.keys()].sort();
  for (const path of paths) {
    const bytes = files.get(path)!;
    const size = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.byteLength;
    total += size;
    if (path.startsWith('/') || path.split('/').some((s) => s === '..' || s === '')) {
      diags.error(at(path), 'bad-path', '', `path escapes the repository or is not normalised: ${path}`, 'use relative paths inside the repository');
      continue;
    }
    if (size > limits.maxFileBytes) {
      diags.error(at(path), 'file-too-large', '', `file is ${size} bytes (limit ${limits.maxFileBytes})`, 'split it into smaller files');
      continue;
    }
    const cls = classify(path);
    const isTextual = cls.kind !== 'ignored' || /\.(ya?ml|pem|key|crt|txt|md|json|env)$/i.test(path) || size < 1024 * 1024;
    const text = isTextual ? decode(bytes) : '';
    // A file parsed from this exact text before has passed the private-key scan already.
    const seenBefore = options.cache?.entries.get(path)?.text === text;
    const keyMatch = seenBefore ? null : PRIVATE_KEY.exec(text);
    if (keyMatch) {
      const p = lineOfOffset(text, keyMatch.index);
      diags.error({ ...p, file: path }, 'private-key', '', 'this file contains a private key: private keys never belong in the fabric repository', 'delete it from the repository (and its history), and keep the key only on the peer that owns it; rotate it, it has been exposed');
      continue;
    }
    if (cls.peer !== undefined && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(cls.peer)) {
      diags.error(at(path), 'bad-peer-name', '', `peer directory "${cls.peer}" is not a DNS-1123 label`, 'rename the directory: lower-case letters, digits and "-", at most 63 characters');
      continue;
    }
    switch (cls.kind) {
      case 'ignored':
        break;
      case 'unknown-peer-file':
        diags.warn(at(path), 'unknown-file', '', `file is not part of the fabric layout and is ignored`, 'objects go in peers/<peer>/{peer.yaml,peer.pem,exports/,imports/,policies/}');
        break;
      case 'cert':
        draft(cls.peer!).certificatePem = text;
        break;
      case 'fabric':
      case 'peer':
      case 'objects': {
        sawFabricFile ||= cls.kind === 'fabric';
        const allowed: Kind[] = cls.kind === 'fabric' ? ['Fabric'] : cls.kind === 'peer' ? ['Peer'] : DIR_KIND[cls.dir!]!;
        const dirHint = cls.kind === 'objects' ? `peers/${cls.peer}/${cls.dir}/` : path;
        const objects = parseObjectsCached(path, text, allowed, dirHint, limits, diags, options.cache);
        if (!objects) break;
        if (cls.kind === 'fabric') {
          if (objects.length > 1 || fabricObj) diags.error(objects[1]?.source ?? at(path), 'duplicate-fabric', '', 'more than one Fabric object', 'keep exactly one Fabric in fabric.yaml');
          fabricObj ??= objects[0] ?? null;
        } else if (cls.kind === 'peer') {
          const d = draft(cls.peer!);
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
          for (const obj of objects) addObject(draft(cls.peer!), obj, diags);
        }
        break;
      }
    }
    if (total > limits.maxTotalBytes) {
      diags.error(at(path), 'repo-too-large', '', `the fabric repository exceeds ${limits.maxTotalBytes} bytes`, 'remove unrelated large files');
      return { ok: false, errors: diags.errors, warnings: diags.warnings };
    }
  }

  if (options.cache) for (const p of options.cache.entries.keys()) if (!files.has(p)) options.cache.entries.delete(p);

  if (!sawFabricFile) diags.error(at('fabric.yaml'), 'missing-fabric', '', 'fabric.yaml is missing', 'create fabric.yaml with kind: Fabric (clgo create fabric does it)');

  const peerModels: PeerModel[] = [];
  for (const d of [...peers.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    if (!d.peerYaml) {
      const anyObject = d.exports[0]?.source ?? d.imports[0]?.source ?? d.policies[0]?.source;
      diags.error(at(`peers/${d.name}/peer.yaml`), 'missing-peer', '', `peers/${d.name}/ has no peer.yaml${anyObject ? ` (objects such as ${anyObject.file} need it)` : ''}`, `add peers/${d.name}/peer.yaml with kind: Peer and metadata.name: ${d.name}`);
      continue;
    }
    const spec = d.peerYaml.data as z.infer<typeof kindSchemas.Peer>;
    peerModels.push({
      name: d.name,
      labels: spec.metadata.labels ?? {},
      gateways: spec.spec.gateways,
      certificatePem: d.certificatePem,
      exports: d.exports.sort(byNsName),
      imports: d.imports.sort(byNsName),
      policies: [...d.policies.filter((p) => p.tier === 'privileged').sort(byNsName), ...d.policies.filter((p) => p.tier === 'user').sort(byNsName)],
      source: d.peerYaml.source,
    });
  }

  crossCheck(peerModels, peers, diags);

  if (sawFabricFile && !fabricObj && diags.errors.length === 0) {
    diags.error(at('fabric.yaml'), 'missing-fabric', '', 'fabric.yaml holds no Fabric object', 'add the Fabric document (apiVersion: clusterlink.net/v1alpha1, kind: Fabric, metadata.name, spec.caCertificates)');
  }
  if (!fabricObj || diags.errors.length > 0) return { ok: false, errors: diags.errors, warnings: diags.warnings };
  const f = fabricObj.data as z.infer<typeof kindSchemas.Fabric>;
  const fabric: FabricModel = {
    name: f.metadata.name,
    caCertificates: f.spec.caCertificates,
    revoked: { serials: f.spec.revoked?.serials ?? [], fingerprints: f.spec.revoked?.fingerprints ?? [] },
    repo: { requireSignedCommits: f.spec.repo?.requireSignedCommits ?? false, allowedSigningKeys: f.spec.repo?.allowedSigningKeys ?? [] },
    peers: peerModels,
    source: fabricObj.source,
  };
  return { ok: true, fabric, warnings: diags.warnings };
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
  const d: PeerDraft = { name: 'local', peerYaml: null, certificatePem: null, exports: [], imports: [], policies: [], objects: new Map(), sourcePositions: new Map() };
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
  const meta = (obj.data as { metadata: { name: string; namespace?: string; labels?: Record<string, string> } }).metadata;
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
      d.exports.push({ peer: d.name, name: meta.name, namespace: namespace!, labels, host: s.host ?? `${meta.name}.${namespace}.svc.cluster.local`, port: s.port, source: obj.source });
      break;
    }
    case 'Import': {
      const s = (obj.data as z.infer<typeof kindSchemas.Import>).spec;
      d.imports.push({
        peer: d.name,
        name: meta.name,
        namespace: namespace!,
        labels,
        port: s.port,
        targetPort: s.targetPort ?? null,
        sources: s.sources.map((src) => ({ peer: src.peer, exportName: src.exportName, exportNamespace: src.exportNamespace })),
        lbScheme: s.lbScheme ?? 'round-robin',
        source: obj.source,
      });
      s.sources.forEach((_, i) => d.sourcePositions.set(`${namespace}/${meta.name}#${i}`, () => positionOf(obj, ['spec', 'sources', i])));
      d.sourcePositions.set(`${namespace}/${meta.name}#port`, () => positionOf(obj, ['spec', s.targetPort !== undefined ? 'targetPort' : 'port']));
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

function crossCheck(peersList: PeerModel[], drafts: Map<string, PeerDraft>, diags: Diagnostics): void {
  const byName = new Map(peersList.map((p) => [p.name, p]));
  const exportsByRef = new Map<string, ExportModel>();
  for (const p of peersList) for (const e of p.exports) exportsByRef.set(`${p.name}/${e.namespace}/${e.name}`, e);

  const gatewayOwner = new Map<string, string>();
  for (const p of peersList) {
    for (const g of p.gateways) {
      const key = `${g.host}:${g.port}`;
      const other = gatewayOwner.get(key);
      if (other && other !== p.name) diags.error(p.source, 'duplicate-gateway', 'spec.gateways', `gateway ${key} is also peer ${other}'s`, 'each peer needs its own gateway address');
      gatewayOwner.set(key, p.name);
    }
  }

  for (const p of peersList) {
    const sourcePositions = drafts.get(p.name)?.sourcePositions ?? new Map<string, () => SourceRef>();
    const ports = new Map<number, ImportModel>();
    for (const imp of p.imports) {
      const listenPort = imp.targetPort ?? imp.port;
      const clash = ports.get(listenPort);
      if (clash) diags.error(sourcePositions.get(`${imp.namespace}/${imp.name}#port`)?.() ?? imp.source, 'port-conflict', 'spec.port', `import ${imp.namespace}/${imp.name} listens on port ${listenPort}, already used by import ${clash.namespace}/${clash.name} (${clash.source.file}:${clash.source.line})`, 'give one of them another targetPort');
      ports.set(listenPort, imp);
      imp.sources.forEach((src, i) => {
        // Positions only when reporting: computing them needs the file's full syntax tree.
        const where = (): SourceRef => sourcePositions.get(`${imp.namespace}/${imp.name}#${i}`)?.() ?? imp.source;
        const path = `spec.sources[${i}]`;
        if (!byName.has(src.peer)) {
          const s = peersList.length ? closest(src.peer, peersList.map((x) => x.name)) : null;
          diags.error(where(), 'unknown-peer', `${path}.peer`, `import source names peer "${src.peer}", which is not in the fabric`, s ? `did you mean "${s}"? (peers live in peers/<name>/)` : 'add the peer, or fix the name');
        } else if (!exportsByRef.has(`${src.peer}/${src.exportNamespace}/${src.exportName}`)) {
          const candidates = byName.get(src.peer)!.exports.map((e) => `${e.namespace}/${e.name}`);
          const s = candidates.length ? closest(`${src.exportNamespace}/${src.exportName}`, candidates) : null;
          diags.error(where(), 'unknown-export', `${path}.exportName`, `peer ${src.peer} has no export ${src.exportNamespace}/${src.exportName}`, s ? `did you mean ${s}? (see peers/${src.peer}/exports/)` : `peer ${src.peer} exports nothing yet: ask its owners to add peers/${src.peer}/exports/${src.exportName}.yaml`);
        } else if (src.peer === p.name) {
          diags.warn(where(), 'self-import', `${path}.peer`, `peer ${p.name} imports its own export ${src.exportNamespace}/${src.exportName}`, 'use the local Service directly instead');
        }
      });
      const seen = new Set<string>();
      imp.sources.forEach((src, i) => {
        const k = `${src.peer}/${src.exportNamespace}/${src.exportName}`;
        if (seen.has(k)) diags.error(sourcePositions.get(`${imp.namespace}/${imp.name}#${i}`)?.() ?? imp.source, 'duplicate-source', `spec.sources[${i}]`, `source ${k} is listed twice`, 'remove the duplicate');
        seen.add(k);
      });
    }
  }
}
