// A hand-written fast path for the schema checks of the common kinds (zod decides whenever it says no).
import { API_VERSION, type Kind } from './kinds.ts';

// ---- Fast schema checks for the common kinds. Each returns exactly what the zod schema's parse
// returns (keys in schema order, absent optional keys absent) when the data is valid, and undefined
// when it is not or when unsure: zod then decides and reports.
export const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;
const NO: unique symbol = Symbol('no');

export const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;

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

export function fastValidate(kind: Kind, data: Record<string, unknown>): unknown {
  const top = TOP[kind];
  if (!top) return undefined;
  try {
    return vObject(data, top);
  } catch (err) {
    if (err === NO) return undefined;
    throw err;
  }
}

