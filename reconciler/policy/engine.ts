// The policy decision point. ClusterLink semantics (pkg/controlplane/authz/connectivitypdp), with
// deterministic choices where ClusterLink's are not:
//  - tiers: privileged deny → privileged allow → user deny → user allow → default deny;
//  - user policies count only in the request's namespace (import's on egress, export's on ingress);
//  - a policy matches when some `from` entry matches the source attributes AND some `to` entry
//    matches the destination attributes; an empty list matches nothing, an empty selector matches
//    everything (Kubernetes LabelSelectorAsSelector), an entry without workloadSelector matches nothing;
//  - selectors are Kubernetes label selectors: NotIn and DoesNotExist hold for an absent attribute,
//    In and Exists do not — so a client with unknown attributes is matched only by selectors that do
//    not require a client attribute;
//  - within one tier/action several policies may match; ClusterLink reports whichever its map
//    yields first, we report the first in (namespace, name) order so explanations are stable;
//  - a client with unknown attributes is refused outright when any policy of the peer (either tier,
//    any namespace, allow or deny) has a `from` selector with matchLabels or matchExpressions
//    (ClusterLink's PDP.DependsOnClientAttrs, checked by its authz manager before deciding).
// Invalid policies never reach the engine: the loader refuses the revision (the last good keeps serving).
//
// Indexing: a policy whose every `to` entry requires specific export names (matchLabels or In) is
// filed under those names, and likewise for the peer name; a decision looks at the buckets of the
// request's values plus the unindexed rest, so policies that cannot match cost nothing.
import type { Explanation } from '../../protocol/contracts.ts';
import type { LabelSelector, PolicyModel, WorkloadSetOrSelector } from '../../schema/model.ts';
import { ATTR, requestAttributes, type AccessRequest, type Attributes } from './attributes.ts';

export type Tier = 'privileged' | 'user' | 'default';

export interface Decision {
  allowed: boolean;
  tier: Tier;
  /** What decided: a policy, default deny (nothing matched), or the unknown-client rule. */
  reason: 'policy' | 'default-deny' | 'unknown-client';
  /** `<namespace>/<name>` of a user policy, `<name>` of a privileged one; null on default deny. */
  policy: string | null;
  /** file:line of the deciding policy in the fabric repository. */
  location: string | null;
  /** Which entries matched, e.g. `from[0] {client.clusterlink.net/namespace=web}, to[1] {export.clusterlink.net/name=http}`. */
  matched: string | null;
  message: string;
}

interface CompiledRequirement {
  key: string;
  op: 'Eq' | 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values: string[];
}

type CompiledSelector = CompiledRequirement[];

interface CompiledPolicy {
  ordinal: number;
  policy: PolicyModel;
  id: string;
  location: string;
  /** null entries: no workloadSelector (workload sets), never match. */
  from: Array<CompiledSelector | null>;
  to: Array<CompiledSelector | null>;
}

/** Where to look for an index key: in the source or destination attributes. */
interface IndexKey {
  side: 'src' | 'dst';
  attribute: string;
}

// Most discriminating first: a policy is filed under the first key it constrains.
const INDEX_KEYS: IndexKey[] = [
  { side: 'dst', attribute: ATTR.exportName },
  { side: 'dst', attribute: ATTR.peerName },
  { side: 'src', attribute: ATTR.peerName },
];

interface PolicyList {
  /** Policies constraining none of the index keys, by ordinal. */
  unindexed: CompiledPolicy[];
  /** Per index key: attribute value → policies, by ordinal. */
  indexed: Array<Map<string, CompiledPolicy[]>>;
  size: number;
}

export interface CompiledPolicies {
  privilegedDeny: PolicyList;
  privilegedAllow: PolicyList;
  userDeny: Map<string, PolicyList>;
  userAllow: Map<string, PolicyList>;
  count: number;
  /** The first policy (in evaluation order) whose `from` selects on attributes: unknown clients are refused. */
  clientDependent: { id: string; location: string } | null;
}

