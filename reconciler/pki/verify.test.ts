import { beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { createCertificateAuthority, issuePeerCertificate } from './issue.ts';
import { fingerprintSha256, toDer } from './encoding.ts';
import { verifyPeer, type PeerTrust } from './verify.ts';

type Ca = { certificatePem: string; privateKeyPem: string };
const DAY = 86_400_000;
const member = (name: string, pem: string | null) => ({ name, labels: {}, gateways: [], certificateFingerprint: pem === null ? null : fingerprintSha256(pem) });

let caA: Ca;
let caB: Ca;
let west: string;
let east: string;
let trust: PeerTrust;

beforeAll(async () => {
  [caA, caB] = await Promise.all([createCertificateAuthority({ fabricName: 'demo' }), createCertificateAuthority({ fabricName: 'demo' })]);
  west = (await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca: caA })).certificatePem;
  east = (await issuePeerCertificate({ peerName: 'east', fabricName: 'demo', ca: caA })).certificatePem;
  trust = { fabric: 'demo', caCertificates: [caA.certificatePem], revoked: { serials: [], fingerprints: [] }, members: [member('east', east), member('west', west)] };
});

/** A trust object for one test: the committed pin for `name` is `pem`. */
function trustWith(name: string, pem: string | null, extra: Partial<PeerTrust> = {}): PeerTrust {
  return { ...trust, members: [...trust.members.filter((m) => m.name !== name), member(name, pem)], ...extra };
}

describe('verifyPeer accepts', () => {
  it('a committed member certificate, as PEM or DER, and names the peer', () => {
    expect(verifyPeer([west], trust)).toEqual({ ok: true, peer: 'west', fingerprint: fingerprintSha256(west) });
    expect(verifyPeer([toDer(west)], trust, { expectedPeer: 'west' })).toMatchObject({ ok: true, peer: 'west' });
  });

  it('certificates from either CA while the bundle holds two (CA rotation)', async () => {
    const westB = (await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca: caB })).certificatePem;
    const rotating = trustWith('west', westB, { caCertificates: [caA.certificatePem, caB.certificatePem] });
    expect(verifyPeer([east], rotating)).toMatchObject({ ok: true, peer: 'east' });
    expect(verifyPeer([westB], rotating)).toMatchObject({ ok: true, peer: 'west' });
    // once the old CA leaves the bundle, its certificates stop working
    expect(verifyPeer([east], { ...rotating, caCertificates: [caB.certificatePem] })).toMatchObject({ ok: false, reason: 'untrusted-ca' });
  });
});

