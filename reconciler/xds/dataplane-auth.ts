// Mutual TLS in front of the control plane's gRPC services (ADS and ext_authz): only this peer's
// own data planes get in. A data plane proves itself with the peer's certificate (the Secret the
// tunnel pods mount): it must chain to the fabric CA bundle of the current accepted revision, name
// this peer (DNS + URI SAN), not be revoked, be within its validity, and be either the committed
// peers/<peer>/peer.pem or the certificate the reconciler itself holds (both are accepted so a
// rotation works whichever of Git and the Secret changes first). The server presents the same
// peer certificate; data planes check it against the CA and the peer name.
//
// TLS is terminated here (node:tls) and each verified connection is handed to the gRPC server, so
// every refusal has a reason, one rate-limited log line and a counter, and open connections are
// re-verified (and closed if no longer acceptable) whenever the trust material changes.
import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import * as tls from 'node:tls';
import type { Logger } from 'pino';
import { fingerprintSha256 } from '../pki/encoding.ts';
import { verifyPeer, type PeerTrust, type VerifyReason, type VerifyResult } from '../pki/verify.ts';
import type { Slice } from '../slice/types.ts';

/** What a data plane's certificate is checked against. Build a new object when anything changes. */
export interface DataplaneTrust {
  /** This peer: the only identity admitted. */
  peer: string;
  /** PeerTrust of verifyPeer, with this peer as the only member. */
  verify: PeerTrust;
  /** SHA-256 fingerprints accepted for this peer: the committed peer.pem and the reconciler's own certificate. */
  pins: string[];
}

export function dataplaneTrust(peer: string, slice: Pick<Slice, 'fabric' | 'caCertificates' | 'revoked' | 'self'>, ownCertificatePem: string | null): DataplaneTrust {
  const pins = new Set<string>();
  for (const pem of [slice.self.certificatePem, ownCertificatePem]) {
    if (!pem) continue;
    try {
      pins.add(fingerprintSha256(pem));
    } catch {
      // not a certificate: nothing to pin
    }
  }
  const list = [...pins];
  return {
    peer,
    pins: list,
    verify: { fabric: slice.fabric, caCertificates: slice.caCertificates, revoked: slice.revoked, members: list.map((fp) => ({ name: peer, labels: {}, certificateFingerprint: fp, gateways: [] })) },
  };
}

export type DataplaneVerdict = { ok: true; fingerprint: string } | { ok: false; reason: VerifyReason | 'other-peer'; detail: string };

/** Pure: is this presented certificate (DER) this peer's data plane under `trust`? */
export function verifyDataplane(der: Uint8Array, trust: DataplaneTrust, now?: Date): DataplaneVerdict {
  if (trust.pins.length === 0) return { ok: false, reason: 'unpinned', detail: `peer "${trust.peer}" has no committed peer.pem and the reconciler holds no certificate` };
  // verifyPeer checks one pin per member: try each accepted pin (at most two).
  let last: VerifyResult | null = null;
  for (const m of trust.verify.members) {
    last = verifyPeer([der], { ...trust.verify, members: [m] }, { expectedPeer: trust.peer, ...(now ? { now } : {}) });
    if (last.ok) return { ok: true, fingerprint: last.fingerprint };
    if (last.reason === 'not-a-member') return { ok: false, reason: 'other-peer', detail: `${last.detail.replace(/ is not a current member.*/, '')}: a valid certificate of another peer; only ${trust.peer}'s data planes are admitted` };
    if (last.reason !== 'pin-mismatch') return last;
  }
  return last as DataplaneVerdict;
}

export type RefusalReason = string;

export interface RefusalCount {
  server: string;
  reason: RefusalReason;
  count: number;
}

/**
 * Counts refusals and logs each reason at most once per window per server (the first at once,
 * then a summary with how many were suppressed), so a scanner cannot flood the log.
 */
