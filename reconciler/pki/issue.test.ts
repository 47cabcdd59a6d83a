import { beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { createCertificateAuthority, createPeerKey, inspectCsr, issuePeerCertificate, signPeerCsr } from './issue.ts';
import { certFacts, KEY_USAGE } from './certinfo.ts';
import { fingerprintSha256 } from './encoding.ts';

type Ca = { certificatePem: string; privateKeyPem: string };
const DAY = 86_400_000;
let ca: Ca;

beforeAll(async () => {
  ca = await createCertificateAuthority({ fabricName: 'demo' });
});

describe('issuing', () => {
  it('makes a P-256 CA by default, marked as a CA that can sign certificates', () => {
    const cert = new X509Certificate(ca.certificatePem);
    expect(cert.ca).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(certFacts(ca.certificatePem).keyUsage ?? 0).toBe(KEY_USAGE.keyCertSign | KEY_USAGE.cRLSign | KEY_USAGE.digitalSignature);
  });

  it('issues peer certificates valid for 365 days with SAN DNS + URI, both EKUs, and distinct random 128-bit serials', async () => {
    const a = await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca });
    const b = await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca });
    const facts = certFacts(a.certificatePem);
    expect(facts.sanDns).toEqual(['west']);
    expect(facts.sanUris).toEqual(['clusterlink://demo/west']);
    expect(facts.extendedKeyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(facts.keyUsage).toBe(KEY_USAGE.digitalSignature);
    expect(facts.isCa).toBe(false);
    expect(Math.round((facts.notAfter.getTime() - facts.notBefore.getTime()) / DAY)).toBe(365);
    expect(facts.serial).not.toBe(certFacts(b.certificatePem).serial);
    expect(facts.serial.replace(/^00/, '').length).toBeGreaterThanOrEqual(30); // ~128 bits of hex
    expect(a.privateKeyPem).toContain('BEGIN PRIVATE KEY');
    expect(a.csrPem).not.toContain('PRIVATE KEY');
  });

  it('adds keyEncipherment for RSA peer keys only', async () => {
    const rsa = await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca, keyType: 'rsa-2048' });
    expect(certFacts(rsa.certificatePem).keyUsage).toBe(KEY_USAGE.digitalSignature | KEY_USAGE.keyEncipherment);
  });

  it('never lets a peer certificate outlive its CA', async () => {
    const shortCa = await createCertificateAuthority({ fabricName: 'demo', lifetimeDays: 10 });
    const peer = await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca: shortCa });
    expect(certFacts(peer.certificatePem).notAfter.getTime()).toBe(certFacts(shortCa.certificatePem).notAfter.getTime());
  });

  it('reads the peer name and fabric from a CSR', async () => {
    const { csrPem } = await createPeerKey({ peerName: 'east', fabricName: 'demo', keyType: 'p384' });
    expect(await inspectCsr(csrPem)).toEqual({ peerName: 'east', fabricName: 'demo', keyType: 'p384' });
  });
});

describe('signPeerCsr refuses', () => {
  it('a tampered CSR, a CSR for another fabric, and garbage', async () => {
    const { csrPem } = await createPeerKey({ peerName: 'east', fabricName: 'demo' });
    const body = csrPem.split('\n').filter((l) => !l.startsWith('-----')).join('');
    const bytes = Buffer.from(body, 'base64');
    bytes[bytes.length - 5] = (bytes[bytes.length - 5] ?? 0) ^ 0xff; // corrupt the signature
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${bytes.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await expect(signPeerCsr({ csrPem: tampered, ca, fabricName: 'demo' })).rejects.toThrow(/signature/);
    await expect(signPeerCsr({ csrPem, ca, fabricName: 'prod' })).rejects.toThrow(/made for fabric "demo"/);
    await expect(signPeerCsr({ csrPem: 'hello', ca, fabricName: 'demo' })).rejects.toThrow(/PKCS#10/);
  });

  it('a CA key that does not belong to the CA certificate, and a CA certificate that is not a CA', async () => {
    const { csrPem } = await createPeerKey({ peerName: 'east', fabricName: 'demo' });
    const other = await createCertificateAuthority({ fabricName: 'demo' });
    await expect(signPeerCsr({ csrPem, ca: { certificatePem: ca.certificatePem, privateKeyPem: other.privateKeyPem }, fabricName: 'demo' })).rejects.toThrow(/does not belong/);
    const leaf = await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca });
    await expect(signPeerCsr({ csrPem, ca: { certificatePem: leaf.certificatePem, privateKeyPem: leaf.privateKeyPem }, fabricName: 'demo' })).rejects.toThrow(/not a CA/);
  });

  it('names that are not DNS-1123 labels', async () => {
    await expect(createPeerKey({ peerName: 'West_1', fabricName: 'demo' })).rejects.toThrow(/DNS-1123/);
    await expect(createCertificateAuthority({ fabricName: 'a,b' })).rejects.toThrow(/DNS-1123/);
  });
});

describe('fingerprintSha256', () => {
  it('is lower-case hex without colons and equal for PEM and DER', () => {
    const fp = fingerprintSha256(ca.certificatePem);
    expect(fp).toMatch(/^[0-9a-f]{64}$/);
    expect(fp).toBe(new X509Certificate(ca.certificatePem).fingerprint256.replace(/:/g, '').toLowerCase());
    expect(fingerprintSha256(new X509Certificate(ca.certificatePem).raw)).toBe(fp);
    expect(() => fingerprintSha256('not a pem')).toThrow();
  });
});
