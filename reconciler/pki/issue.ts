// Issuing: the fabric CA, peer keys + CSRs, and signing a CSR into a peer certificate.
//
// Why @peculiar/x509 and not node-forge: forge signs only with RSA, and the fabric's default key
// is ECDSA P-256 (the fastest full mutual-TLS handshake, see test/bench/pki.bench.ts). @peculiar/x509
// builds X.509/PKCS#10 structures over WebCrypto, which here is node:crypto's native OpenSSL, so one
// code path covers P-256, P-384, RSA and Ed25519 with native key generation and signing. Forge is
// not used at all: a second ASN.1 stack would only add parsing differences.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createPrivateKey, createPublicKey, randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import { PEER_NAME } from '../../schema/kinds.ts';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

/**
 * Key types for the CA and peers. p256 is the default. ed25519 works between Node data planes
 * (OpenSSL 3, TLS 1.2/1.3) and with `openssl verify`, but Envoy/BoringSSL and browsers do not accept
 * Ed25519 certificates: use it only for a fabric that runs the Node data plane everywhere.
 */
export type KeyType = 'p256' | 'p384' | 'rsa-2048' | 'rsa-4096' | 'ed25519';
export const KEY_TYPES: readonly KeyType[] = ['p256', 'p384', 'rsa-2048', 'rsa-4096', 'ed25519'];
export const DEFAULT_KEY_TYPE: KeyType = 'p256';

/** Peer certificates live one year by default (ClusterLink issues ten). */
export const DEFAULT_PEER_LIFETIME_DAYS = 365;
export const DEFAULT_CA_LIFETIME_DAYS = 5 * 365;
/** Back-date notBefore a little so a peer whose clock is slightly behind accepts a fresh certificate. */
const CLOCK_SKEW_MS = 5 * 60_000;
const DAY_MS = 86_400_000;

export const EKU_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
export const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const EKU_OID = { serverAuth: EKU_SERVER_AUTH, clientAuth: EKU_CLIENT_AUTH } as const;

/** Peer names (schema/kinds.ts: a DNS-1123 subdomain of at most 63 characters, e.g. cluster17.us-east). */
export { PEER_NAME };
/** Fabric names: a DNS-1123 label (the host part of every peer's URI SAN). */
export const FABRIC_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** `clusterlink://<fabric>/<peer>`: the URI SAN naming a peer within one fabric. */
export function peerUri(fabricName: string, peerName: string): string {
  return `clusterlink://${fabricName}/${peerName}`;
}

interface Algorithms {
  generate: webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams | webcrypto.Algorithm;
  /** For importing PKCS#8 / SPKI of this type. */
  import: webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams | webcrypto.Algorithm;
  sign: webcrypto.RsaHashedImportParams | webcrypto.EcdsaParams | webcrypto.Algorithm;
  rsa: boolean;
}

function algorithmsFor(keyType: KeyType): Algorithms {
  switch (keyType) {
    case 'p256':
    case 'p384': {
      const namedCurve = keyType === 'p256' ? 'P-256' : 'P-384';
      const hash = keyType === 'p256' ? 'SHA-256' : 'SHA-384';
      return { generate: { name: 'ECDSA', namedCurve }, import: { name: 'ECDSA', namedCurve }, sign: { name: 'ECDSA', hash }, rsa: false };
    }
    case 'rsa-2048':
    case 'rsa-4096': {
      const modulusLength = keyType === 'rsa-2048' ? 2048 : 4096;
      const params = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
      return { generate: { ...params, modulusLength, publicExponent: new Uint8Array([1, 0, 1]) }, import: params, sign: params, rsa: true };
    }
    case 'ed25519':
      return { generate: { name: 'Ed25519' }, import: { name: 'Ed25519' }, sign: { name: 'Ed25519' }, rsa: false };
  }
}

/** Key type of an existing key (for signing with a CA key loaded from a file). */
export function keyTypeOf(key: KeyObject): KeyType {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec':
      if (details.namedCurve === 'prime256v1') return 'p256';
      if (details.namedCurve === 'secp384r1') return 'p384';
      break;
    case 'rsa':
      if (details.modulusLength === 2048) return 'rsa-2048';
      if (details.modulusLength === 4096) return 'rsa-4096';
      break;
    case 'ed25519':
      return 'ed25519';
  }
  throw new Error(`unsupported key (${key.asymmetricKeyType ?? 'unknown'} ${JSON.stringify(details)}); supported: ${KEY_TYPES.join(', ')}`);
}

