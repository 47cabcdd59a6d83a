// Encoding helpers shared by issuing, verification and diagnostics: PEM <-> DER, fingerprints,
// and the normalised spellings of serials and fingerprints used for revocation and pins.
import { createHash } from 'node:crypto';

const PEM_CERT = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g;

/** DER bytes of every certificate in a PEM text, in order. */
export function pemCertificatesToDer(pem: string): Buffer[] {
  const out: Buffer[] = [];
  for (const m of pem.matchAll(PEM_CERT)) out.push(Buffer.from((m[1] ?? '').replace(/\s+/g, ''), 'base64'));
  return out;
}

/** DER of one certificate given as PEM text or DER bytes; throws if a string holds no PEM certificate. */
export function toDer(pemOrDer: string | Uint8Array): Buffer {
  if (typeof pemOrDer !== 'string') return Buffer.isBuffer(pemOrDer) ? pemOrDer : Buffer.from(pemOrDer.buffer, pemOrDer.byteOffset, pemOrDer.byteLength);
  const [first] = pemCertificatesToDer(pemOrDer);
  if (!first || first.length === 0) throw new Error('not a PEM certificate (-----BEGIN CERTIFICATE----- ...)');
  return first;
}

export function derToPem(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN CERTIFICATE-----\n${b64.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;
}

/** SHA-256 over the certificate's DER: lower-case hex, no colons (the form used for pins in the Slice). */
export function fingerprintSha256(pemOrDer: string | Uint8Array): string {
  return createHash('sha256').update(toDer(pemOrDer)).digest('hex');
}

/** `AB:CD:..` or `abcd..` → `abcd..`. */
export function normalizeFingerprint(fp: string): string {
  return fp.replace(/:/g, '').toLowerCase();
}

/** Hex serial in any spelling (colons, case, leading zeros) → lower-case hex without leading zeros. */
export function normalizeSerial(serial: string): string {
  const hex = serial.replace(/:/g, '').toLowerCase().replace(/^0+/, '');
  return hex === '' ? '0' : hex;
}
