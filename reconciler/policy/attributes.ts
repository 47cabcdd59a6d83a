// The attribute vocabulary of access policies (ClusterLink's, unchanged) and the two attribute sets
// of one connection: source (matched by a policy's `from`) and destination (matched by `to`).
//
// Egress (decided on the importing peer): src = the local client; dst = the export and the
// exporting peer. Ingress (decided on the exporting peer): src = the client (as asserted by the
// verified importing peer) and the importing peer; dst = the export.
import type { ClientAttributes } from '../../dataplane/contracts.ts';

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
  /** The peer deciding (for messages). */
  self: string;
  client: ClientAttributes;
  /** The other peer: the exporter on egress, the verified importer on ingress. */
  peer: { name: string; labels: Record<string, string> };
  export: { name: string; namespace: string; labels: Record<string, string> };
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
  const src = clientAttributes(r.client);
  const dst = exportAttributes(r.export);
  if (r.direction === 'ingress') peerAttributes(r.peer.name, r.peer.labels, src);
  else peerAttributes(r.peer.name, r.peer.labels, dst);
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
