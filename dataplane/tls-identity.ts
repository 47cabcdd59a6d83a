// The data plane's TLS state, built from its identity (contracts.ts TlsIdentity): the client
// context for tunnels to peers' gateways, the gateway's server options, the pinned peer
// certificates, and the stored TLS sessions per gateway. Replaced as a whole on a config change,
// except what did not change (contexts and sessions survive a change of pins only).
import { createHash } from 'node:crypto';
import tls from 'node:tls';
import type { TlsIdentity } from '../protocol/contracts.ts';

/** A stored TLS session is reused this long before a connection stores a fresh ticket (servers keep them valid 300 s by default). */
export const SESSION_REFRESH_MS = 60_000;

export function fingerprintOf(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}

/** What both TLS contexts (egress client, gateway server) are built from: a change means new contexts, old sessions void. */
export function tlsMaterialKey(id: TlsIdentity): string {
  return createHash('sha256').update(id.certificatePem).update('\0').update(id.privateKeyPem).update('\0').update(id.caCertificatesPem.join('\0')).digest('hex');
}

/** The gateway's context options (TLS 1.3 only). */
export function serverContextOptions(id: TlsIdentity): tls.SecureContextOptions {
  return { cert: id.certificatePem, key: id.privateKeyPem, ca: id.caCertificatesPem, minVersion: 'TLSv1.3' };
}

/** Stored sessions per gateway (`peer@host:port`). Pure apart from the injected clock. */
export interface SessionCache {
  /** The stored session to resume with, and whether this connection should store a fresh one. */
  lookup(key: string): { session: Buffer | undefined; refresh: boolean };
  /** A 'session' listener that stores the ticket under `key`. */
  storer(key: string): (session: Buffer) => void;
  clear(): void;
}

export function createSessionCache(opts: { refreshMs?: number; now?: () => number } = {}): SessionCache {
  const refreshMs = opts.refreshMs ?? SESSION_REFRESH_MS;
  const now = opts.now ?? (() => performance.now());
  const sessions = new Map<string, { session: Buffer; at: number }>();
  return {
    lookup(key) {
      const stored = sessions.get(key);
      if (!stored) return { session: undefined, refresh: true };
      return { session: stored.session, refresh: now() - stored.at > refreshMs };
    },
    storer: (key) => (session) => void sessions.set(key, { session, at: now() }),
    clear: () => sessions.clear(),
  };
}

export interface TlsState {
  /** Client context for tunnels to peers' gateways. */
  readonly clientContext: tls.SecureContext;
  readonly sessions: SessionCache;
  /** The certificate is a current member's committed peer.pem. */
  isPinned(der: Buffer): boolean;
  /** checkServerIdentity for a peer's gateway: its certificate names the peer dialled (servername) and is pinned. One function for every connection. */
  readonly checkGatewayIdentity: (servername: string, cert: tls.PeerCertificate) => Error | undefined;
  /** New pins; new client context and no stored session when the identity or the trusted CAs changed. */
  update(id: TlsIdentity): void;
}

function clientContextOf(id: TlsIdentity): tls.SecureContext {
  return tls.createSecureContext({ cert: id.certificatePem, key: id.privateKeyPem, ca: id.caCertificatesPem, minVersion: 'TLSv1.3' });
}

export function createTlsState(initial: TlsIdentity, sessions: SessionCache = createSessionCache()): TlsState {
  let pins = new Set(initial.allowedPeerFingerprints);
  let materialKey = tlsMaterialKey(initial);
  let clientContext = clientContextOf(initial);
  const isPinned = (der: Buffer): boolean => pins.has(fingerprintOf(der));
  return {
    get clientContext() {
      return clientContext;
    },
    sessions,
    isPinned,
    checkGatewayIdentity(servername, cert) {
      const err = tls.checkServerIdentity(servername, cert);
      if (err) return err;
      if (!isPinned(cert.raw)) return new Error(`certificate of ${servername} does not match its committed peer.pem`);
      return undefined;
    },
    update(id) {
      pins = new Set(id.allowedPeerFingerprints);
      const key = tlsMaterialKey(id);
      if (key === materialKey) return;
      materialKey = key;
      clientContext = clientContextOf(id);
      sessions.clear();
    },
  };
}
