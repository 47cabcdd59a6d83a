// The Authorizer: answers the data plane's two per-connection questions from the current Slice.
//  egress  — may this local client (by source address) use this import, and which exporters, in
//            load-balancing order? (egress policy of this peer, in the import's namespace)
//  ingress — may this remote peer (by its verified certificate, never a header or an address) reach
//            this export? (ingress policy of this peer, in the export's namespace)
// Called per connection: everything that depends only on the Slice (compiled policies, indexes)
// is built once per Slice object and cached by identity; a call is then map lookups plus the
// policy evaluation. The decisions themselves come from reconciler/policy.
import type {
  Authorizer,
  ClientAttributes,
  EgressCandidate,
  EgressCheck,
  EgressVerdict,
  Explanation,
  IngressCheck,
  IngressVerdict,
} from '../../protocol/contracts.ts';
import { verifyPeer } from '../pki/verify.ts';
import type { Slice, SliceExport, SliceImport, SliceMember } from '../slice/types.ts';
import { compilePolicies, decideAccess, isUnknownClient, type CompiledPolicies } from '../policy/index.ts';

export interface AuthorizerOptions {
  /** The current slice; a new object per revision (caches are keyed on its identity). */
  slice: () => Slice;
  /** Client attributes of a local workload by its source address; null when unknown. */
  clientAttributes: (address: string) => ClientAttributes | null;
  now?: () => Date;
  /** For lbScheme random; [0, 1). */
  random?: () => number;
}

/** One exporter of an import, as egress policy sees it. */
export interface EgressSourceExplanation {
  peer: string;
  exportName: string;
  exportNamespace: string;
  resolved: boolean;
  allowed: boolean;
  explanation: Explanation;
}

export interface EgressExplanation {
  import: string;
  found: boolean;
  client: ClientAttributes;
  sources: EgressSourceExplanation[];
}

export interface SliceAuthorizer extends Authorizer {
  egress(check: EgressCheck): EgressVerdict;
  ingress(check: IngressCheck): IngressVerdict;
  /** The egress decision for every source of the import, in written order (for `clgo explain` and logs). */
  explainEgress(check: EgressCheck): EgressExplanation;
  /** Drops every cache (compiled policies, indexes, round-robin positions). */
  invalidate(): void;
}

interface Prepared {
  policies: CompiledPolicies;
  imports: Map<string, SliceImport>;
  exports: Map<string, SliceExport>;
  members: Map<string, SliceMember>;
}

const ref = (namespace: string, name: string): string => `${namespace}/${name}`;
/** Kubernetes' default sessionAffinityConfig.clientIP.timeoutSeconds (3 h), and a bound on clients remembered. */
const AFFINITY_TIMEOUT_MS = 10_800_000;
const AFFINITY_MAX_ENTRIES = 100_000;
const EMPTY_CLIENT: ClientAttributes = Object.freeze({ labels: Object.freeze({}) as Record<string, string> });

function prepare(slice: Slice): Prepared {
  return {
    policies: compilePolicies(slice.policies),
    imports: new Map(slice.imports.map((i) => [ref(i.namespace, i.name), i])),
    exports: new Map(slice.exports.map((e) => [ref(e.namespace, e.name), e])),
    members: new Map(slice.members.map((m) => [m.name, m])),
  };
}

function defaultDeny(message: string): Explanation {
  return { tier: 'default', policy: null, location: null, message };
}

export { denyReason } from '../../protocol/contracts.ts';

