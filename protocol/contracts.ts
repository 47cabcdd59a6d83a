// Contracts between the control plane (reconciler/xds) and a data plane (the Node data plane in
// dataplane/, or Envoy). The Node data plane is configured from xDS resources translated into
// DataplaneConfig, and asks an Authorizer for every connection (in-process when embedded, over
// Envoy's ext_authz gRPC API when it runs as its own process).

/** Wire protocol of one tunnel: HTTP/1.1 CONNECT inside mutual TLS, on the gateway's one port. */
export const TUNNEL = {
  /** CONNECT authority: `<exportName>.<exportNamespace>:443` (namespaces are DNS-1123 labels, without dots: the last dot splits). */
  authority: (exportName: string, exportNamespace: string): string => `${exportName}.${exportNamespace}:443`,
  /** Client attributes asserted by the (verified) importing peer; the exporting peer's ingress policy uses them. */
  headers: {
    clientNamespace: 'x-clusterlink-client-namespace',
    clientServiceAccount: 'x-clusterlink-client-service-account',
    /** URL-encoded `k=v&k2=v2`. */
    clientLabels: 'x-clusterlink-client-labels',
    /** `<namespace>/<name>` of the import, for logs only: never used for a decision. */
    importRef: 'x-clusterlink-import',
    /** Set on a 403 reply: the denying policy and tier, e.g. `privileged:deny-edge (peers/east/policies/x.yaml:4)`. */
    denyReason: 'x-clusterlink-deny-reason',
  },
  /** Bounds every gateway applies to the CONNECT request head. */
  limits: { maxHeaderBytes: 8192, maxHeaders: 32, headerTimeoutMs: 5000 },
} as const;

export interface ClientAttributes {
  namespace?: string;
  serviceAccount?: string;
  labels: Record<string, string>;
}

export interface Endpoint {
  host: string;
  port: number;
}

export interface TlsIdentity {
  /** This peer's certificate (PEM), presented on both sides of every tunnel. */
  certificatePem: string;
  privateKeyPem: string;
  /** Fabric CA certificates (PEM) trusted for peer certificates. */
  caCertificatesPem: string[];
  /** SHA-256 fingerprints (lower-case hex) of member certificates accepted at the gateway (pins). */
  allowedPeerFingerprints: string[];
}

export interface EgressListenerConfig {
  /** `<namespace>/<name>` of the import. */
  importRef: string;
  importNamespace: string;
  importName: string;
  address: string;
  port: number;
}

export interface IngressListenerConfig {
  address: string;
  port: number;
}

/** A remote peer's gateway(s) this peer may open tunnels to. */
export interface UpstreamPeer {
  peer: string;
  /** TLS server name expected on the remote gateway's certificate (the peer name). */
  sni: string;
  endpoints: Endpoint[];
}

export interface DataplaneConfig {
  /** xDS version this config was built from (for ACKs and logs). */
  version: string;
  self: string;
  egress: EgressListenerConfig[];
  ingress: IngressListenerConfig | null;
  upstreams: UpstreamPeer[];
  tls: TlsIdentity;
  /**
   * Changes whenever what authorization depends on (policies, members, revocations) changes,
   * though listeners and upstreams may not: a new value makes the data plane re-check open tunnels.
   */
  authzRevision?: string | null;
}

export interface EgressCheck {
  importNamespace: string;
  importName: string;
  sourceAddress: string;
  sourcePort: number;
}

export interface Explanation {
  tier: 'privileged' | 'user' | 'default';
  /** `<namespace>/<name>` or `<name>` for privileged policies; null for default deny. */
  policy: string | null;
  /** file:line in the fabric repository, when a policy decided. */
  location: string | null;
  /** One human line, e.g. `denied by privileged policy deny-edge (peers/east/policies/deny-edge.yaml:3)`. */
  message: string;
  /** Which selector entries of the deciding policy matched, when a policy decided. */
  matched?: string | null;
}

export interface EgressCandidate {
  peer: string;
  exportName: string;
  exportNamespace: string;
}

export type EgressVerdict =
  | {
      allowed: true;
      client: ClientAttributes;
      /** Exporters allowed by egress policy, in load-balancing order (try the next on failure). */
      candidates: EgressCandidate[];
    }
  | {
      allowed: false;
      explanation: Explanation;
      /** No decision could be had (the authorization service did not answer): a new connection is refused, an open tunnel kept and re-checked later. */
      unavailable?: boolean;
    };

export interface IngressCheck {
  /** DER of the client certificate the TLS layer verified against the fabric CA. */
  peerCertificateDer: Uint8Array;
  exportNamespace: string;
  exportName: string;
  /** Attributes from the CONNECT headers (asserted by the verified peer). */
  client: ClientAttributes;
}

export type IngressVerdict =
  | { allowed: true; peer: string; target: Endpoint }
  | { allowed: false; status: 403 | 404; peer: string | null; explanation: Explanation; /** As in EgressVerdict. */ unavailable?: boolean };

/** Answers the data plane's per-connection questions. Implementations must be fast: called per connection. */
export interface Authorizer {
  egress(check: EgressCheck): EgressVerdict | Promise<EgressVerdict>;
  ingress(check: IngressCheck): IngressVerdict | Promise<IngressVerdict>;
}

/** The value of the x-clusterlink-deny-reason header: `<tier>:<policy> (<file:line>)`, one safe ASCII line. */
export function denyReason(e: Explanation): string {
  const text = e.policy ? `${e.tier}:${e.policy}${e.location ? ` (${e.location})` : ''}` : `${e.tier}: ${e.message}`;
  // Header values: printable ASCII only, bounded.
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 512);
}
