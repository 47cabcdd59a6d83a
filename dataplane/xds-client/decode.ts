// Envoy xDS resources → DataplaneConfig, following the shared naming contract (docs/xds.md):
//   Listener clusterlink/egress/<ns>/<name>   metadata clusterlink.net {kind: egress, importNamespace, importName}
//   Listener clusterlink/ingress              metadata clusterlink.net {kind: ingress}
//   Cluster  clusterlink/peer/<peer>          EDS, upstream TLS (SNI), endpoints = ClusterLoadAssignment of that name
//   Secret   clusterlink/identity             tls_certificate: this peer's certificate + key
//   Secret   clusterlink/fabric-ca            validation_context: CA bundle + pins of current members
// Pure functions over decoded objects: decodeResource validates one resource (an error NACKs the
// whole response), assembleConfig builds a config only when every reference resolves.
import { z } from 'zod';
import type { DataplaneConfig, EgressListenerConfig, Endpoint, UpstreamPeer } from '../../protocol/contracts.ts';
import { decodeAny, knowsType, TYPE_URL, type ResourceKind } from '../../protocol/envoy-protos.ts';

export const NAMES = {
  egressPrefix: 'clusterlink/egress/',
  ingress: 'clusterlink/ingress',
  peerPrefix: 'clusterlink/peer/',
  exportPrefix: 'clusterlink/export/',
  identitySecret: 'clusterlink/identity',
  caSecret: 'clusterlink/fabric-ca',
  metadataKey: 'clusterlink.net',
} as const;

export interface DecodedListener {
  name: string;
  kind: 'egress' | 'ingress' | 'other';
  address: string;
  port: number;
  importNamespace: string | null;
  importName: string | null;
  /** Clusters and secrets this listener refers to (must be present before the config is applied). */
  clusters: string[];
  secrets: string[];
}

export interface DecodedCluster {
  name: string;
  /** For clusterlink/peer/<peer>. */
  peer: string | null;
  /** ClusterLoadAssignment name when the cluster uses EDS; null otherwise. */
  edsName: string | null;
  sni: string | null;
  secrets: string[];
  /** `clusterlink.net` metadata `authz-inputs` (on the ext_authz cluster): changes when policies or members do. */
  authzInputs: string | null;
}

export interface DecodedEndpoints {
  name: string;
  endpoints: Endpoint[];
}

export interface DecodedSecret {
  name: string;
  /** Inline PEM, or the files to read it from (the mounted Secret: how our control plane sends it). */
  tlsCertificate: { certificatePem: string; privateKeyPem: string } | { certificateFile: string; privateKeyFile: string } | null;
  validation: { caCertificatesPem: string[]; pins: string[] } | null;
}

export type Decoded =
  | { kind: 'listener'; value: DecodedListener }
  | { kind: 'cluster'; value: DecodedCluster }
  | { kind: 'endpoint'; value: DecodedEndpoints }
  | { kind: 'secret'; value: DecodedSecret };

/** A resource the client refuses (the response is NACKed with this message). */
export class ResourceError extends Error {
  override name = 'ResourceError';
}

const MAX_NAME = 512;
const socketAddress = z.object({
  address: z.string().min(1).max(253),
  port_value: z.coerce.number().int().min(1).max(65535),
});
const anyValue = z.object({ type_url: z.string().max(512), value: z.instanceof(Uint8Array) });

/** Walks a decoded message, decoding nested typed_config Anys we know, collecting cluster and secret references. */
function collectRefs(msg: unknown, out: { clusters: Set<string>; secrets: Set<string> }, depth = 0): void {
  if (depth > 40 || typeof msg !== 'object' || msg === null) return;
  if (Array.isArray(msg)) {
    for (const m of msg) collectRefs(m, out, depth + 1);
    return;
  }
  for (const [key, value] of Object.entries(msg as Record<string, unknown>)) {
    if (key === 'typed_config') {
      const any = anyValue.safeParse(value);
      if (any.success && knowsType(any.data.type_url)) collectRefs(decodeAny(any.data.type_url, any.data.value), out, depth + 1);
      continue;
    }
    // tcp_proxy.cluster, route.cluster, weighted_clusters[].name are cluster names; grpc_service.envoy_grpc.cluster_name too.
    if ((key === 'cluster' || key === 'cluster_name') && typeof value === 'string' && value !== '') out.clusters.add(value);
    else if (key === 'clusters' && Array.isArray(value)) {
      for (const c of value) if (c && typeof (c as { name?: unknown }).name === 'string') out.clusters.add((c as { name: string }).name);
    } else if ((key === 'tls_certificate_sds_secret_configs' || key === 'validation_context_sds_secret_config') && value) {
      for (const c of Array.isArray(value) ? value : [value]) if (c && typeof (c as { name?: unknown }).name === 'string') out.secrets.add((c as { name: string }).name);
    } else collectRefs(value, out, depth + 1);
  }
}

