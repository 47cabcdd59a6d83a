// The attribute vocabulary of access policies (ClusterLink's, unchanged) and the two attribute sets
// of one connection: source (matched by a policy's `from`) and destination (matched by `to`). They
// are assembled as ClusterLink's authz manager does (pkg/controlplane/authz/manager.go,
// getSrcAttributes / getDstAttributes):
//
// Egress (decided on the importing peer):
//   src = the local client + the importing (local) peer's own name and labels;
//   dst = the export's name and namespace, the *Import's* labels as export labels, and the exporting
//         peer's name and labels.
// Ingress (decided on the exporting peer):
//   src = the client (as asserted by the importing peer) + the importing peer's name (from its
//         verified certificate, where ClusterLink takes the name the remote control plane sends)
//         and labels;
//   dst = the export's name, namespace and labels + the exporting (local) peer's name and labels.
// Peer labels are the ones the fabric admins attest in fabric.yaml, on both sides (docs/policy.md).
import type { ClientAttributes } from '../../protocol/contracts.ts';

export const ATTR = {
  peerName: 'peer.clusterlink.net/name',
  peerLabelPrefix: 'peer.clusterlink.net/labels.',
  clientNamespace: 'client.clusterlink.net/namespace',
  clientServiceAccount: 'client.clusterlink.net/service-account',
  clientLabelPrefix: 'client.clusterlink.net/labels.',
  exportName: 'export.clusterlink.net/name',
  exportNamespace: 'export.clusterlink.net/namespace',
  exportLabelPrefix: 'export.clusterlink.net/labels.',
} as const;

export type Attributes = Record<string, string>;

export interface AccessRequest {
  direction: 'egress' | 'ingress';
  /** Whose user policies apply: the import's namespace on egress, the export's on ingress. */
  namespace: string;
  /** The peer deciding: its name is an attribute (egress source, ingress destination). */
  self: string;
  /** The deciding peer's attested labels. */
  selfLabels: Record<string, string>;
  /**
   * The client's attributes; null when unknown (egress: no Pod has the source address; ingress: the
   * importing peer sent none). An unknown client is refused when any policy selects on `from`.
   */
  client: ClientAttributes | null;
  /** The other peer: the exporter on egress, the verified importer on ingress. */
  peer: { name: string; labels: Record<string, string> };
  /** The export's name and namespace; labels: the Import's on egress, the Export's on ingress. */
  export: { name: string; namespace: string; labels: Record<string, string> };
}

/** Client attributes that say nothing (what a data plane sends for a client it could not identify). */
export function isUnknownClient(c: ClientAttributes): boolean {
  if (c.namespace !== undefined || c.serviceAccount !== undefined) return false;
  for (const k in c.labels) if (Object.hasOwn(c.labels, k)) return false;
  return true;
}

export function clientAttributes(c: ClientAttributes, into: Attributes = {}): Attributes {
  if (c.namespace !== undefined) into[ATTR.clientNamespace] = c.namespace;
  if (c.serviceAccount !== undefined) into[ATTR.clientServiceAccount] = c.serviceAccount;
  for (const k in c.labels) into[ATTR.clientLabelPrefix + k] = c.labels[k] as string;
  return into;
}

export function peerAttributes(name: string, labels: Record<string, string>, into: Attributes = {}): Attributes {
  into[ATTR.peerName] = name;
  for (const k in labels) into[ATTR.peerLabelPrefix + k] = labels[k] as string;
  return into;
}

export function exportAttributes(e: AccessRequest['export'], into: Attributes = {}): Attributes {
  into[ATTR.exportName] = e.name;
  into[ATTR.exportNamespace] = e.namespace;
  for (const k in e.labels) into[ATTR.exportLabelPrefix + k] = e.labels[k] as string;
  return into;
}

/** The attribute sets one request presents to the policies. */
export function requestAttributes(r: AccessRequest): { src: Attributes; dst: Attributes } {
  const src = r.client ? clientAttributes(r.client) : {};
  const dst = exportAttributes(r.export);
  if (r.direction === 'ingress') {
    peerAttributes(r.peer.name, r.peer.labels, src);
    peerAttributes(r.self, r.selfLabels, dst);
  } else {
    peerAttributes(r.self, r.selfLabels, src);
    peerAttributes(r.peer.name, r.peer.labels, dst);
  }
  return { src, dst };
}

/**
 * Parses `k=v,k=v` attribute lists from the command line. Bare keys `namespace`, `serviceAccount`,
 * `labels.<k>` are accepted for clients as shorthands of the full attribute names.
 */
export function parseAttributeList(text: string): { ok: true; attributes: Attributes } | { ok: false; error: string } {
  const out: Attributes = {};
  if (text.trim() === '') return { ok: true, attributes: out };
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return { ok: false, error: `"${part}" is not key=value` };
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (Object.hasOwn(out, key)) return { ok: false, error: `attribute ${key} given twice` };
    out[key] = value;
  }
  return { ok: true, attributes: out };
}

/** Client attributes from `namespace=..,serviceAccount=..,labels.k=v` (the `clgo explain --client` form). */
export function parseClientSpec(text: string): { ok: true; client: ClientAttributes } | { ok: false; error: string } {
  const parsed = parseAttributeList(text);
  if (!parsed.ok) return parsed;
  const client: ClientAttributes = { labels: {} };
  for (const [k, v] of Object.entries(parsed.attributes)) {
    if (k === 'namespace' || k === ATTR.clientNamespace) client.namespace = v;
    else if (k === 'serviceAccount' || k === 'service-account' || k === ATTR.clientServiceAccount) client.serviceAccount = v;
    else if (k.startsWith('labels.')) client.labels[k.slice('labels.'.length)] = v;
    else if (k.startsWith(ATTR.clientLabelPrefix)) client.labels[k.slice(ATTR.clientLabelPrefix.length)] = v;
    else return { ok: false, error: `unknown client attribute "${k}" (use namespace=, serviceAccount=, labels.<key>=)` };
  }
  return { ok: true, client };
}
