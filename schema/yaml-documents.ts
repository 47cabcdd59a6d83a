// YAML text → documents (plain data, start position, and the syntax tree with positions on demand).
import jsyaml from 'js-yaml';
import { parseAllDocuments, type Document } from 'yaml';
import { at, position, type Diagnostics, type FileText } from './diagnostics.ts';
import type { LoadLimits } from './limits.ts';
import type { SourceRef } from './model.ts';

export function decode(bytes: Uint8Array | string): string {
  return typeof bytes === 'string' ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}

/**
 * One YAML document: its plain data, where it starts, and its full syntax tree (with positions)
 * built on first use. Valid files never need the tree, so most of a large fabric is parsed once
 * by the fast parser; errors and cross-reference diagnostics build it for the files involved only.
 */
export interface ParsedDoc {
  data: unknown;
  start: SourceRef;
  readonly doc: Document.Parsed;
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

export function parseFile(path: string, text: string, limits: LoadLimits, diags: Diagnostics): { file: FileText; docs: ParsedDoc[] } | null {
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


export function docStart(file: FileText, doc: Document.Parsed): SourceRef {
  const range = doc.contents && 'range' in doc.contents ? doc.contents.range : doc.range;
  return position(file, range ? range[0] : 0);
}
