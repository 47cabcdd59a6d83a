// CLI round trip of the fabric PKI: create fabric → create peer → sign → rotate peer, run through
// `clgo`'s real entry (main) in a scratch directory.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { runClgo } from '../fixtures/cli.ts';
import { fabricObject, peerObject } from '../../schema/kinds.ts';
import { createCertificateAuthority } from '../../reconciler/pki/issue.ts';
import { fingerprintSha256, verifyPeer, type PeerTrust } from '../../reconciler/pki/index.ts';
import { symlinkSync, writeFileSync } from 'node:fs';

const scratch = mkdtempSync(join(tmpdir(), 'clgo-pki-cli-'));
const originalCwd = process.cwd();
let allOutput = '';

async function clgo(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await runClgo(...args);
  allOutput += r.out + r.err;
  return r;
}

const mode = (p: string) => statSync(p).mode & 0o777;

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

function trustFrom(fabricDir: string, peers: string[]): PeerTrust {
  const fabric = fabricObject.parse(parse(readFileSync(join(fabricDir, 'fabric.yaml'), 'utf8')));
  return {
    fabric: fabric.metadata.name,
    caCertificates: fabric.spec.caCertificates,
    revoked: { serials: [], fingerprints: [] },
    members: peers.map((name) => ({ name, labels: {}, gateways: [], certificateFingerprint: fingerprintSha256(readFileSync(join(fabricDir, 'peers', name, 'peer.pem'), 'utf8')) })),
  };
}

beforeAll(() => process.chdir(scratch));
afterAll(() => {
  process.chdir(originalCwd);
  rmSync(scratch, { recursive: true, force: true });
});

