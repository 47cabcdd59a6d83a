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

export const metadata = z.strictObject({
  name: dns1123Label,
  namespace: dns1123Label.optional(),
  labels: labels.optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});

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

export const importSource = z.strictObject({
  exportName: dns1123Label,
  exportNamespace: dns1123Label,
  peer: dns1123Label,
});

export const lbScheme = z.enum(['round-robin', 'random', 'static']);

export const importSpec = z.strictObject({
  port,
  targetPort: port.optional(),
  sources: z.array(importSource).min(1, 'an import needs at least one source (peer, exportName, exportNamespace)'),
  lbScheme: lbScheme.optional(),
});

export const accessPolicySpec = z.strictObject({
  action: z.enum(['allow', 'deny']),
  from: z.array(workloadSetOrSelector),
  to: z.array(workloadSetOrSelector),
});

const base = <K extends string, S extends z.ZodType>(kind: K, spec: S) =>
  z.strictObject({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(kind),
    metadata,
    spec,
  });

export const fabricObject = base('Fabric', fabricSpec);
export const peerObject = base('Peer', peerSpec);
export const exportObject = base('Export', exportSpec);
export const importObject = base('Import', importSpec);
export const accessPolicyObject = base('AccessPolicy', accessPolicySpec);
export const privilegedAccessPolicyObject = base('PrivilegedAccessPolicy', accessPolicySpec);

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
