// verifyPeer: the one function that turns a presented certificate into a peer identity. Called per
// connection at the gateway and by egress, so everything that depends only on the trust data (CA
// keys, revocations, pins) is prepared once per trust object, and everything that depends only on
// the certificate bytes (signature, parsed extensions) once per certificate and CA bundle. A call
// on a known certificate is then a hash, a few map lookups and date comparisons.
import { X509Certificate, createHash, type KeyObject } from 'node:crypto';
import type { Slice } from '../slice/types.ts';
import { certFacts, KEY_USAGE, type CertFacts } from './certinfo.ts';
import { normalizeFingerprint, normalizeSerial, toDer } from './encoding.ts';
import { EKU_CLIENT_AUTH, EKU_SERVER_AUTH, PEER_NAME, peerUri } from './issue.ts';

/** What verification needs from a Slice. Treated as immutable: build a new object per revision. */
export type PeerTrust = Pick<Slice, 'fabric' | 'caCertificates' | 'revoked' | 'members'>;

export type VerifyReason =
  /** Empty chain or bytes that are not an X.509 certificate. */
  | 'malformed'
  /** Not signed by any CA in the bundle (or only by one outside its own validity). */
  | 'untrusted-ca'
  /** Serial or fingerprint listed in fabric.yaml spec.revoked. */
  | 'revoked'
  | 'expired'
  | 'not-yet-valid'
  /** Not an end-entity certificate for both TLS roles (CA flag, EKU, key usage). */
  | 'bad-key-usage'
  /** SANs do not name exactly one peer of this fabric (DNS:<peer> + URI clusterlink://<fabric>/<peer>). */
  | 'bad-san'
  /** Names a peer that is not (or no longer) a member related to this peer. */
  | 'not-a-member'
  /** The member has no committed peer.pem, so no certificate can be accepted for it. */
  | 'unpinned'
  /** A CA-signed certificate for the member, but not the one committed as peers/<peer>/peer.pem. */
  | 'pin-mismatch'
  /** A valid member, but not the one the caller expected (opts.expectedPeer). */
  | 'unexpected-peer';

export type VerifyResult = { ok: true; peer: string; fingerprint: string } | { ok: false; reason: VerifyReason; detail: string };

interface TrustedCa {
  cert: X509Certificate;
  publicKey: KeyObject;
  notBefore: number;
  notAfter: number;
  subject: string;
}

/** Per certificate and CA bundle: the result of the (expensive) signature check and parse. */
type LeafEntry = { trusted: false; reason: 'malformed' | 'untrusted-ca'; detail: string } | { trusted: true; ca: TrustedCa; facts: CertFacts; serial: string };

interface CaCache {
  cas: TrustedCa[];
  leaves: Map<string, LeafEntry>;
}

/** Presented certificates come from the network: a peer certificate is < 2 KiB, refuse anything absurd before parsing. */
const MAX_CERTIFICATE_BYTES = 16 * 1024;
/** Bounds the per-bundle certificate cache; presented certificates come from the network. */
const MAX_CACHED_LEAVES = 4096;

// Keyed on the arrays/objects themselves (not the PeerTrust wrapper) so a caller that builds
// `{ fabric, caCertificates, revoked, members }` afresh per call still hits the cache.
const caCaches = new WeakMap<readonly string[], CaCache>();
const revokedCaches = new WeakMap<object, { serials: Set<string>; fingerprints: Set<string> }>();
const memberCaches = new WeakMap<readonly object[], Map<string, string | null>>();

function caCache(pems: readonly string[]): CaCache {
  let cache = caCaches.get(pems);
  if (!cache) {
    const cas: TrustedCa[] = [];
    for (const pem of pems) {
      try {
        const cert = new X509Certificate(pem);
        if (!cert.ca) continue; // certificateDiagnostics reports it; never trust a non-CA as issuer
        cas.push({ cert, publicKey: cert.publicKey, notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo), subject: cert.subject });
      } catch {
        // unparsable bundle entry: reported by certificateDiagnostics, ignored here
      }
    }
    cache = { cas, leaves: new Map() };
    caCaches.set(pems, cache);
  }
  return cache;
}

function revokedCache(revoked: PeerTrust['revoked']): { serials: Set<string>; fingerprints: Set<string> } {
  let cache = revokedCaches.get(revoked);
  if (!cache) {
    cache = { serials: new Set(revoked.serials.map(normalizeSerial)), fingerprints: new Set(revoked.fingerprints.map(normalizeFingerprint)) };
    revokedCaches.set(revoked, cache);
  }
  return cache;
}

function memberCache(members: PeerTrust['members']): Map<string, string | null> {
  let cache = memberCaches.get(members);
  if (!cache) {
    cache = new Map(members.map((m) => [m.name, m.certificateFingerprint === null ? null : normalizeFingerprint(m.certificateFingerprint)]));
    memberCaches.set(members, cache);
  }
  return cache;
}

