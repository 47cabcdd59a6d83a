// Flows: for every import of every peer, every exporter it names, and every known client of the
// importing peer, the two decisions a real connection would meet (egress on the importer, ingress
// on the exporter). Pure, over the Fabric model; used by the status page's graph and `clgo plan`.
import type { ClientAttributes, Explanation } from '../../protocol/contracts.ts';
import type { FabricModel } from '../../schema/model.ts';
import { sliceAll } from '../slice/slice.ts';
import type { Slice } from '../slice/types.ts';
import { compilePolicies, decideAccess, isUnknownClient, type CompiledPolicies } from '../policy/index.ts';

export interface ClientProfile {
  /** A short stable name, e.g. `perf/app=iperf-client`. */
  name: string;
  attributes: ClientAttributes;
}

export interface Flow {
  importer: string;
  import: string;
  client: string;
  exporter: string;
  export: string;
  egress: Decision;
  /** Null when egress already refused or the source does not resolve. */
  ingress: Decision | null;
  allowed: boolean;
}

export interface Decision {
  allowed: boolean;
  explanation: Explanation;
}

export function profileName(c: ClientAttributes): string {
  const labels = Object.entries(c.labels)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`);
  return [`${c.namespace ?? '?'}${c.serviceAccount ? `:${c.serviceAccount}` : ''}`, ...labels].join('/');
}

/**
 * Client profiles to judge when no real client list is given: one per namespace of the peer's
 * imports, with each combination of client labels its own policies mention, plus the bare
 * namespace. Enough to show every rule at work without inventing workloads.
 */
export function profilesFromPolicies(s: Slice): ClientProfile[] {
  const out = new Map<string, ClientProfile>();
  const add = (attributes: ClientAttributes): void => {
    out.set(profileName(attributes), { name: profileName(attributes), attributes });
  };
  const namespaces = [...new Set(s.imports.map((i) => i.namespace))].sort();
  for (const ns of namespaces) {
    add({ namespace: ns, labels: {} });
    for (const p of s.policies) {
      if (p.namespace !== null && p.namespace !== ns) continue;
      for (const from of p.from) {
        const sel = from.workloadSelector;
        if (!sel) continue;
        const labels: Record<string, string> = {};
        for (const [k, v] of Object.entries(sel.matchLabels ?? {})) {
          if (k.startsWith('client.clusterlink.net/labels.')) labels[k.slice('client.clusterlink.net/labels.'.length)] = v;
        }
        if (Object.keys(labels).length > 0) add({ namespace: ns, labels });
      }
    }
  }
  // A profile that combines an allowed label set with a denied one shows privileged deny winning.
  const list = [...out.values()];
  for (const a of list) for (const b of list) {
    if (a === b || a.attributes.namespace !== b.attributes.namespace) continue;
    const merged = { ...a.attributes.labels, ...b.attributes.labels };
    if (Object.keys(merged).length > Object.keys(a.attributes.labels).length && Object.keys(a.attributes.labels).length > 0 && Object.keys(b.attributes.labels).length > 0) {
      add({ namespace: a.attributes.namespace, labels: merged });
    }
  }
  return [...out.values()].sort((x, y) => (x.name < y.name ? -1 : 1));
}

export function computeFlows(fabric: FabricModel, clients?: (peer: string, s: Slice) => ClientProfile[]): Flow[] {
  const slices = sliceAll(fabric);
  const compiled = new Map<string, CompiledPolicies>();
  const policiesOf = (peer: string): CompiledPolicies => {
    let c = compiled.get(peer);
    if (!c) {
      c = compilePolicies(slices.get(peer)?.policies ?? []);
      compiled.set(peer, c);
    }
    return c;
  };
  const flows: Flow[] = [];
  for (const [importer, s] of slices) {
    const profiles = clients ? clients(importer, s) : profilesFromPolicies(s);
    for (const imp of s.imports) {
      for (const profile of profiles) {
        if (profile.attributes.namespace !== undefined && profile.attributes.namespace !== imp.namespace) continue;
        for (const src of imp.sources) {
          const base = { importer, import: `${imp.namespace}/${imp.name}`, client: profile.name, exporter: src.peer, export: `${src.exportNamespace}/${src.exportName}` };
          if (!src.resolved) {
            const d: Decision = { allowed: false, explanation: { tier: 'default', policy: null, location: null, message: `source ${src.peer}/${src.exportNamespace}/${src.exportName} does not resolve` } };
            flows.push({ ...base, egress: d, ingress: null, allowed: false });
            continue;
          }
          // As the data plane does: an attribute-less client is an unknown one; egress sees the Import's labels.
          const client = isUnknownClient(profile.attributes) ? null : profile.attributes;
          const egress = decideAccess(policiesOf(importer), { direction: 'egress', namespace: imp.namespace, self: importer, selfLabels: s.self.labels, client, peer: { name: src.peer, labels: src.peerLabels }, export: { name: src.exportName, namespace: src.exportNamespace, labels: imp.labels } });
          if (!egress.allowed) {
            flows.push({ ...base, egress, ingress: null, allowed: false });
            continue;
          }
          const ingress = decideAccess(policiesOf(src.peer), { direction: 'ingress', namespace: src.exportNamespace, self: src.peer, selfLabels: src.peerLabels, client, peer: { name: importer, labels: s.self.labels }, export: { name: src.exportName, namespace: src.exportNamespace, labels: src.exportLabels } });
          flows.push({ ...base, egress, ingress, allowed: ingress.allowed });
        }
      }
    }
  }
  return flows;
}

export const flowKey = (f: Flow): string => `${f.importer} ${f.import} [${f.client}] → ${f.exporter} ${f.export}`;
