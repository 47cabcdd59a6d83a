// zod schemas for every kind a fabric repository may hold. They accept ClusterLink's own
// clusterlink.net/v1alpha1 shapes unchanged and reject unknown fields (strict objects), so a
// typo is an error with a location, never a silently ignored setting.
import { z } from 'zod';

export const API_VERSION = 'clusterlink.net/v1alpha1';

/** DNS-1123 label: peer names, namespaces, object names. */
export const dns1123Label = z
  .string()
  .max(63, 'must be at most 63 characters (DNS-1123 label)')
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS-1123 label: lower-case letters, digits and "-", starting and ending with a letter or digit');

/**
 * DNS-1123 subdomain (Kubernetes' rule for the names of custom objects such as ClusterLink's
 * Export and AccessPolicy): up to 253 characters, dot-separated labels.
 */
export const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const dns1123Subdomain = z
  .string()
  .max(253, 'must be at most 253 characters (DNS-1123 subdomain)')
  .regex(DNS1123_SUBDOMAIN, 'must be a DNS-1123 subdomain: lower-case letters, digits, "-" and ".", each dot-separated part starting and ending with a letter or digit');

/**
 * Peer names: a DNS-1123 subdomain (ClusterLink's sample peer is `cluster17.us-east`), at most 63
 * characters in all: the name is also the value of the `clusterlink.net/peer` label on the Services
 * and EndpointSlices a reconciler applies (label values are at most 63), the certificate's DNS SAN
 * and the TLS server name (SNI).
 */
export const PEER_NAME = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const peerName = z
  .string()
  .max(63, 'must be at most 63 characters (it is also a Kubernetes label value)')
  .regex(PEER_NAME, 'must be a DNS-1123 subdomain: lower-case letters, digits, "-" and ".", each dot-separated part starting and ending with a letter or digit');

export const port = z.number().int('must be an integer').min(1, 'must be a port in 1..65535').max(65535, 'must be a port in 1..65535');

const labelKey = z
  .string()
  .max(317)
  .regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/, 'must be a Kubernetes label key ([prefix/]name)');
const labelValue = z
  .string()
  .max(63)
  .regex(/^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/, 'must be a Kubernetes label value');
export const labels = z.record(labelKey, labelValue);

/**
 * Metadata the Kubernetes API server fills in (`kubectl get -o yaml` output): accepted so such
 * output can be committed as is, never used (the loader notes that it ignores them).
 */
export const SERVER_METADATA_FIELDS = ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'selfLink', 'deletionTimestamp', 'deletionGracePeriodSeconds'] as const;
const serverMetadata = {
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  generation: z.number().optional(),
  // A timestamp string; YAML 1.2 core (how fabric files are read) keeps it a string.
  creationTimestamp: z.string().nullable().optional(),
  managedFields: z.array(z.unknown()).optional(),
  selfLink: z.string().optional(),
  deletionTimestamp: z.string().nullable().optional(),
  deletionGracePeriodSeconds: z.number().optional(),
};

/**
 * Object metadata. `name` is a DNS-1123 subdomain (253) for the kinds Kubernetes allows that for,
 * a DNS-1123 label where the name becomes one: an Import's name is its Service's name, the
 * Fabric's is a label of every peer certificate's URI SAN.
 */
const metadataWith = (name: z.ZodType<string>) =>
  z.strictObject({
    name,
    namespace: dns1123Label.optional(),
    labels: labels.optional(),
    annotations: z.record(z.string(), z.string()).optional(),
    ...serverMetadata,
  });
export const metadata = metadataWith(dns1123Subdomain);
export const labelMetadata = metadataWith(dns1123Label);
export const peerMetadata = metadataWith(peerName);

export const labelSelectorRequirement = z.strictObject({
  // Policy attribute keys such as `client.clusterlink.net/labels.app` are longer than label keys allow.
  key: z.string().min(1).max(512),
  operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
  values: z.array(z.string()).optional(),
});

export const labelSelector = z.strictObject({
  matchLabels: z.record(z.string().min(1).max(512), z.string()).optional(),
  matchExpressions: z.array(labelSelectorRequirement).optional(),
});

export const workloadSetOrSelector = z.strictObject({
  workloadSets: z.array(z.string()).optional(),
  workloadSelector: labelSelector.optional(),
});

const pemCertificate = z
  .string()
  .regex(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/, 'must be a PEM certificate (-----BEGIN CERTIFICATE----- ...)');

const hexFingerprint = z
  .string()
  .regex(/^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$|^[0-9A-Fa-f]{64}$/, 'must be a SHA-256 fingerprint (64 hex digits, colons allowed)');
const hexSerial = z.string().regex(/^[0-9A-Fa-f:]+$/, 'must be a certificate serial number in hex');

export const signingKey = z.strictObject({
  name: z.string().min(1),
  type: z.enum(['openpgp', 'ssh']),
  publicKey: z.string().min(1),
});

/** Attributes of one peer that the fabric admins attest (other peers' policies may trust them). */
export const peerAttestation = z.strictObject({
  /** Seen by policies as `peer.clusterlink.net/labels.<key>`, on every peer's decisions. */
  labels: labels.optional(),
});