/** filter_metadata["clusterlink.net"] as flat strings (Struct values of string type). */
function clusterlinkMetadata(msg: Record<string, unknown>): Record<string, string> | null {
  const fm = (msg.metadata as { filter_metadata?: Record<string, unknown> } | undefined)?.filter_metadata?.[NAMES.metadataKey];
  if (!fm) return null;
  const fields = (fm as { fields?: Record<string, Record<string, unknown>> }).fields ?? {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(fields)) {
    const s = v.stringValue ?? v.string_value;
    if (typeof s === 'string') out[k] = s;
  }
  return out;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** Peer names: DNS-1123 subdomains of at most 63 characters (schema/kinds.ts PEER_NAME). */
const PEER_NAME = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function decodeListener(msg: Record<string, unknown>): DecodedListener {
  const name = z.string().min(1).max(MAX_NAME).parse(msg.name);
  const meta = clusterlinkMetadata(msg);
  const refs = { clusters: new Set<string>(), secrets: new Set<string>() };
  collectRefs({ filter_chains: msg.filter_chains, default_filter_chain: msg.default_filter_chain }, refs);
  const base = { name, clusters: [...refs.clusters].sort(), secrets: [...refs.secrets].sort() };
  const kind = meta?.kind;
  if (kind !== 'egress' && kind !== 'ingress') return { ...base, kind: 'other', address: '', port: 0, importNamespace: null, importName: null };
  const addr = socketAddress.safeParse((msg.address as { socket_address?: unknown } | undefined)?.socket_address);
  if (!addr.success) throw new ResourceError(`listener ${name}: needs a socket address with a port (${addr.error.issues[0]?.message ?? ''})`);
  if (kind === 'ingress') return { ...base, kind, address: addr.data.address, port: addr.data.port_value, importNamespace: null, importName: null };
  const ns = meta?.importNamespace ?? '';
  const imp = meta?.importName ?? '';
  if (!DNS_LABEL.test(ns) || !DNS_LABEL.test(imp)) {
    throw new ResourceError(`listener ${name}: metadata ${NAMES.metadataKey} needs importNamespace and importName (DNS-1123 labels)`);
  }
  return { ...base, kind, address: addr.data.address, port: addr.data.port_value, importNamespace: ns, importName: imp };
}

function decodeCluster(msg: Record<string, unknown>): DecodedCluster {
  const name = z.string().min(1).max(MAX_NAME).parse(msg.name);
  const peer = name.startsWith(NAMES.peerPrefix) ? name.slice(NAMES.peerPrefix.length) : null;
  if (peer !== null && !PEER_NAME.test(peer)) throw new ResourceError(`cluster ${name}: the peer name must be a DNS-1123 subdomain of at most 63 characters`);
  const eds = msg.type === 'EDS';
  const serviceName = (msg.eds_cluster_config as { service_name?: string } | undefined)?.service_name;
  const refs = { clusters: new Set<string>(), secrets: new Set<string>() };
  collectRefs({ transport_socket: msg.transport_socket }, refs);
  let sni: string | null = null;
  const ts = anyValue.safeParse((msg.transport_socket as { typed_config?: unknown } | undefined)?.typed_config);
  if (ts.success && knowsType(ts.data.type_url)) {
    const tls = decodeAny(ts.data.type_url, ts.data.value) as { sni?: unknown };
    if (typeof tls.sni === 'string' && tls.sni !== '') sni = tls.sni;
  }
  if (peer !== null && !eds) throw new ResourceError(`cluster ${name}: peer clusters must use EDS (type EDS)`);
  const inputs = (msg.metadata as { filter_metadata?: Record<string, { fields?: Record<string, { string_value?: unknown; stringValue?: unknown }> }> } | undefined)?.filter_metadata?.['clusterlink.net']?.fields?.['authz-inputs'];
  const raw = inputs?.string_value ?? inputs?.stringValue;
  const authzInputs = typeof raw === 'string' ? raw.slice(0, 128) : null;
  return { name, peer, edsName: eds ? serviceName || name : null, sni, secrets: [...refs.secrets].sort(), authzInputs };
}

function decodeEndpoints(msg: Record<string, unknown>): DecodedEndpoints {
  const name = z.string().min(1).max(MAX_NAME).parse(msg.cluster_name);
  const endpoints: Endpoint[] = [];
  const localities = Array.isArray(msg.endpoints) ? msg.endpoints : [];
  for (const loc of localities as Array<{ lb_endpoints?: Array<{ endpoint?: { address?: { socket_address?: unknown } } }> }>) {
    for (const lb of loc.lb_endpoints ?? []) {
      const addr = socketAddress.safeParse(lb.endpoint?.address?.socket_address);
      if (!addr.success) throw new ResourceError(`endpoints ${name}: every endpoint needs a socket address with a port`);
      endpoints.push({ host: addr.data.address, port: addr.data.port_value });
    }
  }
  return { name, endpoints };
}

const PEM_CERTS = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const PEM_KEY = /-----BEGIN (?:EC |RSA )?PRIVATE KEY-----[\s\S]+?-----END (?:EC |RSA )?PRIVATE KEY-----/;

/** Reads a file the identity secret names (bounded, PEM text); null when it cannot be read. */
export type ReadIdentityFile = (path: string) => string | null;

function fileSource(ds: unknown): string | null {
  if (!ds || typeof ds !== 'object') return null;
  const f = (ds as { filename?: unknown }).filename;
  return typeof f === 'string' && f.startsWith('/') && f.length <= 4096 ? f : null;
}

function dataSource(ds: unknown): string | null {
  if (!ds || typeof ds !== 'object') return null;
  const d = ds as { inline_string?: unknown; inline_bytes?: unknown };
  if (typeof d.inline_string === 'string') return d.inline_string;
  if (d.inline_bytes instanceof Uint8Array) return Buffer.from(d.inline_bytes).toString('utf8');
  return null;
}

function decodeSecret(msg: Record<string, unknown>): DecodedSecret {
  const name = z.string().min(1).max(MAX_NAME).parse(msg.name);
  let tlsCertificate: DecodedSecret['tlsCertificate'] = null;
  let validation: DecodedSecret['validation'] = null;
  if (msg.tls_certificate) {
    const tc = msg.tls_certificate as { certificate_chain?: unknown; private_key?: unknown };
    const certificateFile = fileSource(tc.certificate_chain);
    const privateKeyFile = fileSource(tc.private_key);
    if (certificateFile && privateKeyFile) tlsCertificate = { certificateFile, privateKeyFile };
    else {
      const chain = dataSource(tc.certificate_chain) ?? '';
      const key = dataSource(tc.private_key) ?? '';
      const identity = pemIdentity(chain, key);
      if (!identity) throw new ResourceError(`secret ${name}: tls_certificate needs a PEM certificate chain and private key (absolute file names, or inline)`);
      tlsCertificate = identity;
    }
  }
  if (msg.validation_context) {
    const vc = msg.validation_context as { trusted_ca?: unknown; verify_certificate_hash?: unknown };
    const cas = (dataSource(vc.trusted_ca) ?? '').match(PEM_CERTS) ?? [];
    if (cas.length === 0) throw new ResourceError(`secret ${name}: validation_context needs an inline trusted_ca PEM bundle`);
    const hashes = Array.isArray(vc.verify_certificate_hash) ? vc.verify_certificate_hash : [];
    const pins = hashes.map((h) => String(h).replace(/:/g, '').toLowerCase());
    if (pins.some((p) => !/^[0-9a-f]{64}$/.test(p))) throw new ResourceError(`secret ${name}: verify_certificate_hash entries must be SHA-256 hex`);
    validation = { caCertificatesPem: cas.map((c) => `${c}\n`), pins };
  }
  return { name, tlsCertificate, validation };
}

function pemIdentity(chain: string, key: string): { certificatePem: string; privateKeyPem: string } | null {
  const certs = chain.match(PEM_CERTS) ?? [];
  const k = key.match(PEM_KEY)?.[0];
  if (certs.length === 0 || !k) return null;
  return { certificatePem: `${certs.join('\n')}\n`, privateKeyPem: key };
}

const KIND_BY_URL = new Map<string, ResourceKind>(Object.entries(TYPE_URL).map(([k, v]) => [v, k as ResourceKind]));

/** Decodes and checks one resource of a DiscoveryResponse. Throws ResourceError if it is invalid. */
export function decodeResource(expectedTypeUrl: string, any: { type_url: string; value: Uint8Array }): Decoded {
  const kind = KIND_BY_URL.get(expectedTypeUrl);
  if (!kind) throw new ResourceError(`unsupported resource type ${expectedTypeUrl}`);
  if (any.type_url !== expectedTypeUrl) throw new ResourceError(`resource of type ${any.type_url} in a ${expectedTypeUrl} response`);
  let msg: Record<string, unknown>;
  try {
    msg = decodeAny(any.type_url, any.value);
  } catch (err) {
    throw new ResourceError(`undecodable ${kind} resource: ${(err as Error).message}`);
  }
  try {
    switch (kind) {
      case 'listener':
        return { kind, value: decodeListener(msg) };
      case 'cluster':
        return { kind, value: decodeCluster(msg) };
      case 'endpoint':
        return { kind, value: decodeEndpoints(msg) };
      case 'secret':
        return { kind, value: decodeSecret(msg) };
    }
  } catch (err) {
    if (err instanceof ResourceError) throw err;
    if (err instanceof z.ZodError) throw new ResourceError(`${kind} resource: ${err.issues[0]?.path.join('.') ?? ''} ${err.issues[0]?.message ?? ''}`.trim());
    throw err;
  }
}

export interface ResourceState {
  listeners: Map<string, DecodedListener>;
  clusters: Map<string, DecodedCluster>;
  endpoints: Map<string, DecodedEndpoints>;
  secrets: Map<string, DecodedSecret>;
}

/** Names the client must subscribe to for EDS and SDS, derived from the accepted LDS/CDS resources. */
export function wantedNames(state: ResourceState): { endpoint: string[]; secret: string[] } {
  const eds = new Set<string>();
  const sds = new Set<string>([NAMES.identitySecret, NAMES.caSecret]);
  for (const c of state.clusters.values()) {
    if (c.edsName) eds.add(c.edsName);
    for (const s of c.secrets) sds.add(s);
  }
  for (const l of state.listeners.values()) for (const s of l.secrets) sds.add(s);
  return { endpoint: [...eds].sort(), secret: [...sds].sort() };
}

/**
 * A DataplaneConfig when the accepted resources form a consistent set: every cluster a listener
 * names, every EDS assignment and every secret referenced is present, and the identity and CA
 * secrets exist. Otherwise the list of what is missing (the previous config stays in force).
 */
export function assembleConfig(state: ResourceState, self: string, version: string, readFile: ReadIdentityFile = () => null): { ok: true; config: DataplaneConfig } | { ok: false; missing: string[] } {
  const missing: string[] = [];
  for (const l of state.listeners.values()) {
    for (const c of l.clusters) if (!state.clusters.has(c)) missing.push(`cluster ${c} (listener ${l.name})`);
    for (const s of l.secrets) if (!state.secrets.has(s)) missing.push(`secret ${s} (listener ${l.name})`);
  }
  for (const c of state.clusters.values()) {
    if (c.edsName && !state.endpoints.has(c.edsName)) missing.push(`endpoints ${c.edsName} (cluster ${c.name})`);
    for (const s of c.secrets) if (!state.secrets.has(s)) missing.push(`secret ${s} (cluster ${c.name})`);
  }
  const declared = state.secrets.get(NAMES.identitySecret)?.tlsCertificate ?? null;
  let identity: { certificatePem: string; privateKeyPem: string } | null = null;
  if (declared && 'certificateFile' in declared) {
    identity = pemIdentity(readFile(declared.certificateFile) ?? '', readFile(declared.privateKeyFile) ?? '');
    if (!identity) missing.push(`PEM certificate ${declared.certificateFile} and key ${declared.privateKeyFile} (secret ${NAMES.identitySecret}: readable files on this data plane)`);
  } else if (declared) identity = declared;
  else missing.push(`secret ${NAMES.identitySecret} (tls_certificate)`);
  const ca = state.secrets.get(NAMES.caSecret)?.validation;
  if (!ca) missing.push(`secret ${NAMES.caSecret} (validation_context)`);
  if (missing.length > 0 || !identity || !ca) return { ok: false, missing: [...new Set(missing)] };

  const egress: EgressListenerConfig[] = [];
  let ingress: DataplaneConfig['ingress'] = null;
  for (const l of [...state.listeners.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    if (l.kind === 'ingress') ingress = { address: l.address, port: l.port };
    else if (l.kind === 'egress' && l.importNamespace && l.importName) {
      egress.push({ importRef: `${l.importNamespace}/${l.importName}`, importNamespace: l.importNamespace, importName: l.importName, address: l.address, port: l.port });
    }
  }
  const upstreams: UpstreamPeer[] = [];
  for (const c of [...state.clusters.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    if (c.peer === null) continue;
    upstreams.push({ peer: c.peer, sni: c.sni ?? c.peer, endpoints: c.edsName ? (state.endpoints.get(c.edsName)?.endpoints ?? []) : [] });
  }
  return {
    ok: true,
    config: {
      version,
      self,
      egress,
      ingress,
      upstreams,
      authzRevision: [...state.clusters.values()].find((c) => c.authzInputs !== null)?.authzInputs ?? null,
      tls: { certificatePem: identity.certificatePem, privateKeyPem: identity.privateKeyPem, caCertificatesPem: ca.caCertificatesPem, allowedPeerFingerprints: ca.pins },
    },
  };
}
