// Diagnostics of a load: where they go, and the file:line:column of a field path in a YAML document.
import { closest, distance } from 'fastest-levenshtein';
import { isMap, isScalar, isSeq, type Document, type Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { KNOWN_FIELDS } from './kinds.ts';
import type { Diagnostic, SourceRef } from './model.ts';

/** A file's text; line starts are computed only when a position is asked for. */
export type FileText = { path: string; text: string; lineStarts?: number[] };

export class Diagnostics {
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

export function at(file: string, line = 1, column = 1): SourceRef {
  return { file, line, column };
}

export function position(file: FileText, offset: number): SourceRef {
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

export function positionOf(obj: { file: FileText; doc: Document.Parsed; source: SourceRef }, path: ReadonlyArray<PropertyKey>, key = false): SourceRef {
  const { node } = nodeAt(obj.doc, path, key);
  const range = node && 'range' in node ? (node.range as [number, number, number] | undefined) : undefined;
  return range ? position(obj.file, range[0]) : obj.source;
}

export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? String(seg) : `.${String(seg)}`;
  return out;
}

/** A suggestion only when it is plausibly a typo of what was written, not merely the nearest name. */
export function closeEnough(written: string, candidate: string): string | null {
  return distance(written, candidate) <= Math.max(2, Math.floor(written.length / 3)) ? candidate : null;
}

export function suggest(name: string): string | null {
  const best = closest(name, KNOWN_FIELDS);
  return distance(name, best) <= Math.max(2, Math.floor(name.length / 3)) ? best : null;
}

/** Reports zod issues at the exact YAML position of the offending field. */
export function reportSchemaIssues(obj: { file: FileText; doc: Document.Parsed; source: SourceRef }, kind: string, issues: z.core.$ZodIssue[], diags: Diagnostics): void {
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


export function lineOfOffset(text: string, offset: number): SourceRef {
  let line = 1;
  let last = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    last = i + 1;
  }
  return { file: '', line, column: offset - last + 1 };
}

