// Signature checks: SSH (ed25519, ECDSA, RSA via ssh-keygen -Y sign) and OpenPGP (openpgp), each
// accepted with the right key, refused with another key, and refused after one changed byte.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitSignedObject, verifyCommitSignature } from './signatures.ts';

const exec = promisify(execFile);
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clgo-sig-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

async function sshSign(type: string, payload: string): Promise<{ publicKey: string; signature: string }> {
  const key = join(dir, `k-${type}-${Math.random().toString(36).slice(2)}`);
  await exec('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-f', key]);
  await writeFile(`${key}.msg`, payload);
  await exec('ssh-keygen', ['-Y', 'sign', '-n', 'git', '-f', key, `${key}.msg`]);
  return { publicKey: (await readFile(`${key}.pub`, 'utf8')).trim(), signature: await readFile(`${key}.msg.sig`, 'utf8') };
}

const payload = 'tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor a <a@b> 1 +0000\ncommitter a <a@b> 1 +0000\n\nfabric change\n';

describe('commit signatures', () => {
  for (const type of ['ed25519', 'ecdsa', 'rsa']) {
    it(`verifies an SSH ${type} signature only with the allowed key and the exact payload`, async () => {
      const a = await sshSign(type, payload);
      const b = await sshSign('ed25519', payload);
      expect(await verifyCommitSignature(payload, a.signature, [{ name: 'admin', type: 'ssh', publicKey: a.publicKey }])).toEqual({ ok: true, key: 'admin' });
      expect((await verifyCommitSignature(payload, a.signature, [{ name: 'other', type: 'ssh', publicKey: b.publicKey }])).ok).toBe(false);
      expect((await verifyCommitSignature(payload.replace('change', 'chaNge'), a.signature, [{ name: 'admin', type: 'ssh', publicKey: a.publicKey }])).ok).toBe(false);
    });
  }

  it('verifies an OpenPGP signature with the allowed key and refuses others', async () => {
    const mk = () => openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'admin', email: 'admin@example.org' }], format: 'armored' });
    const a = await mk();
    const b = await mk();
    const signature = await openpgp.sign({ message: await openpgp.createMessage({ text: payload }), signingKeys: await openpgp.readPrivateKey({ armoredKey: a.privateKey }), detached: true, format: 'armored' });
    expect(await verifyCommitSignature(payload, signature as string, [{ name: 'a', type: 'openpgp', publicKey: a.publicKey }])).toEqual({ ok: true, key: 'a' });
    expect((await verifyCommitSignature(payload, signature as string, [{ name: 'b', type: 'openpgp', publicKey: b.publicKey }])).ok).toBe(false);
    expect((await verifyCommitSignature(`${payload}x`, signature as string, [{ name: 'a', type: 'openpgp', publicKey: a.publicKey }])).ok).toBe(false);
  });

  it('refuses unsigned commits and garbage signatures without throwing', async () => {
    expect(await verifyCommitSignature(payload, undefined, [{ name: 'a', type: 'ssh', publicKey: 'ssh-ed25519 AAAA' }])).toEqual({ ok: false, reason: 'the commit is not signed' });
    expect((await verifyCommitSignature(payload, '-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----', [{ name: 'a', type: 'ssh', publicKey: 'ssh-ed25519 AAAA' }])).ok).toBe(false);
    expect((await verifyCommitSignature(payload, '-----BEGIN PGP SIGNATURE-----\n!!\n-----END PGP SIGNATURE-----', [{ name: 'a', type: 'openpgp', publicKey: 'x' }])).ok).toBe(false);
  });

  it('splits the gpgsig header out of a raw commit', () => {
    const raw = 'tree t\nparent p\nauthor a\ncommitter c\ngpgsig -----BEGIN SSH SIGNATURE-----\n abc\n -----END SSH SIGNATURE-----\n\nmsg\n';
    expect(splitSignedObject(raw, 'commit')).toEqual({ payload: 'tree t\nparent p\nauthor a\ncommitter c\n\nmsg\n', signature: '-----BEGIN SSH SIGNATURE-----\nabc\n-----END SSH SIGNATURE-----' });
  });
});
