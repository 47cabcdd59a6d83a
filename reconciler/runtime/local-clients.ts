// Local mode has no Pods to watch: the attributes of local client processes (namespace, service
// account, labels) come from a small YAML file, keyed by the loopback address each client binds to.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { DNS1123_SUBDOMAIN } from '../../protocol/connect-head.ts';
import type { ClientAttributes } from '../../protocol/contracts.ts';
import { labels as labelsSchema, dns1123Label } from '../../schema/kinds.ts';

const clientSchema = z.strictObject({
  address: z.string().refine((a) => isIP(a) !== 0, 'must be an IP address, e.g. 127.0.0.21'),
  namespace: dns1123Label,
  // Sent to the exporting gateway in a CONNECT header: a Kubernetes name (DNS-1123 subdomain), as a Pod's would be.
  serviceAccount: z.string().max(253, 'must be at most 253 characters (a Kubernetes service account name)').regex(DNS1123_SUBDOMAIN, 'must be a Kubernetes service account name (DNS-1123 subdomain: lower-case letters, digits, "-" and ".")').optional(),
  labels: labelsSchema.optional(),
});

export const localClientsSchema = z.strictObject({
  clients: z.array(clientSchema).max(10_000),
});

export type LocalClients = z.infer<typeof localClientsSchema>;

/** Strips the IPv4-mapped IPv6 prefix Node reports for IPv4 clients on dual-stack sockets. */
export function normalizeAddress(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

export function clientLookup(config: LocalClients): (address: string) => ClientAttributes | null {
  const byAddress = new Map<string, ClientAttributes>();
  for (const c of config.clients) {
    const attrs: ClientAttributes = { namespace: c.namespace, labels: { ...(c.labels ?? {}) } };
    if (c.serviceAccount !== undefined) attrs.serviceAccount = c.serviceAccount;
    byAddress.set(normalizeAddress(c.address), attrs);
  }
  return (address) => byAddress.get(normalizeAddress(address)) ?? null;
}

/** Reads and validates a clients file; errors name the file and the field. */
export function readLocalClients(path: string): LocalClients {
  const text = readFileSync(path, 'utf8');
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const line = e.linePos?.[0]?.line ?? 1;
    throw new Error(`${path}:${line}: ${e.message}`);
  }
  const parsed = localClientsSchema.safeParse(doc.toJS());
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${path}: ${issue.path.join('.') || '(root)'}: ${issue.message} (expected: clients: [{address, namespace, serviceAccount?, labels?}])`);
  }
  return parsed.data;
}
