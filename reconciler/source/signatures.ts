// Commit signature verification against the keys the currently trusted fabric.yaml allows:
// OpenPGP signatures with openpgp (a maintained, audited implementation), SSH signatures (git's
// gpg.format=ssh, the SSHSIG format of OpenSSH's PROTOCOL.sshsig) with node:crypto.
import { createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import * as openpgp from 'openpgp';
import type { SigningKey } from '../../schema/model.ts';

export type SignatureCheck = { ok: true; key: string } | { ok: false; reason: string };

const MAX_SIGNATURE_BYTES = 16 * 1024;

/** Verifies `signature` (the commit's gpgsig header) over `payload` (the commit without it). */
export async function verifyCommitSignature(payload: string, signature: string | undefined, allowed: readonly SigningKey[]): Promise<SignatureCheck> {
  if (!signature) return { ok: false, reason: 'the commit is not signed' };
  if (signature.length > MAX_SIGNATURE_BYTES) return { ok: false, reason: 'the signature is implausibly large' };
  if (allowed.length === 0) return { ok: false, reason: 'fabric.yaml requires signed commits but lists no allowedSigningKeys' };
  if (signature.includes('-----BEGIN SSH SIGNATURE-----')) {
    for (const key of allowed.filter((k) => k.type === 'ssh')) {
      try {
        if (verifySshSignature(Buffer.from(payload, 'utf8'), signature, key.publicKey, 'git')) return { ok: true, key: key.name };
      } catch {
        // A malformed key or signature simply does not verify; try the next key.
      }
    }
    return { ok: false, reason: 'the SSH signature matches none of the allowed keys' };
  }
  if (signature.includes('-----BEGIN PGP SIGNATURE-----')) {
    let sig: openpgp.Signature;
    try {
      sig = await openpgp.readSignature({ armoredSignature: signature });
    } catch (err) {
      return { ok: false, reason: `unreadable OpenPGP signature: ${(err as Error).message}` };
    }
    const message = await openpgp.createMessage({ text: payload });
    for (const key of allowed.filter((k) => k.type === 'openpgp')) {
      try {
        const verificationKeys = await openpgp.readKey({ armoredKey: key.publicKey });
        const result = await openpgp.verify({ message, signature: sig, verificationKeys, format: 'utf8' });
        for (const s of result.signatures) {
          if (await s.verified.then(() => true, () => false)) return { ok: true, key: key.name };
        }
      } catch {
        // Try the next key.
      }
    }
    return { ok: false, reason: 'the OpenPGP signature matches none of the allowed keys' };
  }
  return { ok: false, reason: 'unknown signature format (expected OpenPGP or SSH)' };
}

/**
 * Splits a raw commit or tag object into the signed payload and its signature. Done here rather
 * than trusting isomorphic-git's payload, which only strips OpenPGP signatures: commits carry the
 * signature in a `gpgsig` header (continuation lines start with a space); tags append it to the
 * message.
 */
export function splitSignedObject(raw: string, type: 'commit' | 'tag'): { payload: string; signature: string | undefined } {
  if (type === 'tag') {
    const m = /\n(-----BEGIN (?:PGP|SSH) SIGNATURE-----\n[\s\S]*-----END (?:PGP|SSH) SIGNATURE-----\n?)$/.exec(raw);
    if (!m) return { payload: raw, signature: undefined };
    return { payload: raw.slice(0, m.index + 1), signature: m[1] };
  }
  const headerEnd = raw.indexOf('\n\n');
  const head = headerEnd < 0 ? raw : raw.slice(0, headerEnd + 1);
  const lines = head.split('\n');
  const kept: string[] = [];
  const sig: string[] = [];
  let inSig = false;
  for (const line of lines) {
    if (line.startsWith('gpgsig ')) {
      inSig = true;
      sig.push(line.slice('gpgsig '.length));
    } else if (inSig && line.startsWith(' ')) sig.push(line.slice(1));
    else {
      inSig = false;
      kept.push(line);
    }
  }
  const payload = kept.join('\n') + (headerEnd < 0 ? '' : raw.slice(headerEnd + 1));
  return { payload, signature: sig.length > 0 ? sig.join('\n') : undefined };
}

// --- SSHSIG ---------------------------------------------------------------------------------

class Reader {
  private off = 0;
  constructor(private readonly buf: Buffer) {}
  bytes(): Buffer {
    if (this.off + 4 > this.buf.length) throw new Error('truncated');
    const n = this.buf.readUInt32BE(this.off);
    this.off += 4;
    if (n > this.buf.length - this.off) throw new Error('truncated');
    const out = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return out;
  }
  string(): string {
    return this.bytes().toString('latin1');
  }
  uint32(): number {
    if (this.off + 4 > this.buf.length) throw new Error('truncated');
    const n = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return n;
  }
  raw(n: number): Buffer {
    if (this.off + n > this.buf.length) throw new Error('truncated');
    const out = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return out;
  }
}

const sshString = (b: Buffer | string): Buffer => {
  const body = typeof b === 'string' ? Buffer.from(b, 'latin1') : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
};

const b64url = (b: Buffer): string => b.toString('base64url');
const unsigned = (b: Buffer): Buffer => (b.length > 1 && b[0] === 0 ? b.subarray(1) : b);

/** An SSH wire-format public key blob → node:crypto key, and the signature algorithm it uses. */
function sshPublicKey(blob: Buffer): { key: KeyObject; type: string } {
  const r = new Reader(blob);
  const type = r.string();
  if (type === 'ssh-ed25519') {
    return { type, key: createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64url(r.bytes()) }, format: 'jwk' }) };
  }
  if (type.startsWith('ecdsa-sha2-nistp')) {
    const curve = r.string();
    const q = r.bytes();
    const crv = { nistp256: 'P-256', nistp384: 'P-384', nistp521: 'P-521' }[curve];
    if (!crv || q[0] !== 4) throw new Error(`unsupported ECDSA key ${curve}`);
    const n = (q.length - 1) / 2;
    return { type, key: createPublicKey({ key: { kty: 'EC', crv, x: b64url(q.subarray(1, 1 + n)), y: b64url(q.subarray(1 + n)) }, format: 'jwk' }) };
  }
  if (type === 'ssh-rsa') {
    const e = r.bytes();
    const n = r.bytes();
    return { type, key: createPublicKey({ key: { kty: 'RSA', e: b64url(unsigned(e)), n: b64url(unsigned(n)) }, format: 'jwk' }) };
  }
  throw new Error(`unsupported SSH key type ${type}`);
}

