// The peer certificate and key on disk (a mounted Kubernetes Secret, or files on a host), re-read
// when they change: Secret updates arrive as a symlink swap, so both paths are polled by stat (which
// follows the links) rather than watched by inode. A half-written pair is not used: the key must
// match the certificate before it replaces the previous identity.
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { PeerIdentity } from '../xds/config.ts';

export interface IdentityFileOptions {
  keyFile: string;
  /** Without it the certificate is the committed peers/<peer>/peer.pem (only the key is watched). */
  certFile?: string;
  intervalMs?: number;
  onChange(identity: PeerIdentity): void;
  onError(message: string): void;
}

const MAX_BYTES = 64 * 1024;

function readBounded(path: string): string {
  const text = readFileSync(path, 'utf8');
  if (text.length > MAX_BYTES) throw new Error(`${path} is over ${MAX_BYTES} bytes`);
  return text;
}

/** Reads the pair once; throws with the file and what is wrong. */
export function readIdentityFiles(keyFile: string, certFile?: string): PeerIdentity {
  const privateKeyPem = readBounded(keyFile);
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(privateKeyPem)) throw new Error(`${keyFile} does not contain a PEM private key`);
  if (!certFile) return { privateKeyPem };
  const certificatePem = readBounded(certFile);
  if (!certificatePem.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`${certFile} does not contain a PEM certificate`);
  // Throws when the key does not belong to the certificate (e.g. read between two writes of a rotation).
  createSecureContext({ key: privateKeyPem, cert: certificatePem });
  return { privateKeyPem, certificatePem };
}

/** Calls onChange with the new pair whenever either file changes and the pair is usable. */
export function watchIdentityFiles(opts: IdentityFileOptions): { stop(): void } {
  const files = [opts.keyFile, ...(opts.certFile ? [opts.certFile] : [])];
  let last = '';
  try {
    const id = readIdentityFiles(opts.keyFile, opts.certFile);
    last = `${id.certificatePem ?? ''}\0${id.privateKeyPem}`;
  } catch {
    // reported on the first change that still fails
  }
  const check = (): void => {
    let id: PeerIdentity;
    try {
      id = readIdentityFiles(opts.keyFile, opts.certFile);
    } catch (err) {
      opts.onError(`${(err as Error).message}; keeping the previous certificate and key`);
      return;
    }
    const key = `${id.certificatePem ?? ''}\0${id.privateKeyPem}`;
    if (key === last) return;
    last = key;
    opts.onChange(id);
  };
  for (const f of files) watchFile(f, { interval: opts.intervalMs ?? 2000, persistent: false }, check);
  return { stop: () => files.forEach((f) => unwatchFile(f, check)) };
}