function compileSelector(sel: LabelSelector): CompiledSelector {
  const reqs: CompiledRequirement[] = [];
  for (const k of Object.keys(sel.matchLabels ?? {}).sort()) reqs.push({ key: k, op: 'Eq', values: [(sel.matchLabels as Record<string, string>)[k] as string] });
  for (const e of sel.matchExpressions ?? []) reqs.push({ key: e.key, op: e.operator, values: [...(e.values ?? [])] });
  return reqs;
}

function compileEntries(list: WorkloadSetOrSelector[]): Array<CompiledSelector | null> {
  return list.map((w) => (w.workloadSelector === undefined ? null : compileSelector(w.workloadSelector)));
}

function requirementHolds(r: CompiledRequirement, attrs: Attributes): boolean {
  const has = Object.hasOwn(attrs, r.key);
  switch (r.op) {
    case 'Eq':
      return has && attrs[r.key] === r.values[0];
    case 'In':
      return has && r.values.includes(attrs[r.key] as string);
    case 'NotIn':
      return !has || !r.values.includes(attrs[r.key] as string);
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
  }
}

function selectorMatches(sel: CompiledSelector, attrs: Attributes): boolean {
  for (const r of sel) if (!requirementHolds(r, attrs)) return false;
  return true;
}

function firstMatchingEntry(entries: Array<CompiledSelector | null>, attrs: Attributes): number {
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    if (e && selectorMatches(e, attrs)) return i;
  }
  return -1;
}

/** Values an entry list requires for `attribute` (null: unconstrained, some entry accepts any value). */
function requiredValues(entries: Array<CompiledSelector | null>, attribute: string): Set<string> | null {
  const out = new Set<string>();
  for (const e of entries) {
    if (e === null) continue; // matches nothing: contributes no values
    const constraining = e.filter((r) => r.key === attribute && (r.op === 'Eq' || r.op === 'In'));
    if (constraining.length === 0) return null;
    // Every requirement must hold: the entry accepts the intersection of their value sets.
    const [first, ...rest] = constraining as [CompiledRequirement, ...CompiledRequirement[]];
    for (const v of first.values) if (rest.every((r) => r.values.includes(v))) out.add(v);
  }
  return out;
}

function emptyList(): PolicyList {
  return { unindexed: [], indexed: INDEX_KEYS.map(() => new Map()), size: 0 };
}

function file(list: PolicyList, p: CompiledPolicy): void {
  list.size++;
  for (let k = 0; k < INDEX_KEYS.length; k++) {
    const key = INDEX_KEYS[k] as IndexKey;
    const values = requiredValues(key.side === 'src' ? p.from : p.to, key.attribute);
    if (values === null) continue;
    const buckets = list.indexed[k] as Map<string, CompiledPolicy[]>;
    for (const v of values) {
      const b = buckets.get(v);
      if (b) b.push(p);
      else buckets.set(v, [p]);
    }
    return; // values may be empty: the policy can never match and is filed nowhere
  }
  list.unindexed.push(p);
}

/** ClusterLink's dependsOnClientAttrs for one policy: some `from` selector is not empty. */
export function dependsOnSourceAttributes(p: PolicyModel): boolean {
  return p.from.some((w) => w.workloadSelector !== undefined && (Object.keys(w.workloadSelector.matchLabels ?? {}).length > 0 || (w.workloadSelector.matchExpressions ?? []).length > 0));
}

export const policyId = (p: PolicyModel): string => (p.namespace ? `${p.namespace}/${p.name}` : p.name);

/** Compiles one peer's policies. Order inside a tier is (namespace, name) so results are deterministic. */
export function compilePolicies(policies: readonly PolicyModel[]): CompiledPolicies {
  const sorted = [...policies].sort((a, b) => (policyId(a) < policyId(b) ? -1 : policyId(a) > policyId(b) ? 1 : 0));
  const c: CompiledPolicies = { privilegedDeny: emptyList(), privilegedAllow: emptyList(), userDeny: new Map(), userAllow: new Map(), count: 0, clientDependent: null };
  sorted.forEach((policy, ordinal) => {
    const cp: CompiledPolicy = { ordinal, policy, id: policyId(policy), location: `${policy.source.file}:${policy.source.line}`, from: compileEntries(policy.from), to: compileEntries(policy.to) };
    c.count++;
    if (c.clientDependent === null && dependsOnSourceAttributes(policy)) c.clientDependent = { id: cp.id, location: cp.location };
    if (policy.tier === 'privileged') file(policy.action === 'deny' ? c.privilegedDeny : c.privilegedAllow, cp);
    else {
      const byNs = policy.action === 'deny' ? c.userDeny : c.userAllow;
      const ns = policy.namespace ?? '';
      let list = byNs.get(ns);
      if (!list) byNs.set(ns, (list = emptyList()));
      file(list, cp);
    }
  });
  return c;
}