function examineLeaf(der: Buffer, cas: TrustedCa[]): LeafEntry {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch (err) {
    return { trusted: false, reason: 'malformed', detail: `not an X.509 certificate: ${(err as Error).message}` };
  }
  for (const ca of cas) {
    if (!cert.checkIssued(ca.cert)) continue;
    let signed = false;
    try {
      signed = cert.verify(ca.publicKey);
    } catch {
      signed = false;
    }
    if (!signed) continue;
    try {
      const facts = certFacts(der);
      return { trusted: true, ca, facts, serial: normalizeSerial(facts.serial) };
    } catch (err) {
      return { trusted: false, reason: 'malformed', detail: `certificate extensions do not parse: ${(err as Error).message}` };
    }
  }
  return { trusted: false, reason: 'untrusted-ca', detail: `issuer "${cert.issuer.replace(/\n/g, ', ')}" is not a CA in the fabric bundle (or the signature does not verify)` };
}

const fail = (reason: VerifyReason, detail: string): VerifyResult => ({ ok: false, reason, detail });

/**
 * Verifies a presented chain (leaf first; DER or PEM) against the fabric trust data. Only the leaf
 * is used: the fabric CA signs peers directly, so intermediates are not accepted.
 */
export function verifyPeer(chain: Array<Uint8Array | string>, trust: PeerTrust, opts: { now?: Date; expectedPeer?: string } = {}): VerifyResult {
  const leaf = chain[0];
  if (leaf === undefined) return fail('malformed', 'no certificate presented');
  let der: Buffer;
  try {
    der = toDer(leaf);
  } catch (err) {
    return fail('malformed', (err as Error).message);
  }
  if (der.length > MAX_CERTIFICATE_BYTES) return fail('malformed', `certificate of ${der.length} bytes exceeds ${MAX_CERTIFICATE_BYTES}`);
  const fingerprint = createHash('sha256').update(der).digest('hex');
  const cache = caCache(trust.caCertificates);
  let entry = cache.leaves.get(fingerprint);
  if (!entry) {
    entry = examineLeaf(der, cache.cas);
    if (cache.leaves.size >= MAX_CACHED_LEAVES) cache.leaves.clear();
    cache.leaves.set(fingerprint, entry);
  }
  if (!entry.trusted) return fail(entry.reason, entry.detail);

  const now = (opts.now ?? new Date()).getTime();
  const { ca, facts } = entry;
  if (now < ca.notBefore || now > ca.notAfter) {
    return fail('untrusted-ca', `the issuing CA "${ca.subject.replace(/\n/g, ', ')}" is outside its validity (${new Date(ca.notBefore).toISOString()} .. ${new Date(ca.notAfter).toISOString()})`);
  }
  const revoked = revokedCache(trust.revoked);
  if (revoked.serials.has(entry.serial)) return fail('revoked', `serial ${entry.serial} is revoked in fabric.yaml`);
  if (revoked.fingerprints.has(fingerprint)) return fail('revoked', `fingerprint ${fingerprint} is revoked in fabric.yaml`);
  if (now < facts.notBefore.getTime()) return fail('not-yet-valid', `valid from ${facts.notBefore.toISOString()}`);
  if (now > facts.notAfter.getTime()) return fail('expired', `expired at ${facts.notAfter.toISOString()}`);

  if (facts.isCa) return fail('bad-key-usage', 'a CA certificate cannot identify a peer');
  const eku = facts.extendedKeyUsage;
  if (eku === null || !eku.includes(EKU_SERVER_AUTH) || !eku.includes(EKU_CLIENT_AUTH)) {
    return fail('bad-key-usage', `extended key usage must include serverAuth and clientAuth, got ${eku === null ? 'none' : eku.join(', ')}`);
  }
  if (facts.keyUsage !== null && (facts.keyUsage & KEY_USAGE.digitalSignature) === 0) {
    return fail('bad-key-usage', 'key usage lacks digitalSignature');
  }

  const peer = facts.sanDns[0];
  if (facts.sanDns.length !== 1 || peer === undefined || !PEER_NAME.test(peer)) {
    return fail('bad-san', `a peer certificate names exactly one peer as DNS SAN, got ${JSON.stringify(facts.sanDns)}`);
  }
  const uri = peerUri(trust.fabric, peer);
  if (facts.sanUris.length !== 1 || facts.sanUris[0] !== uri || facts.sanOther.length > 0) {
    return fail('bad-san', `expected URI SAN ${uri}, got ${JSON.stringify([...facts.sanUris, ...facts.sanOther])}`);
  }

  const members = memberCache(trust.members);
  if (!members.has(peer)) return fail('not-a-member', `peer "${peer}" is not a current member related to this peer in fabric ${trust.fabric}`);
  const pin = members.get(peer);
  if (pin === null || pin === undefined) return fail('unpinned', `peer "${peer}" has no committed peers/${peer}/peer.pem`);
  if (pin !== fingerprint) return fail('pin-mismatch', `certificate ${fingerprint} for "${peer}" is not the committed peers/${peer}/peer.pem (${pin})`);
  if (opts.expectedPeer !== undefined && opts.expectedPeer !== peer) {
    return fail('unexpected-peer', `expected peer "${opts.expectedPeer}", the certificate identifies "${peer}"`);
  }
  return { ok: true, peer, fingerprint };
}