export class RefusalLog {
  private readonly counts = new Map<string, RefusalCount>();
  private readonly lastLogged = new Map<string, { at: number; suppressed: number }>();
  constructor(
    private readonly log: Logger,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  refuse(server: string, reason: RefusalReason, fields: Record<string, unknown>, message: string): void {
    const key = `${server}\u0000${reason}`;
    const c = this.counts.get(key);
    if (c) c.count++;
    else this.counts.set(key, { server, reason, count: 1 });
    const t = this.now();
    const last = this.lastLogged.get(key);
    if (last && t - last.at < this.windowMs) {
      last.suppressed++;
      return;
    }
    const suppressed = last?.suppressed ?? 0;
    this.lastLogged.set(key, { at: t, suppressed: 0 });
    this.log.warn({ server, reason, ...fields, ...(suppressed > 0 ? { suppressedSinceLastLine: suppressed } : {}) }, `refused a ${server} client: ${message}`);
  }

  snapshot(): RefusalCount[] {
    return [...this.counts.values()].map((c) => ({ ...c }));
  }
}

export interface DataplaneTlsOptions {
  /** The peer certificate and key the server presents; null until known (connections are refused meanwhile). */
  identity: () => { certificatePem: string; privateKeyPem: string } | null;
  /** The trust of the current accepted revision; null before the first (every client is refused). */
  trust: () => DataplaneTrust | null;
  refusals: RefusalLog;
  handshakeTimeoutMs?: number;
  /** Open connections (handshaking or admitted) beyond which new ones are dropped (default 1024). */
  maxConnections?: number;
}

export interface DataplaneTlsListener {
  host: string;
  port: number;
  /** Re-reads identity(): call when the certificate or key changed. */
  refreshIdentity(): void;
  /** Re-verifies every open connection against trust(); closes the ones no longer acceptable. */
  recheck(): void;
  close(): Promise<void>;
}

/** A listener that terminates mutual TLS, admits only this peer's data planes and hands their connections to `server`. */
export async function listenDataplaneTls(server: grpc.Server, name: string, host: string, port: number, opts: DataplaneTlsOptions): Promise<DataplaneTlsListener> {
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const open = new Map<tls.TLSSocket, Buffer>();
  let identityKey = '';
  let context: tls.SecureContextOptions | null = null;

  const loadIdentity = (): tls.SecureContextOptions | null => {
    const id = opts.identity();
    if (!id) return null;
    const key = createHash('sha256').update(id.certificatePem).update('\0').update(id.privateKeyPem).digest('hex');
    if (key === identityKey && context) return context;
    const next: tls.SecureContextOptions = { cert: id.certificatePem, key: id.privateKeyPem, minVersion: 'TLSv1.3' };
    tls.createSecureContext(next); // throws if the key does not match the certificate
    identityKey = key;
    context = next;
    return next;
  };

  let initial: tls.SecureContextOptions | null = null;
  try {
    initial = loadIdentity();
  } catch (err) {
    opts.refusals.refuse(name, 'server-identity', {}, `cannot use the peer certificate and key: ${(err as Error).message}`);
  }
  const tlsServer = tls.createServer({
    ...(initial ?? {}),
    minVersion: 'TLSv1.3',
    requestCert: true,
    // Verified below with verifyPeer, against the trust of the current revision, with a reason.
    rejectUnauthorized: false,
    ALPNProtocols: ['h2'],
    handshakeTimeout: opts.handshakeTimeoutMs ?? 5000,
  });

  // A peer has a handful of data-plane pods; this bounds what a flood of (unauthenticated) connections can hold.
  tlsServer.maxConnections = opts.maxConnections ?? 1024;
  tlsServer.on('drop', (data?: { remoteAddress?: string }) => opts.refusals.refuse(name, 'connection-limit', { remote: data?.remoteAddress }, `more than ${tlsServer.maxConnections} connections open: new ones are dropped`));

  const refuse = (socket: tls.TLSSocket | null, reason: string, message: string, fields: Record<string, unknown> = {}): void => {
    opts.refusals.refuse(name, reason, { remote: socket?.remoteAddress, ...fields }, message);
    socket?.destroy();
  };

  tlsServer.on('secureConnection', (socket: tls.TLSSocket) => {
    socket.on('error', () => undefined);
    if (!context) return refuse(socket, 'server-identity', 'the control plane has no usable peer certificate yet');
    const cert = socket.getPeerX509Certificate();
    if (!cert) return refuse(socket, 'no-client-certificate', 'no client certificate (data planes present the peer certificate of the mounted Secret)');
    const trust = opts.trust();
    if (!trust) return refuse(socket, 'no-revision', 'no accepted fabric revision yet: cannot verify data planes');
    const v = verifyDataplane(cert.raw, trust);
    if (!v.ok) return refuse(socket, v.reason, v.detail, { subject: cert.subject.replace(/\n/g, ', '), fingerprint: cert.fingerprint256 });
    if (socket.alpnProtocol !== 'h2') return refuse(socket, 'no-h2', 'the client did not negotiate ALPN h2 (gRPC)');
    open.set(socket, cert.raw);
    socket.on('close', () => open.delete(socket));
    injector.injectConnection(socket);
  });
  tlsServer.on('tlsClientError', (err: Error & { code?: string }, socket: tls.TLSSocket) => {
    refuse(socket, 'tls-handshake', `TLS handshake failed: ${err.message}`, { code: err.code });
  });

  const boundPort = await new Promise<number>((resolve, reject) => {
    tlsServer.once('error', reject);
    tlsServer.listen(port, host, () => {
      tlsServer.off('error', reject);
      resolve((tlsServer.address() as { port: number }).port);
    });
  });

  return {
    host,
    port: boundPort,
    refreshIdentity() {
      try {
        const next = loadIdentity();
        if (next) tlsServer.setSecureContext({ ...next, minVersion: 'TLSv1.3' });
      } catch (err) {
        opts.refusals.refuse(name, 'server-identity', {}, `new peer certificate or key not usable, keeping the previous one: ${(err as Error).message}`);
      }
    },
    recheck() {
      const trust = opts.trust();
      for (const [socket, der] of open) {
        const v: DataplaneVerdict = trust ? verifyDataplane(der, trust) : { ok: false, reason: 'malformed', detail: 'no accepted revision' };
        if (!v.ok) {
          open.delete(socket);
          refuse(socket, v.reason, `open connection closed, its certificate is no longer accepted: ${v.detail}`);
        }
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        tlsServer.close(() => resolve());
        injector.destroy();
        for (const s of open.keys()) s.destroy();
        open.clear();
      }),
  };
}