interface Hit {
  p: CompiledPolicy;
  from: number;
  to: number;
}

function tryPolicy(p: CompiledPolicy, src: Attributes, dst: Attributes, best: Hit | null): Hit | null {
  if (best && best.p.ordinal < p.ordinal) return best;
  const f = firstMatchingEntry(p.from, src);
  if (f < 0) return best;
  const t = firstMatchingEntry(p.to, dst);
  if (t < 0) return best;
  return { p, from: f, to: t };
}

/** The first (by ordinal) matching policy of a list, using the index. */
function firstMatch(list: PolicyList | undefined, src: Attributes, dst: Attributes): Hit | null {
  if (!list || list.size === 0) return null;
  let best: Hit | null = null;
  for (let k = 0; k < INDEX_KEYS.length; k++) {
    const key = INDEX_KEYS[k] as IndexKey;
    const value = (key.side === 'src' ? src : dst)[key.attribute];
    if (value === undefined) continue;
    const bucket = (list.indexed[k] as Map<string, CompiledPolicy[]>).get(value);
    if (!bucket) continue;
    for (const p of bucket) {
      if (best && best.p.ordinal < p.ordinal) break;
      best = tryPolicy(p, src, dst, best);
    }
  }
  for (const p of list.unindexed) {
    if (best && best.p.ordinal < p.ordinal) break;
    best = tryPolicy(p, src, dst, best);
  }
  return best;
}

function describeEntry(side: 'from' | 'to', i: number, sel: CompiledSelector): string {
  if (sel.length === 0) return `${side}[${i}] {} (matches everything)`;
  const parts = sel.map((r) => (r.op === 'Eq' ? `${r.key}=${r.values[0]}` : r.op === 'Exists' || r.op === 'DoesNotExist' ? `${r.key} ${r.op}` : `${r.key} ${r.op} (${r.values.join(', ')})`));
  return `${side}[${i}] {${parts.join(', ')}}`;
}

function what(r: AccessRequest): string {
  return `${r.direction} ${r.direction === 'egress' ? 'to' : 'from'} ${r.peer.name} for ${r.export.namespace}/${r.export.name}`;
}

/** Decides one request on the deciding peer's compiled policies. Allocation-light: runs per connection. */
export function decide(compiled: CompiledPolicies, request: AccessRequest): Decision {
  if (request.client === null && compiled.clientDependent !== null) {
    const dep = compiled.clientDependent;
    return {
      allowed: false,
      tier: 'default',
      reason: 'unknown-client',
      policy: null,
      location: dep.location,
      matched: null,
      message: `${what(request)}: client attributes unknown, and policies of ${request.self} select on source attributes (first: ${dep.id} at ${dep.location}), so the connection is refused (ClusterLink's rule)`,
    };
  }
  const { src, dst } = requestAttributes(request);
  return decideAttributes(compiled, request.namespace, src, dst, what(request), request.self);
}

