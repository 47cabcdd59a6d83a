// The data plane's side of the control plane's mutual TLS (reconciler/xds/dataplane-auth.ts): it
// presents the peer certificate from the mounted Secret and accepts the control plane only if that
// one chains to the fabric CA (ca.crt of the same Secret) and names this very peer. The files are
// re-read every refreshIntervalMs, so a rotated Secret is used from the next connection on.
import * as grpc from '@grpc/grpc-js';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';

export interface ControlPlaneTlsFiles {
  /** The peer certificate (tls.crt of the mounted Secret). */
  certificateFile: string;
  /** Its private key (tls.key). */
  privateKeyFile: string;
  /** The fabric CA bundle (ca.crt). */
  caFile: string;
  /** This peer's name: the control plane's certificate must name it (DNS SAN). */
  peer: string;
  refreshIntervalMs?: number;
}

/** Node's hostname check against the peer name, whatever host name the channel dials (a Service name in a cluster). */
export function checkControlPlaneName(peer: string, cert: PeerCertificate): Error | undefined {
  const err = checkServerIdentity(peer, cert);
  return err ? new Error(`the control plane's certificate does not name peer "${peer}": ${err.message}`) : undefined;
}

export function controlPlaneCredentials(files: ControlPlaneTlsFiles): grpc.ChannelCredentials {
  const provider = new grpc.experimental.FileWatcherCertificateProvider({
    certificateFile: files.certificateFile,
    privateKeyFile: files.privateKeyFile,
    caCertificateFile: files.caFile,
    refreshIntervalMs: files.refreshIntervalMs ?? 5000,
  });
  return grpc.experimental.createCertificateProviderChannelCredentials(provider, provider, { checkServerIdentity: (_host, cert) => checkControlPlaneName(files.peer, cert) });
}
