// Slice diff: what changed between two revisions of one peer's slice, keyed so the Kubernetes and
// xDS targets can update only what changed (and the data plane can re-check only affected tunnels).
import { isDeepStrictEqual } from 'node:util';
import type { Slice } from './types.ts';

export interface KeyedChanges {
  added: string[];
  changed: string[];
  removed: string[];
}

export interface SliceDiff {
  imports: KeyedChanges;
  exports: KeyedChanges;
  policies: KeyedChanges;
  members: KeyedChanges;
  /** CA bundle, revocations or this peer's own identity/gateways changed. */
  trustChanged: boolean;
  selfChanged: boolean;
  /** True when nothing at all changed. */
  empty: boolean;
}

function keyed<T>(oldItems: readonly T[], newItems: readonly T[], key: (t: T) => string): KeyedChanges {
  const before = new Map(oldItems.map((i) => [key(i), i]));
  const after = new Map(newItems.map((i) => [key(i), i]));
  const out: KeyedChanges = { added: [], changed: [], removed: [] };
  for (const [k, v] of after) {
    const prev = before.get(k);
    if (prev === undefined) out.added.push(k);
    else if (!isDeepStrictEqual(prev, v)) out.changed.push(k);
  }
  for (const k of before.keys()) if (!after.has(k)) out.removed.push(k);
  out.added.sort();
  out.changed.sort();
  out.removed.sort();
  return out;
}

const nsName = (o: { namespace: string | null; name: string }): string => `${o.namespace ?? ''}/${o.name}`;
const policyKey = (p: { kind: string; namespace: string | null; name: string }): string => `${p.kind}/${nsName(p)}`;

export function diffSlices(old: Slice | null, next: Slice): SliceDiff {
  const prev: Slice = old ?? { ...next, members: [], exports: [], imports: [], policies: [], caCertificates: [], revoked: { serials: [], fingerprints: [] } };
  const d = {
    imports: keyed(prev.imports, next.imports, nsName),
    exports: keyed(prev.exports, next.exports, nsName),
    policies: keyed(prev.policies, next.policies, policyKey),
    members: keyed(prev.members, next.members, (m) => m.name),
    trustChanged: old === null || !isDeepStrictEqual(prev.caCertificates, next.caCertificates) || !isDeepStrictEqual(prev.revoked, next.revoked),
    selfChanged: old === null || !isDeepStrictEqual(prev.self, next.self),
  };
  const count = (c: KeyedChanges) => c.added.length + c.changed.length + c.removed.length;
  const empty = !d.trustChanged && !d.selfChanged && count(d.imports) + count(d.exports) + count(d.policies) + count(d.members) === 0;
  return { ...d, empty };
}
