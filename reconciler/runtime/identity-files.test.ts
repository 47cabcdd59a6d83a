import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority, issuePeerCertificate } from '../pki/issue.ts';
import { readIdentityFiles, watchIdentityFiles } from './identity-files.ts';
import type { PeerIdentity } from '../xds/config.ts';

let dir: string;
let first: { certificatePem: string; privateKeyPem: string };
let second: { certificatePem: string; privateKeyPem: string };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clgo-identity-'));
  const ca = await createCertificateAuthority({ fabricName: 'demo' });
  first = await issuePeerCertificate({ peerName: 'east', fabricName: 'demo', ca });
  second = await issuePeerCertificate({ peerName: 'east', fabricName: 'demo', ca });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const until = async (check: () => boolean): Promise<boolean> => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 25));
  return check();
};

describe('identity files on disk', () => {
  it('refuses a key that does not belong to the certificate, naming the file', async () => {
    await writeFile(join(dir, 'a.crt'), first.certificatePem);
    await writeFile(join(dir, 'a.key'), second.privateKeyPem);
    expect(() => readIdentityFiles(join(dir, 'a.key'), join(dir, 'a.crt'))).toThrow();
    await writeFile(join(dir, 'b.key'), 'not a key');
    expect(() => readIdentityFiles(join(dir, 'b.key'))).toThrow(/b\.key does not contain a PEM private key/);
  });

  it('reports a rotated pair once both files changed, and keeps the old one while they disagree', async () => {
    const crt = join(dir, 'tls.crt');
    const key = join(dir, 'tls.key');
    await writeFile(crt, first.certificatePem);
    await writeFile(key, first.privateKeyPem);
    const changes: PeerIdentity[] = [];
    const errors: string[] = [];
    const w = watchIdentityFiles({ keyFile: key, certFile: crt, intervalMs: 20, onChange: (id) => changes.push(id), onError: (m) => errors.push(m) });
    try {
      // Half a rotation: the new certificate with the old key is not used.
      await writeFile(join(dir, 'next.crt'), second.certificatePem);
      await rename(join(dir, 'next.crt'), crt);
      expect(await until(() => errors.length > 0)).toBe(true);
      expect(changes).toEqual([]);
      await writeFile(join(dir, 'next.key'), second.privateKeyPem);
      await rename(join(dir, 'next.key'), key);
      expect(await until(() => changes.length > 0)).toBe(true);
      expect(changes.at(-1)).toEqual({ certificatePem: second.certificatePem, privateKeyPem: second.privateKeyPem });
    } finally {
      w.stop();
    }
  });
});