describe('verifyPeer rejects, with a distinct reason', () => {
  it('malformed input', () => {
    expect(verifyPeer([], trust)).toMatchObject({ ok: false, reason: 'malformed' });
    expect(verifyPeer(['hello'], trust)).toMatchObject({ ok: false, reason: 'malformed' });
    expect(verifyPeer([new Uint8Array([48, 3, 1, 2, 3])], trust)).toMatchObject({ ok: false, reason: 'malformed' });
    expect(verifyPeer([new Uint8Array(100_000)], trust)).toMatchObject({ ok: false, reason: 'malformed', detail: expect.stringContaining('exceeds') });
  });

  it('a certificate from another CA (untrusted-ca), even with a member name', async () => {
    const other = (await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca: caB })).certificatePem;
    expect(verifyPeer([other], trustWith('west', other))).toMatchObject({ ok: false, reason: 'untrusted-ca' });
  });

  it('a certificate of an expired CA (untrusted-ca)', () => {
    expect(verifyPeer([west], trust, { now: new Date(Date.now() + 6 * 365 * DAY) })).toMatchObject({ ok: false, reason: 'untrusted-ca' });
  });

  it('an expired certificate', async () => {
    const oldCa = await createCertificateAuthority({ fabricName: 'demo', notBefore: new Date(Date.now() - 20 * DAY) });
    const old = (await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca: oldCa, notBefore: new Date(Date.now() - 10 * DAY), lifetimeDays: 1 })).certificatePem;
    const oldTrust = trustWith('west', old, { caCertificates: [oldCa.certificatePem] });
    expect(verifyPeer([old], oldTrust)).toMatchObject({ ok: false, reason: 'expired' });
    // the same certificate was fine while it was valid
    expect(verifyPeer([old], oldTrust, { now: new Date(Date.now() - 9.5 * DAY) })).toMatchObject({ ok: true });
  });

  it('a certificate that is not yet valid', async () => {
    const future = (await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca: caA, notBefore: new Date(Date.now() + DAY) })).certificatePem;
    expect(verifyPeer([future], trustWith('west', future))).toMatchObject({ ok: false, reason: 'not-yet-valid' });
  });

  it('a wrong SAN (DNS name disagrees with the peer URI, or two names, or another fabric)', async () => {
    const wrong = (await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca: caA, sanDns: ['south'] })).certificatePem;
    expect(verifyPeer([wrong], trustWith('west', wrong))).toMatchObject({ ok: false, reason: 'bad-san' });
    const two = (await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca: caA, sanDns: ['west', 'east'] })).certificatePem;
    expect(verifyPeer([two], trustWith('west', two))).toMatchObject({ ok: false, reason: 'bad-san' });
    const otherFabric = (await issuePeerCertificate({ peerName: 'west', fabricName: 'prod', ca: caA })).certificatePem;
    expect(verifyPeer([otherFabric], trustWith('west', otherFabric))).toMatchObject({ ok: false, reason: 'bad-san', detail: expect.stringContaining('clusterlink://demo/west') });
  });

  it('the SAN of a removed (or never added) peer', async () => {
    const north = (await issuePeerCertificate({ peerName: 'north', fabricName: 'demo', ca: caA })).certificatePem;
    expect(verifyPeer([north], trust)).toMatchObject({ ok: false, reason: 'not-a-member' });
    // west removed from the fabric: its still-valid certificate stops working
    expect(verifyPeer([west], { ...trust, members: trust.members.filter((m) => m.name !== 'west') })).toMatchObject({ ok: false, reason: 'not-a-member' });
  });

  it('a revoked serial, in any hex spelling', () => {
    const serial = new X509Certificate(west).serialNumber; // upper-case hex, as openssl prints it
    const spelled = serial.match(/../g)?.join(':') ?? serial;
    expect(verifyPeer([west], { ...trust, revoked: { serials: [spelled], fingerprints: [] } })).toMatchObject({ ok: false, reason: 'revoked', detail: expect.stringContaining('serial') });
  });

  it('a revoked fingerprint', () => {
    const fp = new X509Certificate(west).fingerprint256; // AB:CD:.. form
    expect(verifyPeer([west], { ...trust, revoked: { serials: [], fingerprints: [fp] } })).toMatchObject({ ok: false, reason: 'revoked', detail: expect.stringContaining('fingerprint') });
    expect(verifyPeer([east], { ...trust, revoked: { serials: [], fingerprints: [fp] } })).toMatchObject({ ok: true });
  });

  it('a CA-signed certificate for a member that is not the committed peer.pem (a peer claiming another name)', async () => {
    // e.g. east's operator obtained a CA-signed certificate naming west: the pin on west's peer.pem stops it
    const impostor = (await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca: caA })).certificatePem;
    expect(verifyPeer([impostor], trust)).toMatchObject({ ok: false, reason: 'pin-mismatch' });
  });

  it('a member without a committed peer.pem (unpinned)', () => {
    expect(verifyPeer([west], trustWith('west', null))).toMatchObject({ ok: false, reason: 'unpinned' });
  });

  it('wrong key usage: serverAuth only, clientAuth only, or a CA certificate', async () => {
    for (const eku of [['serverAuth'], ['clientAuth']] as const) {
      const pem = (await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca: caA, extendedKeyUsage: [...eku] })).certificatePem;
      expect(verifyPeer([pem], trustWith('west', pem))).toMatchObject({ ok: false, reason: 'bad-key-usage' });
    }
    expect(verifyPeer([caA.certificatePem], trust)).toMatchObject({ ok: false, reason: 'bad-key-usage' });
  });

  it('a valid member that is not the expected peer (unexpected-peer)', () => {
    expect(verifyPeer([east], trust, { expectedPeer: 'west' })).toMatchObject({ ok: false, reason: 'unexpected-peer' });
  });

  it('answers from the trust object given, not a cached earlier one', () => {
    expect(verifyPeer([west], trust)).toMatchObject({ ok: true });
    expect(verifyPeer([west], { ...trust, revoked: { serials: [], fingerprints: [fingerprintSha256(west)] } })).toMatchObject({ reason: 'revoked' });
    expect(verifyPeer([west], trust)).toMatchObject({ ok: true });
  });
});
