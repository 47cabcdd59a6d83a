// The typed Fabric model every other module consumes. Plain data only (no Maps, no classes) so
// it can be hashed, diffed, serialised and sent between processes; arrays are sorted by name
// so the same repository always yields the same model.
import type { LabelSelector, LbScheme, SigningKey, WorkloadSetOrSelector } from './kinds.ts';

/** Where an object (or a field) was written in the fabric repository. 1-based line and column. */
export interface SourceRef {
  file: string;
  line: number;
  column: number;
}

export interface FabricModel {
  name: string;
  /** PEM CA certificates; more than one during a CA rotation. */
  caCertificates: string[];
  revoked: { serials: string[]; fingerprints: string[] };
  repo: { requireSignedCommits: boolean; allowedSigningKeys: SigningKey[] };
  /** Sorted by name. */
  peers: PeerModel[];
  /**
   * Peer labels attested by the fabric admins (fabric.yaml spec.peers.<peer>.labels): the only
   * labels policies see as `peer.clusterlink.net/labels.*`, on every peer. Peers without an entry
   * have no labels.
   */
  peerLabels: Record<string, Record<string, string>>;
  source: SourceRef;
}

export interface Gateway {
  host: string;
  port: number;
}

export interface PeerModel {
  name: string;
  /**
   * metadata.labels of peers/<peer>/peer.yaml, kept only to warn about them: a peer's own labels
   * never feed a decision (FabricModel.peerLabels does). See docs/policy.md, "Who may change what".
   */
  declaredLabels: Record<string, string>;
  gateways: Gateway[];
  /** PEM of peers/<peer>/peer.pem, if committed (validation reports it missing). */
  certificatePem: string | null;
  /** Sorted by namespace, then name. */
  exports: ExportModel[];
  imports: ImportModel[];
  /** Privileged first, then user; each sorted by namespace/name. */
  policies: PolicyModel[];
  source: SourceRef;
}

export interface ExportModel {
  peer: string;
  name: string;
  namespace: string;
  labels: Record<string, string>;
  /** The local service; defaults to <name>.<namespace>.svc.cluster.local as in ClusterLink. */
  host: string;
  port: number;
  source: SourceRef;
}

export interface ImportSourceModel {
  peer: string;
  exportName: string;
  exportNamespace: string;
}

export interface ImportModel {
  peer: string;
  name: string;
  namespace: string;
  labels: Record<string, string>;
  port: number;
  targetPort: number | null;
  /**
   * Where this peer's data plane listens for the import: targetPort when given; otherwise port,
   * unless another import of the peer already listens there (two Services on one port in two
   * namespaces), then a port derived from the import's namespace/name (see schema/listen-ports.ts).
   */
  listenPort: number;
  sources: ImportSourceModel[];
  lbScheme: LbScheme;
  /**
   * `ClientIP` (annotation `clusterlink.net/session-affinity`): a client keeps its exporter while it
   * stays allowed and reachable, for protocols that open several connections (iperf3, FTP). Default `None`.
   */
  sessionAffinity: 'None' | 'ClientIP';
  source: SourceRef;
}

export type PolicyTier = 'privileged' | 'user';

export interface PolicyModel {
  peer: string;
  tier: PolicyTier;
  kind: 'AccessPolicy' | 'PrivilegedAccessPolicy';
  name: string;
  /** Namespace of a user policy; null for privileged (cluster-wide) policies. */
  namespace: string | null;
  action: 'allow' | 'deny';
  from: WorkloadSetOrSelector[];
  to: WorkloadSetOrSelector[];
  source: SourceRef;
}

export type { LabelSelector, LbScheme, SigningKey, WorkloadSetOrSelector };

/** One problem found while loading or validating, always located. */
export interface Diagnostic {
  severity: 'error' | 'warning';
  file: string;
  line: number;
  column: number;
  /** Dotted path of the offending field inside the document, e.g. `spec.sources[0].peer`. */
  path: string;
  message: string;
  /** One line telling the user what to do. */
  hint: string;
  /** Stable machine-readable code, e.g. `unknown-field`, `import-source-missing`. */
  code: string;
}

export type LoadResult =
  | { ok: true; fabric: FabricModel; warnings: Diagnostic[] }
  | { ok: false; errors: Diagnostic[]; warnings: Diagnostic[] };