export const fabricSpec = z.strictObject({
  /** One or more CA certificates; two during a CA rotation. */
  caCertificates: z.array(pemCertificate).min(1, 'needs at least one CA certificate'),
  revoked: z
    .strictObject({
      serials: z.array(hexSerial).optional(),
      fingerprints: z.array(hexFingerprint).optional(),
    })
    .optional(),
  repo: z
    .strictObject({
      requireSignedCommits: z.boolean().optional(),
      allowedSigningKeys: z.array(signingKey).optional(),
    })
    .optional(),
  /**
   * Per peer (by name), the attributes policies may use: the only source of peer labels. A peer's
   * own peer.yaml cannot set them, because other peers' policies trust them (docs/policy.md).
   */
  peers: z.record(peerName, peerAttestation).optional(),
});

export const gateway = z.strictObject({
  host: z.string().min(1).max(253),
  port,
});

export const peerSpec = z.strictObject({
  gateways: z.array(gateway).min(1, 'a peer needs at least one gateway endpoint (host, port)'),
});

export const exportSpec = z.strictObject({
  /** Local service host; ClusterLink's default is <name>.<namespace>.svc.cluster.local. */
  host: z.string().min(1).max(253).optional(),
  port,
});

/** Empty or absent exportName / exportNamespace mean the import's own name / namespace (as in ClusterLink). */
export const importSource = z.strictObject({
  exportName: z.union([z.literal(''), dns1123Subdomain]).optional(),
  exportNamespace: z.union([z.literal(''), dns1123Label]).optional(),
  peer: peerName,
});

export const lbScheme = z.enum(['round-robin', 'random', 'static']);

export const importSpec = z.strictObject({
  port,
  targetPort: port.optional(),
  /** May be empty (as in ClusterLink, the Service exists and every connection is refused); the loader warns. */
  sources: z.array(importSource),
  lbScheme: lbScheme.optional(),
});

export const accessPolicySpec = z.strictObject({
  action: z.enum(['allow', 'deny']),
  from: z.array(workloadSetOrSelector),
  to: z.array(workloadSetOrSelector),
});

const base = <K extends string, S extends z.ZodType, M extends z.ZodType>(kind: K, spec: S, meta: M) =>
  z.strictObject({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(kind),
    metadata: meta,
    spec,
    /** Written by ClusterLink's controllers (`kubectl get -o yaml` output): accepted and ignored, with a note. */
    status: z.unknown().optional(),
  });

export const fabricObject = base('Fabric', fabricSpec, labelMetadata);
export const peerObject = base('Peer', peerSpec, peerMetadata);
export const exportObject = base('Export', exportSpec, metadata);
export const importObject = base('Import', importSpec, labelMetadata);
export const accessPolicyObject = base('AccessPolicy', accessPolicySpec, metadata);
export const privilegedAccessPolicyObject = base('PrivilegedAccessPolicy', accessPolicySpec, metadata);

export const kindSchemas = {
  Fabric: fabricObject,
  Peer: peerObject,
  Export: exportObject,
  Import: importObject,
  AccessPolicy: accessPolicyObject,
  PrivilegedAccessPolicy: privilegedAccessPolicyObject,
} as const;

export type Kind = keyof typeof kindSchemas;
export const KINDS = Object.keys(kindSchemas) as Kind[];

export type LabelSelector = z.infer<typeof labelSelector>;
export type LabelSelectorRequirement = z.infer<typeof labelSelectorRequirement>;
export type WorkloadSetOrSelector = z.infer<typeof workloadSetOrSelector>;
export type LbScheme = z.infer<typeof lbScheme>;
export type SigningKey = z.infer<typeof signingKey>;

/**
 * Every object field name reachable in `schemas`, in first-seen order: the vocabulary for "did you
 * mean" hints, read from the schemas so that a field added to a schema is suggested without a list
 * to keep in step. Record keys (label keys, peer names) are data, not field names, and are skipped.
 */
export function fieldNames(schemas: readonly z.ZodType[]): string[] {
  const names = new Set<string>();
  const seen = new Set<unknown>();
  const visit = (schema: z.core.$ZodType): void => {
    if (seen.has(schema)) return;
    seen.add(schema);
    const def = schema._zod.def as z.core.$ZodTypeDef & Record<string, unknown>;
    const inner = (key: string): void => {
      const s = def[key];
      if (s && typeof s === 'object' && '_zod' in s) visit(s as z.core.$ZodType);
    };
    switch (def.type) {
      case 'object':
        for (const [name, field] of Object.entries(def.shape as Record<string, z.core.$ZodType>)) {
          names.add(name);
          visit(field);
        }
        break;
      case 'union':
        for (const option of def.options as z.core.$ZodType[]) visit(option);
        break;
      case 'array':
        inner('element');
        break;
      case 'record':
        inner('valueType');
        break;
      case 'intersection':
        inner('left');
        inner('right');
        break;
      case 'pipe':
        inner('in');
        inner('out');
        break;
      default:
        // optional, nullable, default, readonly, catch...: wrappers of one schema.
        inner('innerType');
    }
  };
  for (const s of schemas) visit(s);
  return [...names];
}

/** The field names of every kind (see fieldNames). */
export const KNOWN_FIELDS: readonly string[] = fieldNames(Object.values(kindSchemas));
