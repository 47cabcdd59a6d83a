// The whole path of one would-be connection, as `clgo explain` prints it: the egress decision on
// the importing peer for each exporter (in load-balancing order), the ingress decision on each
// exporting peer, and the verdict. Pure: a fabric model in, a plain report out.
import type { ClientAttributes } from '../../protocol/contracts.ts';
import type { FabricModel, LbScheme } from '../../schema/model.ts';
import { indexFabric, sliceFromIndex } from '../slice/slice.ts';
import { ATTR, isUnknownClient, requestAttributes, type AccessRequest, type Attributes } from './attributes.ts';
import { compilePolicies, decide, tracePolicies, type Decision, type PolicyTrace } from './engine.ts';

export interface ExplainedCandidate {
  peer: string;
  export: string;
  /** False when the source names a missing or revoked peer/export: never tried. */
  resolved: boolean;
  egress: Decision | null;
  /** Evaluated even when egress denies, so both sides are visible; `reached` says whether it would run. */
  ingress: Decision | null;
  /** The attribute sets each side's policies saw (`from` = src, `to` = dst). */
  egressAttributes: { src: Attributes; dst: Attributes } | null;
  ingressAttributes: { src: Attributes; dst: Attributes } | null;
  reached: boolean;
  allowed: boolean;
  /** Policies of the deciding peer that did not match, when a side fell to default deny. */
  trace: PolicyTrace[];
  note: string | null;
}

export interface PathExplanation {
  importer: string;
  import: string;
  lbScheme: LbScheme;
  client: ClientAttributes;
  /** Written order; round-robin and random rotate the start among the allowed ones, static fails over in this order. */
  candidates: ExplainedCandidate[];
  allowed: boolean;
  /** The exporter a first connection would use (static: first allowed; others: one of the allowed). */
  verdict: string;
}

export type ExplainError = { error: 'no-such-peer'; peers: string[] } | { error: 'no-such-import'; imports: string[] };

export function explainPath(fabric: FabricModel, importer: string, importRef: string, client: ClientAttributes): PathExplanation | ExplainError {
  const index = indexFabric(fabric);
  if (!index.peers.has(importer)) return { error: 'no-such-peer', peers: [...index.peers.keys()].sort() };
  const mine = sliceFromIndex(index, importer);
  const imp = mine.imports.find((i) => `${i.namespace}/${i.name}` === importRef);
  if (!imp) return { error: 'no-such-import', imports: mine.imports.map((i) => `${i.namespace}/${i.name}`) };
  const egressPolicies = compilePolicies(mine.policies);
  const importerLabels = mine.self.labels;
  // No attributes given: an unknown client, as the data plane sees a client it cannot identify.
  const known = isUnknownClient(client) ? null : client;

  const candidates = imp.sources.map((src): ExplainedCandidate => {
    const exportRef = `${src.exportNamespace}/${src.exportName}`;
    const base = { peer: src.peer, export: exportRef };
    if (!src.resolved) {
      return { ...base, resolved: false, egress: null, ingress: null, egressAttributes: null, ingressAttributes: null, reached: false, allowed: false, trace: [], note: `peer ${src.peer} or its export ${exportRef} does not exist, or the peer is revoked` };
    }
    // Egress sees the Import's labels as export labels, ingress the Export's (ClusterLink's rule).
    const egressReq: AccessRequest = { direction: 'egress', namespace: imp.namespace, self: importer, selfLabels: importerLabels, client: known, peer: { name: src.peer, labels: src.peerLabels }, export: { name: src.exportName, namespace: src.exportNamespace, labels: imp.labels } };
    const egress = decide(egressPolicies, egressReq);
    const theirs = sliceFromIndex(index, src.peer);
    const ingressReq: AccessRequest = { direction: 'ingress', namespace: src.exportNamespace, self: src.peer, selfLabels: theirs.self.labels, client: known, peer: { name: importer, labels: importerLabels }, export: { name: src.exportName, namespace: src.exportNamespace, labels: src.exportLabels } };
    const ingress = decide(compilePolicies(theirs.policies), ingressReq);
    const trace = [
      ...(egress.reason === 'default-deny' ? tracePolicies(mine.policies, egressReq).filter((t) => t.applies) : []),
      ...(ingress.reason === 'default-deny' ? tracePolicies(theirs.policies, ingressReq).filter((t) => t.applies) : []),
    ];
    return { ...base, resolved: true, egress, ingress, egressAttributes: requestAttributes(egressReq), ingressAttributes: requestAttributes(ingressReq), reached: egress.allowed, allowed: egress.allowed && ingress.allowed, trace, note: null };
  });
  const allowed = candidates.filter((c) => c.allowed);
  const verdict =
    allowed.length === 0
      ? `refused: no exporter of ${importRef} is allowed by both egress (on ${importer}) and ingress (on the exporter)`
      : imp.lbScheme === 'static'
        ? `allowed: connects to ${allowed[0]!.peer}${allowed.length > 1 ? `, fails over to ${allowed.slice(1).map((c) => c.peer).join(', ')}` : ''}`
        : `allowed: ${imp.lbScheme} over ${allowed.map((c) => c.peer).join(', ')}`;
  return { importer, import: importRef, lbScheme: imp.lbScheme, client, candidates, allowed: allowed.length > 0, verdict };
}