/** The same decision on raw attribute sets (for `clgo policy eval`). */
export function decideAttributes(compiled: CompiledPolicies, namespace: string, src: Attributes, dst: Attributes, subject = 'request', self = 'this peer'): Decision {
  let hit = firstMatch(compiled.privilegedDeny, src, dst);
  let allowed = false;
  if (!hit) {
    hit = firstMatch(compiled.privilegedAllow, src, dst);
    allowed = true;
  }
  if (!hit) {
    hit = firstMatch(compiled.userDeny.get(namespace), src, dst);
    allowed = false;
  }
  if (!hit) {
    hit = firstMatch(compiled.userAllow.get(namespace), src, dst);
    allowed = true;
  }
  if (!hit) {
    return {
      allowed: false,
      tier: 'default',
      reason: 'default-deny',
      policy: null,
      location: null,
      matched: null,
      message: `${subject}: no policy of ${self} allows it in namespace ${namespace} (default deny)`,
    };
  }
  const p = hit.p;
  const matched = `${describeEntry('from', hit.from, p.from[hit.from] as CompiledSelector)}, ${describeEntry('to', hit.to, p.to[hit.to] as CompiledSelector)}`;
  return {
    allowed,
    tier: p.policy.tier,
    reason: 'policy',
    policy: p.id,
    location: p.location,
    matched,
    message: `${subject} ${allowed ? 'allowed' : 'denied'} by ${p.policy.tier} policy ${p.id} (${p.location})`,
  };
}

/** Why one policy did or did not match a request: for `clgo explain` when nothing allowed. */
export interface PolicyTrace {
  policy: string;
  tier: 'privileged' | 'user';
  action: 'allow' | 'deny';
  location: string;
  /** True when it applies to this request's namespace (always for privileged). */
  applies: boolean;
  matches: boolean;
  /** The first unmet requirement, e.g. `from: client.clusterlink.net/namespace=web (client has namespace=batch)`. */
  reason: string;
}

function firstUnmet(entries: Array<CompiledSelector | null>, attrs: Attributes, side: 'from' | 'to'): string | null {
  if (entries.length === 0) return `${side} is empty (matches nothing)`;
  const reasons: string[] = [];
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    if (!e) {
      reasons.push(`${side}[${i}] has no workloadSelector`);
      continue;
    }
    const bad = e.find((r) => !requirementHolds(r, attrs));
    if (!bad) return null;
    const actual = Object.hasOwn(attrs, bad.key) ? `is ${attrs[bad.key]}` : 'is absent';
    const want = bad.op === 'Eq' ? `=${bad.values[0]}` : bad.op === 'In' || bad.op === 'NotIn' ? ` ${bad.op} (${bad.values.join(', ')})` : ` ${bad.op}`;
    reasons.push(`${side}[${i}] needs ${bad.key}${want} (${actual})`);
  }
  return reasons.join('; ');
}

/** Every policy of the peer, in evaluation order, with whether and why it (did not) match. Unindexed: diagnostic use only. */
export function tracePolicies(policies: readonly PolicyModel[], request: AccessRequest): PolicyTrace[] {
  const { src, dst } = requestAttributes(request);
  const rank = (p: PolicyModel): number => (p.tier === 'privileged' ? 0 : 2) + (p.action === 'deny' ? 0 : 1);
  const sorted = [...policies].sort((a, b) => rank(a) - rank(b) || (policyId(a) < policyId(b) ? -1 : policyId(a) > policyId(b) ? 1 : 0));
  return sorted.map((p) => {
    const applies = p.tier === 'privileged' || p.namespace === request.namespace;
    const from = compileEntries(p.from);
    const to = compileEntries(p.to);
    const unmet = firstUnmet(from, src, 'from') ?? firstUnmet(to, dst, 'to');
    const reason = !applies ? `user policy of namespace ${p.namespace ?? ''}, request is in ${request.namespace}` : (unmet ?? 'matches');
    return { policy: policyId(p), tier: p.tier, action: p.action, location: `${p.source.file}:${p.source.line}`, applies, matches: applies && unmet === null, reason };
  });
}

/** A decision in the data plane's Explanation shape (what logs, deny headers and status pages carry). */
export function explanationOf(d: Decision): Explanation {
  return { tier: d.tier, policy: d.policy, location: d.location, message: d.message, matched: d.matched };
}

/** decide(), shaped for the Authorizer and flow computations. */
export function decideAccess(compiled: CompiledPolicies, request: AccessRequest): { allowed: boolean; explanation: Explanation } {
  const d = decide(compiled, request);
  return { allowed: d.allowed, explanation: explanationOf(d) };
}
