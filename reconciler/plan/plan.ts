// `clgo plan`: what a pull request will change, per peer, computed from the base and head trees
// with the same slice and policy code the reconcilers run. Pure over two file maps.
import { isDeepStrictEqual } from 'node:util';
import type { Diagnostic, FabricModel } from '../../schema/model.ts';
import { validateFiles } from '../cli/commands/validate.ts';
import { computeFlows, flowKey, profilesFromPolicies, type ClientProfile, type Flow } from '../runtime/flows.ts';
import { diffSlices, type KeyedChanges } from '../slice/diff.ts';
import { sliceAll } from '../slice/slice.ts';
import type { Slice } from '../slice/types.ts';

export interface PeerPlan {
  peer: string;
  status: 'added' | 'removed' | 'changed' | 'unchanged';
  services: { create: string[]; update: string[]; delete: string[] };
  exports: KeyedChanges;
  tunnels: { open: string[]; close: string[] };
  policies: KeyedChanges;
  trustChanged: boolean;
}

export interface FlowChange {
  flow: string;
  importer: string;
  before: 'allowed' | 'denied' | 'absent';
  after: 'allowed' | 'denied' | 'absent';
  decidedBy: string;
}

/** A change of the peer labels the fabric admins attest (fabric.yaml spec.peers): other peers decide on them. */
export interface AttestationChange {
  peer: string;
  before: Record<string, string>;
  after: Record<string, string>;
  /** Peers whose policies see these labels: the peer itself and every peer it imports from or exports to. */
  decidedOn: string[];
}

export interface Plan {
  base: { revision: string; valid: boolean; errors: Diagnostic[] };
  head: { revision: string; valid: boolean; errors: Diagnostic[]; warnings: Diagnostic[] };
  peers: PeerPlan[];
  /** Attested peer labels that change: a change to other peers' decisions, reviewed by the admins. */
  attestations: AttestationChange[];
  flows: FlowChange[];
}

function verdict(f: Flow | undefined): FlowChange['before'] {
  return f === undefined ? 'absent' : f.allowed ? 'allowed' : 'denied';
}

function decidedBy(f: Flow | undefined): string {
  if (!f) return '';
  const d = !f.egress.allowed || !f.ingress ? f.egress : f.ingress;
  const side = !f.egress.allowed ? 'egress' : 'ingress';
  const e = d.explanation;
  return `${side}: ${e.policy ? `${e.tier} ${e.policy}${e.location ? ` (${e.location})` : ''}` : e.message}`;
}

const emptyKeyed = (): KeyedChanges => ({ added: [], changed: [], removed: [] });

export function planFabrics(input: { baseRevision: string; headRevision: string; base: ReadonlyMap<string, Uint8Array>; head: ReadonlyMap<string, Uint8Array>; now?: Date }): Plan {
  const baseReport = validateFiles(input.base, input.now);
  const headReport = validateFiles(input.head, input.now);
  const plan: Plan = {
    base: { revision: input.baseRevision, valid: baseReport.ok, errors: baseReport.errors },
    head: { revision: input.headRevision, valid: headReport.ok, errors: headReport.errors, warnings: headReport.warnings },
    peers: [],
    attestations: [],
    flows: [],
  };
  if (!headReport.ok) return plan;
  const baseFabric: FabricModel | null = baseReport.fabric;
  const headFabric = headReport.fabric!;
  const baseSlices = baseFabric ? sliceAll(baseFabric) : new Map<string, Slice>();
  const headSlices = sliceAll(headFabric);
  const names = [...new Set([...baseSlices.keys(), ...headSlices.keys()])].sort();

  for (const peer of names) {
    const before = baseSlices.get(peer) ?? null;
    const after = headSlices.get(peer) ?? null;
    if (!after) {
      plan.peers.push({ peer, status: 'removed', services: { create: [], update: [], delete: before!.imports.map((i) => `${i.namespace}/${i.name}`) }, exports: { ...emptyKeyed(), removed: before!.exports.map((e) => `${e.namespace}/${e.name}`) }, tunnels: { open: [], close: before!.members.map((m) => m.name) }, policies: { ...emptyKeyed(), removed: before!.policies.map((p) => p.name) }, trustChanged: true });
      continue;
    }
    const d = diffSlices(before, after);
    plan.peers.push({
      peer,
      status: before === null ? 'added' : d.empty ? 'unchanged' : 'changed',
      services: { create: d.imports.added, update: d.imports.changed, delete: d.imports.removed },
      exports: d.exports,
      tunnels: { open: d.members.added, close: d.members.removed },
      policies: d.policies,
      trustChanged: before !== null && d.trustChanged,
    });
  }

  const labelsIn = (f: FabricModel | null, peer: string): Record<string, string> => f?.peerLabels[peer] ?? {};
  for (const peer of [...new Set([...Object.keys(baseFabric?.peerLabels ?? {}), ...Object.keys(headFabric.peerLabels)])].sort()) {
    const before = labelsIn(baseFabric, peer);
    const after = labelsIn(headFabric, peer);
    if (isDeepStrictEqual(before, after)) continue;
    const decidedOn = new Set<string>();
    for (const [name, s] of headSlices) if (name === peer || s.members.some((m) => m.name === peer)) decidedOn.add(name);
    for (const [name, s] of baseSlices) if (name === peer || s.members.some((m) => m.name === peer)) decidedOn.add(name);
    plan.attestations.push({ peer, before, after, decidedOn: [...decidedOn].sort() });
  }

  // The same client profiles on both sides, so a flow is compared with itself.
  const profiles = new Map<string, Map<string, ClientProfile>>();
  for (const slices of [baseSlices, headSlices]) {
    for (const [peer, s] of slices) {
      const m = profiles.get(peer) ?? new Map<string, ClientProfile>();
      for (const p of profilesFromPolicies(s)) m.set(p.name, p);
      profiles.set(peer, m);
    }
  }
  const clients = (peer: string): ClientProfile[] => [...(profiles.get(peer)?.values() ?? [])];
  const baseFlows = new Map((baseFabric ? computeFlows(baseFabric, clients) : []).map((f) => [flowKey(f), f]));
  const headFlows = new Map(computeFlows(headFabric, clients).map((f) => [flowKey(f), f]));
  for (const key of [...new Set([...baseFlows.keys(), ...headFlows.keys()])].sort()) {
    const b = baseFlows.get(key);
    const h = headFlows.get(key);
    const before = verdict(b);
    const after = verdict(h);
    if (before === after) continue;
    plan.flows.push({ flow: key, importer: (h ?? b)!.importer, before, after, decidedBy: decidedBy(h ?? b) });
  }
  return plan;
}