describe('clgo create fabric / create peer / sign / rotate peer', () => {
  it('round-trips to a peer.pem that verifyPeer accepts, keys 0600 and outside the repository', async () => {
    expect((await clgo('create', 'fabric', '--name', 'demo')).code).toBe(0);
    expect(fabricObject.safeParse(parse(readFileSync('demo/fabric.yaml', 'utf8'))).success).toBe(true);
    expect(mode('demo-ca.key')).toBe(0o600);

    const peer = await clgo('create', 'peer', 'west', '--fabric', 'demo');
    expect(peer.code).toBe(0);
    expect(mode('west.key')).toBe(0o600);
    expect(readFileSync('west.csr', 'utf8')).toContain('BEGIN CERTIFICATE REQUEST');

    const signed = await clgo('sign', 'west.csr', '--ca', 'demo-ca.crt', '--ca-key', 'demo-ca.key', '--fabric', 'demo', '--days', '30');
    expect(signed.code).toBe(0);
    expect(signed.out).toContain('EDIT spec.gateways');
    expect(peerObject.safeParse(parse(readFileSync('demo/peers/west/peer.yaml', 'utf8'))).success).toBe(true);
    const pem = readFileSync('demo/peers/west/peer.pem', 'utf8');
    expect(verifyPeer([pem], trustFrom('demo', ['west']))).toMatchObject({ ok: true, peer: 'west' });

    // nothing secret in the repository directory, nothing secret printed
    for (const f of filesUnder('demo')) expect(readFileSync(f, 'utf8')).not.toMatch(/PRIVATE KEY/);
    expect(allOutput).not.toMatch(/PRIVATE KEY/);
  });

  it('refuses to write a key inside the fabric directory or over an existing key', async () => {
    const inside = await clgo('create', 'peer', 'east', '--fabric', 'demo', '--key-out', 'demo/peers/east.key');
    expect(inside.code).toBe(2);
    expect(inside.err).toMatch(/refusing to write a private key inside/);
    expect(existsSync('demo/peers/east.key')).toBe(false);
    expect((await clgo('create', 'fabric', '--name', 'other', '--ca-key-out', 'other/ca.key')).code).toBe(2);
    expect(existsSync('other/ca.key')).toBe(false);
    // Through a symlinked directory that points into the repository: compared by real paths.
    symlinkSync(join(scratch, 'demo', 'peers'), 'keys-link');
    const linked = await clgo('create', 'peer', 'east', '--fabric', 'demo', '--key-out', 'keys-link/east.key');
    expect(linked.code).toBe(2);
    expect(linked.err).toMatch(/refusing to write a private key inside/);
    expect(existsSync('demo/peers/east.key')).toBe(false);
    // ... and a fabric directory given through a symlink, with the key written by its real path.
    symlinkSync(join(scratch, 'demo'), 'demo-link');
    expect((await clgo('create', 'peer', 'east', '--fabric', 'demo-link', '--key-out', join(scratch, 'demo', 'east.key'))).code).toBe(2);
    expect(existsSync('demo/east.key')).toBe(false);
    const before = readFileSync('west.key', 'utf8');
    expect((await clgo('create', 'peer', 'west', '--fabric', 'demo', '--csr-out', 'west2.csr')).code).toBe(2);
    expect(readFileSync('west.key', 'utf8')).toBe(before);
  });

  it('refuses to sign with a CA that is not in the fabric bundle', async () => {
    const rogue = await createCertificateAuthority({ fabricName: 'demo' });
    writeFileSync('rogue.crt', rogue.certificatePem);
    writeFileSync('rogue.key', rogue.privateKeyPem, { mode: 0o600 });
    const r = await clgo('sign', 'west.csr', '--ca', 'rogue.crt', '--ca-key', 'rogue.key', '--fabric', 'demo');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/not in .*fabric.yaml/);
  });

  it('refuses a CSR made for another fabric', async () => {
    expect((await clgo('create', 'fabric', '--name', 'prod')).code).toBe(0);
    expect((await clgo('create', 'peer', 'east', '--fabric', 'prod', '--key-out', 'east-prod.key', '--csr-out', 'east-prod.csr')).code).toBe(0);
    const r = await clgo('sign', 'east-prod.csr', '--ca', 'demo-ca.crt', '--ca-key', 'demo-ca.key', '--fabric', 'demo');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/made for fabric "prod"/);
  });

  it('rotates a peer: a new key and CSR, and after signing the old certificate no longer matches the pin', async () => {
    const oldPem = readFileSync('demo/peers/west/peer.pem', 'utf8');
    const r = await clgo('rotate', 'peer', 'west', '--fabric', 'demo');
    expect(r.code).toBe(0);
    expect(mode('west.next.key')).toBe(0o600);
    expect(readFileSync('west.key', 'utf8')).not.toBe(readFileSync('west.next.key', 'utf8'));
    // until the admin signs and the change merges, the old certificate is still the pinned one
    expect(verifyPeer([oldPem], trustFrom('demo', ['west']))).toMatchObject({ ok: true });
    const signed = await clgo('sign', 'west.next.csr', '--ca', 'demo-ca.crt', '--ca-key', 'demo-ca.key', '--fabric', 'demo');
    expect(signed.code).toBe(0);
    expect(signed.out).toMatch(/replaced the previous certificate/);
    const trust = trustFrom('demo', ['west']);
    expect(verifyPeer([readFileSync('demo/peers/west/peer.pem', 'utf8')], trust)).toMatchObject({ ok: true, peer: 'west' });
    expect(verifyPeer([oldPem], trust)).toMatchObject({ ok: false, reason: 'pin-mismatch' });
    expect((await clgo('rotate', 'peer', 'nobody', '--fabric', 'demo')).code).toBe(2);
  });

  it('rotates the CA: two CAs in fabric.yaml, peers signed by either are accepted, then the old one is dropped', async () => {
    expect((await clgo('create', 'peer', 'east', '--fabric', 'demo')).code).toBe(0);
    expect((await clgo('sign', 'east.csr', '--ca', 'demo-ca.crt', '--ca-key', 'demo-ca.key', '--fabric', 'demo')).code).toBe(0);
    const r = await clgo('rotate', 'ca', '--fabric', 'demo');
    expect(r.code).toBe(0);
    expect(mode('demo-ca.next.key')).toBe(0o600);
    const fabricText = readFileSync('demo/fabric.yaml', 'utf8');
    expect(fabricObject.parse(parse(fabricText)).spec.caCertificates).toHaveLength(2);
    // west moves to the new CA; east is still on the old one
    expect((await clgo('sign', 'west.next.csr', '--ca', 'demo-ca.next.crt', '--ca-key', 'demo-ca.next.key', '--fabric', 'demo')).code).toBe(0);
    const during = trustFrom('demo', ['east', 'west']);
    const eastPem = readFileSync('demo/peers/east/peer.pem', 'utf8');
    const westPem = readFileSync('demo/peers/west/peer.pem', 'utf8');
    expect(verifyPeer([eastPem], during)).toMatchObject({ ok: true, peer: 'east' });
    expect(verifyPeer([westPem], during)).toMatchObject({ ok: true, peer: 'west' });
    // end of rotation: only the new CA remains; east must have been re-signed by then
    const after = { ...during, caCertificates: [readFileSync('demo-ca.next.crt', 'utf8')] };
    expect(verifyPeer([westPem], after)).toMatchObject({ ok: true });
    expect(verifyPeer([eastPem], after)).toMatchObject({ ok: false, reason: 'untrusted-ca' });
  });
});