function parseAuthorizedKey(line: string): Buffer {
  const parts = line.trim().split(/\s+/);
  const blob = parts.find((p, i) => i > 0 && /^AAAA[0-9A-Za-z+/=]+$/.test(p)) ?? parts[1];
  if (!blob) throw new Error('not an SSH public key line');
  return Buffer.from(blob, 'base64');
}

/** Verifies an armored SSHSIG over `message` for `namespace` with the allowed `publicKeyLine`. */
export function verifySshSignature(message: Buffer, armored: string, publicKeyLine: string, namespace: string): boolean {
  const b64 = armored.replace(/-----(BEGIN|END) SSH SIGNATURE-----/g, '').replace(/\s+/g, '');
  const sig = new Reader(Buffer.from(b64, 'base64'));
  if (sig.raw(6).toString('latin1') !== 'SSHSIG') throw new Error('not an SSHSIG blob');
  if (sig.uint32() !== 1) throw new Error('unsupported SSHSIG version');
  const signerKey = sig.bytes();
  const ns = sig.string();
  const reserved = sig.bytes();
  const hashAlg = sig.string();
  const signatureBlob = sig.bytes();
  if (ns !== namespace) return false;
  if (!signerKey.equals(parseAuthorizedKey(publicKeyLine))) return false;
  if (hashAlg !== 'sha256' && hashAlg !== 'sha512') throw new Error(`unsupported hash ${hashAlg}`);
  const signed = Buffer.concat([Buffer.from('SSHSIG', 'latin1'), sshString(ns), sshString(reserved), sshString(hashAlg), sshString(createHash(hashAlg).update(message).digest())]);
  const { key, type } = sshPublicKey(signerKey);
  const s = new Reader(signatureBlob);
  const sigType = s.string();
  const sigBytes = s.bytes();
  if (type === 'ssh-ed25519') return sigType === 'ssh-ed25519' && cryptoVerify(null, signed, key, sigBytes);
  if (type.startsWith('ecdsa-sha2-')) {
    const rs = new Reader(sigBytes);
    const rInt = unsigned(rs.bytes());
    const sInt = unsigned(rs.bytes());
    const size = { 'ecdsa-sha2-nistp256': 32, 'ecdsa-sha2-nistp384': 48, 'ecdsa-sha2-nistp521': 66 }[type] ?? 32;
    const p1363 = Buffer.concat([Buffer.alloc(size - rInt.length), rInt, Buffer.alloc(size - sInt.length), sInt]);
    const hash = { 'ecdsa-sha2-nistp256': 'sha256', 'ecdsa-sha2-nistp384': 'sha384', 'ecdsa-sha2-nistp521': 'sha512' }[type] ?? 'sha256';
    return sigType === type && cryptoVerify(hash, signed, { key, dsaEncoding: 'ieee-p1363' }, p1363);
  }
  if (type === 'ssh-rsa') {
    const hash = sigType === 'rsa-sha2-512' ? 'sha512' : sigType === 'rsa-sha2-256' ? 'sha256' : null;
    return hash !== null && cryptoVerify(hash, signed, key, sigBytes);
  }
  return false;
}