export function createAuthorizer(opts: AuthorizerOptions): SliceAuthorizer {
  const now = opts.now ?? (() => new Date());
  const random = opts.random ?? Math.random;
  let prepared = new WeakMap<Slice, Prepared>();
  /** Round-robin position per import; survives slice changes so the rotation continues. */
  let rrNext = new Map<string, number>();
  /** Session affinity: `<import>|<client address>` → exporter, in insertion (≈ last use) order. */
  let affinity = new Map<string, { peer: string; until: number }>();

  const current = (): { slice: Slice; p: Prepared } => {
    const slice = opts.slice();
    let p = prepared.get(slice);
    if (!p) {
      p = prepare(slice);
      prepared.set(slice, p);
      // Forget round-robin positions of imports that are gone (the map stays bounded by the slice).
      for (const key of rrNext.keys()) if (!p.imports.has(key)) rrNext.delete(key);
    }
    return { slice, p };
  };

  /** `client` null: unknown (no workload with that source address). */
  function judgeSources(slice: Slice, p: Prepared, imp: SliceImport, client: ClientAttributes | null): EgressSourceExplanation[] {
    const out: EgressSourceExplanation[] = [];
    // A plain loop: runs per connection, and closures here cost more than the decisions.
    for (const src of imp.sources) {
      if (!src.resolved) {
        out.push({ peer: src.peer, exportName: src.exportName, exportNamespace: src.exportNamespace, resolved: false, allowed: false, explanation: defaultDeny(`source ${src.peer}/${src.exportNamespace}/${src.exportName} does not resolve (no such peer or export)`) });
        continue;
      }
      const d = decideAccess(p.policies, {
        direction: 'egress',
        namespace: imp.namespace,
        self: slice.self.name,
        selfLabels: slice.self.labels,
        client,
        peer: { name: src.peer, labels: src.peerLabels },
        // As ClusterLink: at egress the export labels are the Import's (each side decides on its own objects).
        export: { name: src.exportName, namespace: src.exportNamespace, labels: imp.labels },
      });
      out.push({ peer: src.peer, exportName: src.exportName, exportNamespace: src.exportNamespace, resolved: true, allowed: d.allowed, explanation: d.explanation });
    }
    return out;
  }

  function explainEgress(check: EgressCheck): EgressExplanation {
    const { slice, p } = current();
    const importRef = ref(check.importNamespace, check.importName);
    const known = opts.clientAttributes(check.sourceAddress);
    const client = known ?? EMPTY_CLIENT;
    const imp = p.imports.get(importRef);
    if (!imp) return { import: importRef, found: false, client, sources: [] };
    return { import: importRef, found: true, client, sources: judgeSources(slice, p, imp, known) };
  }

  function rotate(imp: SliceImport, allowed: EgressCandidate[]): EgressCandidate[] {
    if (allowed.length <= 1 || imp.lbScheme === 'static') return allowed;
    let first: number;
    if (imp.lbScheme === 'random') first = Math.min(allowed.length - 1, Math.floor(random() * allowed.length));
    else {
      const key = ref(imp.namespace, imp.name);
      const n = rrNext.get(key) ?? 0;
      rrNext.set(key, (n + 1) % 1_000_000_007);
      first = n % allowed.length;
    }
    // The rest follow in written order after the pick, so failover still tries every allowed exporter.
    return [...allowed.slice(first), ...allowed.slice(0, first)];
  }

  function order(imp: SliceImport, allowed: EgressCandidate[], client: string): EgressCandidate[] {
    if (imp.sessionAffinity !== 'ClientIP' || allowed.length === 0) return rotate(imp, allowed);
    // Session affinity (as a Kubernetes Service's ClientIP): the client's previous exporter first
    // while it is still allowed; the map is bounded and entries expire.
    const key = `${ref(imp.namespace, imp.name)}|${client}`;
    const t = now().getTime();
    const sticky = affinity.get(key);
    const keep = sticky && sticky.until > t ? allowed.findIndex((c) => c.peer === sticky.peer) : -1;
    // A placed client does not advance the rotation: only new placements do.
    const result = keep >= 0 ? [allowed[keep] as EgressCandidate, ...allowed.slice(0, keep), ...allowed.slice(keep + 1)] : rotate(imp, allowed);
    affinity.delete(key);
    if (affinity.size >= AFFINITY_MAX_ENTRIES) affinity.delete(affinity.keys().next().value as string);
    affinity.set(key, { peer: (result[0] as EgressCandidate).peer, until: t + AFFINITY_TIMEOUT_MS });
    return result;
  }

  function egress(check: EgressCheck): EgressVerdict {
    const { slice, p } = current();
    const importRef = ref(check.importNamespace, check.importName);
    const imp = p.imports.get(importRef);
    if (!imp) return { allowed: false, explanation: defaultDeny(`no import ${importRef} on peer ${slice.self.name}`) };
    // An unknown client has no attributes (as in ClusterLink): refused when a policy selects on `from`,
    // otherwise decided by the policies that select nothing specific; it is sent on with no attribute headers.
    const known = opts.clientAttributes(check.sourceAddress);
    const client = known ?? EMPTY_CLIENT;
    const judged = judgeSources(slice, p, imp, known);
    const allowed: EgressCandidate[] = [];
    for (const j of judged) if (j.allowed) allowed.push({ peer: j.peer, exportName: j.exportName, exportNamespace: j.exportNamespace });
    if (allowed.length > 0) return { allowed: true, client, candidates: order(imp, allowed, check.sourceAddress) };
    const resolved = judged.filter((j) => j.resolved);
    if (resolved.length === 0) return { allowed: false, explanation: defaultDeny(`import ${importRef} has no resolvable source`) };
    const first = resolved[0] as EgressSourceExplanation;
    const message =
      resolved.length === 1
        ? first.explanation.message
        : `no exporter of ${importRef} allowed: ${resolved.map((r) => `${r.peer}: ${r.explanation.message}`).join('; ')}`;
    return { allowed: false, explanation: { ...first.explanation, message } };
  }

  function ingress(check: IngressCheck): IngressVerdict {
    const { slice, p } = current();
    const verified = verifyPeer([check.peerCertificateDer], slice, { now: now() });
    if (!verified.ok) {
      return { allowed: false, status: 403, peer: null, explanation: defaultDeny(`peer certificate refused (${verified.reason}): ${verified.detail}`) };
    }
    const peer = verified.peer;
    const exportRef = ref(check.exportNamespace, check.exportName);
    const exp = p.exports.get(exportRef);
    if (!exp) return { allowed: false, status: 404, peer, explanation: defaultDeny(`no export ${exportRef} on peer ${slice.self.name}`) };
    // Only peers whose committed imports name this export may reach it: the fabric records who imports what.
    if (!exp.importers.includes(peer)) {
      return { allowed: false, status: 403, peer, explanation: defaultDeny(`peer ${peer} does not import ${exportRef}`) };
    }
    const member = p.members.get(peer);
    const d = decideAccess(p.policies, {
      direction: 'ingress',
      namespace: exp.namespace,
      self: slice.self.name,
      selfLabels: slice.self.labels,
      // No attribute headers: the importing peer could not identify its client.
      client: isUnknownClient(check.client) ? null : check.client,
      peer: { name: peer, labels: member?.labels ?? {} },
      export: { name: exp.name, namespace: exp.namespace, labels: exp.labels },
    });
    if (!d.allowed) return { allowed: false, status: 403, peer, explanation: d.explanation };
    return { allowed: true, peer, target: { host: exp.host, port: exp.port } };
  }

  return {
    egress,
    ingress,
    explainEgress,
    invalidate: () => {
      prepared = new WeakMap();
      rrNext = new Map();
      affinity = new Map();
    },
  };
}
