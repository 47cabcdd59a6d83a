// The Slice: one peer's view of the fabric. Only what this peer needs: its own exports, its
// imports resolved to remote gateways, its policies, and the identities of the peers it talks to.
// Plain data, deterministic ordering, so equal fabrics give byte-identical JSON.
import type { Gateway, LbScheme, PolicyModel, SourceRef } from '../../schema/model.ts';

export interface SliceSelf {
  name: string;
  labels: Record<string, string>;
  gateways: Gateway[];
  certificatePem: string | null;
}

/** A peer this peer exchanges traffic with (exporter of one of its imports, or importer of one of its exports). */
export interface SliceMember {
  name: string;
  labels: Record<string, string>;
  /** SHA-256 fingerprint (lower-case hex, no colons) of the committed peers/<name>/peer.pem; null if none. */
  certificateFingerprint: string | null;
  /** Gateways, present only for peers this peer connects to (exporters of its imports). */
  gateways: Gateway[];
}

export interface SliceExport {
  name: string;
  namespace: string;
  labels: Record<string, string>;
  host: string;
  port: number;
  /** Peers that import this export (and so may connect to this peer's gateway for it). */
  importers: string[];
  source: SourceRef;
}

export interface SliceImportSource {
  peer: string;
  exportName: string;
  exportNamespace: string;
  /** False if the named peer or export does not exist (validation reports it; the slice skips it at run time). */
  resolved: boolean;
  exportLabels: Record<string, string>;
  /** The export's service port on the exporting peer. */
  exportPort: number | null;
  peerLabels: Record<string, string>;
  gateways: Gateway[];
}

export interface SliceImport {
  name: string;
  namespace: string;
  labels: Record<string, string>;
  port: number;
  targetPort: number | null;
  /** Where the data plane listens for it (targetPort, or port, or an assigned port: ImportModel.listenPort). */
  listenPort: number;
  lbScheme: LbScheme;
  /** ClientIP: a client keeps the exporter it got while that one stays allowed (see ImportModel). */
  sessionAffinity: 'None' | 'ClientIP';
  /** In the order written: the failover order for lbScheme static. */
  sources: SliceImportSource[];
  source: SourceRef;
}

export interface Slice {
  fabric: string;
  self: SliceSelf;
  caCertificates: string[];
  revoked: { serials: string[]; fingerprints: string[] };
  /** Sorted by name; never includes peers this peer has no import/export relation with. */
  members: SliceMember[];
  exports: SliceExport[];
  imports: SliceImport[];
  /** This peer's policies: privileged first, then user, each sorted by namespace/name. */
  policies: PolicyModel[];
}