const side = (name: string, d: Decision | null, reached = true): string => {
  if (!d) return `${name}: -`;
  const mark = d.allowed ? 'allow' : 'deny';
  const by =
    d.reason === 'unknown-client'
      ? `unknown client refused: a policy selects on source attributes (${d.location}), ClusterLink's rule`
      : d.policy
        ? `${d.tier} policy ${d.policy} (${d.location})${d.matched ? ` matched ${d.matched}` : ''}`
        : 'no policy matched (default deny)';
  return `${name}: ${mark} — ${by}${reached ? '' : ' [not reached: egress denies]'}`;
};

/** `{k=v, ...}` with peer labels marked as attested (they come from fabric.yaml). */
const attributeSet = (a: Attributes): string =>
  `{${Object.entries(a)
    .map(([k, v]) => `${k}=${v}${k.startsWith(ATTR.peerLabelPrefix) ? ' (fabric.yaml)' : ''}`)
    .join(', ')}}`;

export function explanationToText(e: PathExplanation): string {
  const c = e.client;
  const who = [c.namespace && `namespace=${c.namespace}`, c.serviceAccount && `serviceAccount=${c.serviceAccount}`, ...Object.entries(c.labels).map(([k, v]) => `labels.${k}=${v}`)].filter(Boolean).join(', ');
  const lines = [`${e.importer} → import ${e.import} (lbScheme ${e.lbScheme}), client ${who || '(unknown: no attributes)'}`];
  e.candidates.forEach((cand, i) => {
    lines.push(`  ${i + 1}. ${cand.peer} ${cand.export}: ${cand.allowed ? 'ALLOWED' : 'REFUSED'}`);
    if (!cand.resolved) {
      lines.push(`     ${cand.note}`);
      return;
    }
    // The attributes a side's policies saw, where that side refused (an allow names the entries that matched).
    lines.push(`     ${side(`egress on ${e.importer}`, cand.egress)}`);
    if (cand.egressAttributes && cand.egress && !cand.egress.allowed) lines.push(`       saw from ${attributeSet(cand.egressAttributes.src)} to ${attributeSet(cand.egressAttributes.dst)}`);
    lines.push(`     ${side(`ingress on ${cand.peer}`, cand.ingress, cand.reached)}`);
    if (cand.ingressAttributes && cand.ingress && !cand.ingress.allowed && cand.reached) lines.push(`       saw from ${attributeSet(cand.ingressAttributes.src)} to ${attributeSet(cand.ingressAttributes.dst)}`);
    for (const t of cand.trace) lines.push(`       · ${t.tier} ${t.action} ${t.policy} (${t.location}): ${t.reason}`);
  });
  lines.push(`verdict: ${e.verdict}`);
  return `${lines.join('\n')}\n`;
}
