// The Authorizer's binding to access policy. TEMPORARY BRIDGE: reconciler/policy (compilePolicies,
// decide, attribute builders) had not landed when the Authorizer was written, so this file evaluates
// policies per DESIGN.md "Policy semantics" with the smallest faithful implementation. Its exports
// (compileSlicePolicies, decideAccess) are the only seam: when reconciler/policy lands they become
// thin calls into it, and the tests in authz.test.ts / ext-authz-server.test.ts hold either way.
//
// Semantics (ClusterLink-compatible): a connection has source attributes (the client, and on ingress
// the importing peer) matched by a policy's `from`, and destination attributes (the export, and on
// egress the exporting peer) matched by `to`. Order: privileged deny → privileged allow → user deny
// → user allow → default deny; user policies count only in the connection's namespace (the import's
// on egress, the export's on ingress).
import type { ClientAttributes, Explanation } from '../../dataplane/contracts.ts';
import type { LabelSelector, PolicyModel, WorkloadSetOrSelector } from '../../schema/model.ts';

export interface AccessQuestion {
  direction: 'egress' | 'ingress';
  /** The import's namespace (egress) or the export's (ingress). */
  namespace: string;
  /** This peer. */
  self: string;
  client: ClientAttributes;
  /** The other peer: the exporter on egress, the (verified) importer on ingress. */
  peer: { name: string; labels: Record<string, string> };
  export: { name: string; namespace: string; labels: Record<string, string> };
}

export interface CompiledPolicies {
  privilegedDeny: PolicyModel[];
  privilegedAllow: PolicyModel[];
  userDeny: Map<string, PolicyModel[]>;
  userAllow: Map<string, PolicyModel[]>;
}

export function compileSlicePolicies(policies: PolicyModel[]): CompiledPolicies {
  const c: CompiledPolicies = { privilegedDeny: [], privilegedAllow: [], userDeny: new Map(), userAllow: new Map() };
  for (const p of policies) {
    if (p.tier === 'privileged') (p.action === 'deny' ? c.privilegedDeny : c.privilegedAllow).push(p);
    else {
      const byNs = p.action === 'deny' ? c.userDeny : c.userAllow;
      const ns = p.namespace ?? '';
      const list = byNs.get(ns) ?? [];
      list.push(p);
      byNs.set(ns, list);
    }
  }
  return c;
}

type Attrs = Record<string, string>;

function clientAttrs(c: ClientAttributes, into: Attrs): void {
  if (c.namespace !== undefined) into['client.clusterlink.net/namespace'] = c.namespace;
  if (c.serviceAccount !== undefined) into['client.clusterlink.net/service-account'] = c.serviceAccount;
  for (const k in c.labels) into[`client.clusterlink.net/labels.${k}`] = c.labels[k] as string;
}

function peerAttrs(name: string, labels: Record<string, string>, into: Attrs): void {
  into['peer.clusterlink.net/name'] = name;
  for (const k in labels) into[`peer.clusterlink.net/labels.${k}`] = labels[k] as string;
}

function exportAttrs(e: AccessQuestion['export'], into: Attrs): void {
  into['export.clusterlink.net/name'] = e.name;
  into['export.clusterlink.net/namespace'] = e.namespace;
  for (const k in e.labels) into[`export.clusterlink.net/labels.${k}`] = e.labels[k] as string;
}

function selectorMatches(sel: LabelSelector, attrs: Attrs): boolean {
  const ml = sel.matchLabels;
  if (ml) for (const k in ml) if (attrs[k] !== ml[k]) return false;
  for (const req of sel.matchExpressions ?? []) {
    const has = Object.hasOwn(attrs, req.key);
    const value = attrs[req.key];
    const values = req.values ?? [];
    switch (req.operator) {
      case 'In':
        if (!has || !values.includes(value as string)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(value as string)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

/** Any entry of the list matches (an empty list matches nothing; workload sets are not supported and match nothing). */
function listMatches(list: WorkloadSetOrSelector[], attrs: Attrs): boolean {
  for (const w of list) if (w.workloadSelector !== undefined && selectorMatches(w.workloadSelector, attrs)) return true;
  return false;
}

const policyId = (p: PolicyModel): string => (p.namespace ? `${p.namespace}/${p.name}` : p.name);
const locationOf = (p: PolicyModel): string => `${p.source.file}:${p.source.line}`;

function firstMatch(list: PolicyModel[] | undefined, src: Attrs, dst: Attrs): PolicyModel | null {
  if (!list) return null;
  for (const p of list) if (listMatches(p.from, src) && listMatches(p.to, dst)) return p;
  return null;
}

export function decideAccess(compiled: CompiledPolicies, q: AccessQuestion): { allowed: boolean; explanation: Explanation } {
  const src: Attrs = {};
  const dst: Attrs = {};
  clientAttrs(q.client, src);
  if (q.direction === 'ingress') peerAttrs(q.peer.name, q.peer.labels, src);
  else peerAttrs(q.peer.name, q.peer.labels, dst);
  exportAttrs(q.export, dst);
  // Tier order; written as plain statements (no per-call closures: this runs per connection).
  let hit = firstMatch(compiled.privilegedDeny, src, dst);
  let allow = false;
  if (!hit) {
    hit = firstMatch(compiled.privilegedAllow, src, dst);
    allow = true;
  }
  if (!hit) {
    hit = firstMatch(compiled.userDeny.get(q.namespace), src, dst);
    allow = false;
  }
  if (!hit) {
    hit = firstMatch(compiled.userAllow.get(q.namespace), src, dst);
    allow = true;
  }
  const what = `${q.direction} ${q.direction === 'egress' ? 'to' : 'from'} ${q.peer.name} for ${q.export.namespace}/${q.export.name}`;
  if (hit) {
    const id = policyId(hit);
    const location = locationOf(hit);
    return { allowed: allow, explanation: { tier: hit.tier, policy: id, location, message: `${what} ${allow ? 'allowed' : 'denied'} by ${hit.tier} policy ${id} (${location})` } };
  }
  return {
    allowed: false,
    explanation: { tier: 'default', policy: null, location: null, message: `${what}: no policy of peer ${q.self} allows it in namespace ${q.namespace} (default deny)` },
  };
}