const short = (rev: string): string => (/^[0-9a-f]{40}$/.test(rev) ? rev.slice(0, 12) : rev);
const list = (xs: string[]): string => xs.map((x) => `\`${x}\``).join(', ');
/** Policy keys are `<Kind>/<namespace>/<name>`; privileged ones have no namespace. */
const policyList = (xs: string[]): string =>
  xs.map((x) => {
    const [kind, ns, name] = x.split('/');
    return kind === 'PrivilegedAccessPolicy' ? `\`${name}\` (privileged)` : `\`${ns}/${name}\``;
  }).join(', ');

export function planToMarkdown(plan: Plan): string {
  const out: string[] = [];
  out.push(`## clgo plan: \`${short(plan.base.revision)}\` → \`${short(plan.head.revision)}\``, '');
  if (!plan.head.valid) {
    out.push(`❌ **The head revision is invalid** (${plan.head.errors.length} error(s)); reconcilers would refuse it and keep serving the last good revision.`, '');
    out.push('| where | problem | what to do |', '|---|---|---|');
    for (const e of plan.head.errors) out.push(`| \`${e.file}:${e.line}\` | ${e.message.replace(/\|/g, '\\|')} | ${e.hint.replace(/\|/g, '\\|')} |`);
    return `${out.join('\n')}\n`;
  }
  if (!plan.base.valid) out.push('⚠️ The base revision was invalid; every object below is compared with nothing.', '');
  const changed = plan.peers.filter((p) => p.status !== 'unchanged');
  out.push(changed.length === 0 ? '✅ Valid. No peer changes.' : `✅ Valid. ${changed.length} of ${plan.peers.length} peer(s) change.`, '');
  if (plan.attestations.length) {
    const labelText = (l: Record<string, string>): string => (Object.keys(l).length ? Object.entries(l).map(([k, v]) => `\`${k}=${v}\``).join(', ') : '(none)');
    out.push('### Attested peer labels (fabric.yaml, fabric admins)', '', 'Other peers\' policies decide on these labels (`peer.clusterlink.net/labels.*`).', '', '| peer | before | after | decisions of |', '|---|---|---|---|');
    for (const a of plan.attestations) out.push(`| \`${a.peer}\` | ${labelText(a.before)} | ${labelText(a.after)} | ${list(a.decidedOn)} |`);
    out.push('');
  }
  for (const p of changed) {
    out.push(`### ${p.peer} (${p.status})`, '');
    const rows: string[] = [];
    if (p.services.create.length) rows.push(`| create Service | ${list(p.services.create)} |`);
    if (p.services.update.length) rows.push(`| update Service | ${list(p.services.update)} |`);
    if (p.services.delete.length) rows.push(`| delete Service | ${list(p.services.delete)} |`);
    if (p.exports.added.length) rows.push(`| new export | ${list(p.exports.added)} |`);
    if (p.exports.changed.length) rows.push(`| changed export (target or importers) | ${list(p.exports.changed)} |`);
    if (p.exports.removed.length) rows.push(`| removed export | ${list(p.exports.removed)} |`);
    if (p.tunnels.open.length) rows.push(`| tunnels open to/from | ${list(p.tunnels.open)} |`);
    if (p.tunnels.close.length) rows.push(`| tunnels close to/from | ${list(p.tunnels.close)} |`);
    if (p.policies.added.length) rows.push(`| new policy | ${policyList(p.policies.added)} |`);
    if (p.policies.changed.length) rows.push(`| changed policy | ${policyList(p.policies.changed)} |`);
    if (p.policies.removed.length) rows.push(`| removed policy | ${policyList(p.policies.removed)} |`);
    if (p.trustChanged) rows.push('| trust | CA bundle, revocations or a pinned certificate changed: open tunnels are re-checked |');
    if (rows.length) out.push('| change | objects |', '|---|---|', ...rows, '');
  }
  if (plan.flows.length) {
    out.push('### Flows that change', '', '| flow | before | after | decided by |', '|---|---|---|---|');
    for (const f of plan.flows) out.push(`| \`${f.flow}\` | ${f.before} | ${f.after === 'allowed' ? '🟢 allowed' : f.after === 'denied' ? '🔴 denied' : 'absent'} | ${f.decidedBy} |`);
    out.push('');
  }
  if (plan.head.warnings.length) {
    out.push(`<details><summary>${plan.head.warnings.length} warning(s)</summary>`, '');
    for (const w of plan.head.warnings) out.push(`- \`${w.file}:${w.line}\` ${w.message}`);
    out.push('', '</details>', '');
  }
  return `${out.join('\n')}\n`;
}
