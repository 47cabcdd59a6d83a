// Interop: the certificates we issue are accepted by OpenSSL's own verifier and by node:tls in a real
// mutual-TLS handshake on loopback, and a certificate from another CA is refused by the handshake.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { createCertificateAuthority, issuePeerCertificate, type KeyType } from './issue.ts';
import { fingerprintSha256 } from './encoding.ts';
import { verifyPeer } from './verify.ts';

type Identity = { certificatePem: string; privateKeyPem: string };
const dir = mkdtempSync(join(tmpdir(), 'clgo-pki-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('openssl verify', () => {
  for (const keyType of ['p256', 'p384', 'rsa-2048', 'ed25519'] as KeyType[]) {
    it(`accepts a ${keyType} peer certificate for TLS server and client use`, async () => {
      const ca = await createCertificateAuthority({ fabricName: 'demo', keyType });
      const peer = await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca, keyType });
      const caFile = join(dir, `ca-${keyType}.pem`);
      const certFile = join(dir, `west-${keyType}.pem`);
      writeFileSync(caFile, ca.certificatePem);
      writeFileSync(certFile, peer.certificatePem);
      for (const purpose of ['sslserver', 'sslclient']) {
        const out = execFileSync('openssl', ['verify', '-purpose', purpose, '-verify_hostname', 'west', '-CAfile', caFile, certFile], { encoding: 'utf8' });
        expect(out.trim()).toBe(`${certFile}: OK`);
      }
      // and rejects it against another CA
      const other = await createCertificateAuthority({ fabricName: 'demo', keyType: 'p256' });
      writeFileSync(join(dir, 'other.pem'), other.certificatePem);
      expect(() => execFileSync('openssl', ['verify', '-CAfile', join(dir, 'other.pem'), certFile], { stdio: 'pipe' })).toThrow();
    });
  }
});

/** One mutual-TLS handshake on 127.0.0.1; resolves with what each side saw. */
async function handshake(server: Identity, client: Identity, caPems: string[]): Promise<{ clientOk: boolean; serverSawPeer: Buffer | null; protocol: string | null; serverError: string | null; clientError: string | null }> {
  let serverSawPeer: Buffer | null = null;
  let serverError: string | null = null;
  const srv = tls.createServer({ key: server.privateKeyPem, cert: server.certificatePem, ca: caPems, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (sock) => {
    serverSawPeer = sock.getPeerCertificate().raw ?? null;
    sock.end('hello');
  });
  srv.on('tlsClientError', (err) => {
    serverError = err.message;
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  try {
    return await new Promise((resolve) => {
      const sock = tls.connect({ host: '127.0.0.1', port, servername: 'west', key: client.privateKeyPem, cert: client.certificatePem, ca: caPems, minVersion: 'TLSv1.3' });
      let data = '';
      let protocol: string | null = null;
      let clientError: string | null = null;
      const timer = setTimeout(() => finish(false), 5000);
      const finish = (clientOk: boolean) => {
        clearTimeout(timer);
        sock.destroy();
        // give the server a tick to report its side
        setImmediate(() => resolve({ clientOk, serverSawPeer, protocol, serverError, clientError }));
      };
      sock.on('secureConnect', () => {
        protocol = sock.getProtocol();
      });
      sock.on('data', (d: Buffer) => {
        data += d.toString();
      });
      sock.on('end', () => finish(data === 'hello'));
      sock.on('error', (err) => {
        clientError = err.message;
        finish(false);
      });
    });
  } finally {
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  }
}

describe('node:tls mutual TLS on loopback', () => {
  let ca: Identity;
  let west: Identity;
  let east: Identity;
  beforeAll(async () => {
    ca = await createCertificateAuthority({ fabricName: 'demo' });
    west = await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca });
    east = await issuePeerCertificate({ peerName: 'east', fabricName: 'demo', ca });
  });

  it('succeeds with TLS 1.3 and ECDSA P-256 peer certificates; the server identifies the client with verifyPeer', async () => {
    const r = await handshake(west, east, [ca.certificatePem]);
    expect(r).toMatchObject({ clientOk: true, protocol: 'TLSv1.3', serverError: null });
    const trust = {
      fabric: 'demo',
      caCertificates: [ca.certificatePem],
      revoked: { serials: [], fingerprints: [] },
      members: [{ name: 'east', labels: {}, gateways: [], certificateFingerprint: fingerprintSha256(east.certificatePem) }],
    };
    expect(r.serverSawPeer).not.toBeNull();
    expect(verifyPeer([r.serverSawPeer ?? new Uint8Array()], trust)).toMatchObject({ ok: true, peer: 'east' });
  });

  it('succeeds with Ed25519 certificates between Node peers', async () => {
    const edCa = await createCertificateAuthority({ fabricName: 'demo', keyType: 'ed25519' });
    const a = await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca: edCa, keyType: 'ed25519' });
    const b = await issuePeerCertificate({ peerName: 'east', fabricName: 'demo', ca: edCa, keyType: 'ed25519' });
    expect(await handshake(a, b, [edCa.certificatePem])).toMatchObject({ clientOk: true, protocol: 'TLSv1.3' });
  });

  it('fails when the client presents a certificate from another CA', async () => {
    const otherCa = await createCertificateAuthority({ fabricName: 'demo' });
    const intruder = await issuePeerCertificate({ peerName: 'east', fabricName: 'demo', ca: otherCa });
    const r = await handshake(west, intruder, [ca.certificatePem]);
    expect(r.clientOk).toBe(false);
    expect(r.serverSawPeer).toBeNull();
    expect(r.serverError).not.toBeNull();
  });

  it('fails when the server presents a certificate from another CA', async () => {
    const otherCa = await createCertificateAuthority({ fabricName: 'demo' });
    const fakeWest = await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca: otherCa });
    const r = await handshake(fakeWest, east, [ca.certificatePem]);
    expect(r.clientOk).toBe(false);
    expect(r.serverSawPeer).toBeNull();
  });
});