async function generateKeys(keyType: KeyType): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(algorithmsFor(keyType).generate, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
}

/** A PEM private key as a WebCrypto signing key, with its type. */
async function importSigningKey(pem: string): Promise<{ key: CryptoKey; keyType: KeyType; spki: Buffer }> {
  const keyObject = createPrivateKey(pem);
  const keyType = keyTypeOf(keyObject);
  const pkcs8 = keyObject.export({ type: 'pkcs8', format: 'der' });
  const key = await webcrypto.subtle.importKey('pkcs8', pkcs8, algorithmsFor(keyType).import, false, ['sign']);
  const spki = createPublicKey(keyObject).export({ type: 'spki', format: 'der' });
  return { key, keyType, spki };
}

/** 128 random bits; the encoder adds a leading zero byte when needed to keep it positive. */
function randomSerial(): string {
  return randomBytes(16).toString('hex');
}

function validity(notBefore: Date | undefined, lifetimeDays: number): { notBefore: Date; notAfter: Date } {
  if (!Number.isFinite(lifetimeDays) || lifetimeDays <= 0) throw new Error(`lifetime must be a positive number of days, got ${lifetimeDays}`);
  const start = notBefore ?? new Date(Date.now() - CLOCK_SKEW_MS);
  return { notBefore: start, notAfter: new Date(start.getTime() + lifetimeDays * DAY_MS) };
}

export async function createCertificateAuthority(opts: {
  fabricName: string;
  keyType?: KeyType;
  lifetimeDays?: number;
  notBefore?: Date;
}): Promise<{ certificatePem: string; privateKeyPem: string }> {
  if (!FABRIC_NAME.test(opts.fabricName)) throw new Error(`fabric name ${JSON.stringify(opts.fabricName)} must be a DNS-1123 label`);
  const keyType = opts.keyType ?? DEFAULT_KEY_TYPE;
  const keys = await generateKeys(keyType);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${opts.fabricName} fabric CA, O=${opts.fabricName}`,
    ...validity(opts.notBefore, opts.lifetimeDays ?? DEFAULT_CA_LIFETIME_DAYS),
    signingAlgorithm: algorithmsFor(keyType).sign,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certificatePem: cert.toString('pem') + '\n', privateKeyPem: await privateKeyPem(keys.privateKey) };
}

export async function createPeerKey(opts: {
  peerName: string;
  fabricName: string;
  keyType?: KeyType;
}): Promise<{ privateKeyPem: string; csrPem: string }> {
  if (!PEER_NAME.test(opts.peerName)) throw new Error(`peer name ${JSON.stringify(opts.peerName)} must be a DNS-1123 subdomain of at most 63 characters`);
  if (!FABRIC_NAME.test(opts.fabricName)) throw new Error(`fabric name ${JSON.stringify(opts.fabricName)} must be a DNS-1123 label`);
  const keyType = opts.keyType ?? DEFAULT_KEY_TYPE;
  const keys = await generateKeys(keyType);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${opts.peerName}, O=${opts.fabricName}`,
    keys,
    signingAlgorithm: algorithmsFor(keyType).sign,
    // Informational for the signer; signPeerCsr derives the SANs from the CN and ignores requested extensions.
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: opts.peerName }, { type: 'url', value: peerUri(opts.fabricName, opts.peerName) }])],
  });
  return { privateKeyPem: await privateKeyPem(keys.privateKey), csrPem: csr.toString('pem') + '\n' };
}

export interface CsrInfo {
  peerName: string;
  /** The O= of the subject, if present: the fabric the CSR was made for. */
  fabricName: string | null;
  keyType: KeyType;
}

