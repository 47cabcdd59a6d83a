// Slice → DataplaneConfig: what a data plane must listen on and connect to for one peer. The xDS
// resources (resources.ts) carry exactly this information in Envoy's shapes; the Node data
// plane's xDS client decodes them back into this form (a test holds the two in agreement).
import type { DataplaneConfig, Endpoint } from '../../protocol/contracts.ts';
import type { Slice } from '../slice/types.ts';
import { authzInputsHash } from './authz-inputs.ts';

export interface ListenOptions {
  /** Gateway bind address; default: this peer's first gateway in peer.yaml (right for local mode). */
  ingress?: Endpoint | null;
  /** Where import listeners bind: 0.0.0.0 in a pod, a loopback address in local mode. */
  egressAddress: string;
}

export interface PeerIdentity {
  /** Defaults to the committed peers/<peer>/peer.pem. */
  certificatePem?: string;
  privateKeyPem: string;
}

export function gatewayBind(slice: Slice, listen: ListenOptions): Endpoint | null {
  if (listen.ingress !== undefined) return listen.ingress;
  const g = slice.self.gateways[0];
  return g ? { host: g.host, port: g.port } : null;
}

export function dataplaneConfigFromSlice(slice: Slice, identity: PeerIdentity, listen: ListenOptions, version: string): DataplaneConfig {
  const certificatePem = identity.certificatePem ?? slice.self.certificatePem;
  if (!certificatePem) throw new Error(`peer ${slice.self.name} has no certificate: commit peers/${slice.self.name}/peer.pem`);
  const ingress = slice.exports.length > 0 ? gatewayBind(slice, listen) : null;
  return {
    version,
    self: slice.self.name,
    egress: slice.imports.map((i) => ({
      importRef: `${i.namespace}/${i.name}`,
      importNamespace: i.namespace,
      importName: i.name,
      address: listen.egressAddress,
      port: i.listenPort,
    })),
    ingress: ingress ? { address: ingress.host, port: ingress.port } : null,
    upstreams: slice.members.filter((m) => m.gateways.length > 0).map((m) => ({ peer: m.name, sni: m.name, endpoints: m.gateways.map((g) => ({ host: g.host, port: g.port })) })),
    authzRevision: authzInputsHash(slice),
    tls: {
      certificatePem,
      privateKeyPem: identity.privateKeyPem,
      caCertificatesPem: [...slice.caCertificates],
      allowedPeerFingerprints: slice.members.map((m) => m.certificateFingerprint).filter((f): f is string => f !== null),
    },
  };
}