/** Parses and checks a CSR (self-signature, CN is a peer name). Throws with a readable message otherwise. */
export async function inspectCsr(csrPem: string): Promise<CsrInfo> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new Error(`not a PKCS#10 certificate signing request: ${(err as Error).message}`);
  }
  if (!(await csr.verify())) throw new Error('the CSR signature does not verify (corrupted or tampered request)');
  const cns = csr.subjectName.getField('CN');
  const peerName = cns[0];
  if (cns.length !== 1 || peerName === undefined || !PEER_NAME.test(peerName)) {
    throw new Error(`the CSR subject CN must be exactly one peer name (DNS-1123 subdomain), got ${JSON.stringify(cns)}`);
  }
  const orgs = csr.subjectName.getField('O');
  const keyType = keyTypeOf(createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' }));
  return { peerName, fabricName: orgs[0] ?? null, keyType };
}

export async function signPeerCsr(opts: {
  csrPem: string;
  ca: { certificatePem: string; privateKeyPem: string };
  fabricName: string;
  lifetimeDays?: number;
  notBefore?: Date;
  /** Test-only: issue with other extended key usages. */
  extendedKeyUsage?: ('serverAuth' | 'clientAuth')[];
  /** Test-only: issue with other DNS SANs. */
  sanDns?: string[];
}): Promise<string> {
  const info = await inspectCsr(opts.csrPem);
  if (info.fabricName !== null && info.fabricName !== opts.fabricName) {
    throw new Error(`the CSR was made for fabric ${JSON.stringify(info.fabricName)}, not ${JSON.stringify(opts.fabricName)}`);
  }
  const csr = new x509.Pkcs10CertificateRequest(opts.csrPem);
  const caCert = new x509.X509Certificate(opts.ca.certificatePem);
  const caKey = await importSigningKey(opts.ca.privateKeyPem);
  if (!Buffer.from(caCert.publicKey.rawData).equals(caKey.spki)) throw new Error('the CA private key does not belong to the CA certificate');
  const basic = caCert.getExtension(x509.BasicConstraintsExtension);
  if (!basic?.ca) throw new Error('the CA certificate is not a CA (basicConstraints cA is not set)');

  const { notBefore, notAfter: wanted } = validity(opts.notBefore, opts.lifetimeDays ?? DEFAULT_PEER_LIFETIME_DAYS);
  // Never outlive the CA: a certificate valid past its issuer would fail verification anyway.
  const notAfter = wanted.getTime() > caCert.notAfter.getTime() ? caCert.notAfter : wanted;
  const peer = info.peerName;
  const rsa = info.keyType === 'rsa-2048' || info.keyType === 'rsa-4096';
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${peer}, O=${opts.fabricName}`,
    issuer: caCert.subject,
    notBefore,
    notAfter,
    signingAlgorithm: algorithmsFor(caKey.keyType).sign,
    publicKey: csr.publicKey,
    signingKey: caKey.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      // keyEncipherment only for RSA keys (RSA key transport in TLS 1.2); ECDSA/Ed25519 only sign.
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | (rsa ? x509.KeyUsageFlags.keyEncipherment : 0), true),
      new x509.ExtendedKeyUsageExtension((opts.extendedKeyUsage ?? ['serverAuth', 'clientAuth']).map((u) => EKU_OID[u])),
      new x509.SubjectAlternativeNameExtension([
        ...(opts.sanDns ?? [peer]).map((value) => ({ type: 'dns' as const, value })),
        { type: 'url', value: peerUri(opts.fabricName, peer) },
      ]),
      await x509.SubjectKeyIdentifierExtension.create(csr.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return cert.toString('pem') + '\n';
}

/** Key, CSR and certificate in one step (tests and the demo; real peers keep the key and send only the CSR). */
export async function issuePeerCertificate(opts: {
  peerName: string;
  fabricName: string;
  ca: { certificatePem: string; privateKeyPem: string };
  keyType?: KeyType;
  lifetimeDays?: number;
  notBefore?: Date;
  extendedKeyUsage?: ('serverAuth' | 'clientAuth')[];
  sanDns?: string[];
}): Promise<{ certificatePem: string; privateKeyPem: string; csrPem: string }> {
  const { privateKeyPem, csrPem } = await createPeerKey(opts);
  const certificatePem = await signPeerCsr({ ...opts, csrPem });
  return { certificatePem, privateKeyPem, csrPem };
}
