// verifyPeer parses bytes from the network: arbitrary or tampered input must give a rejection
// reason, never an exception, and never an identity.
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createCertificateAuthority, issuePeerCertificate } from './issue.ts';
import { fingerprintSha256, toDer } from './encoding.ts';
import { verifyPeer, type PeerTrust } from './verify.ts';

let der: Buffer;
let trust: PeerTrust;

beforeAll(async () => {
  const ca = await createCertificateAuthority({ fabricName: 'demo' });
  const west = (await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca })).certificatePem;
  der = toDer(west);
  trust = { fabric: 'demo', caCertificates: [ca.certificatePem], revoked: { serials: [], fingerprints: [] }, members: [{ name: 'west', labels: {}, gateways: [], certificateFingerprint: fingerprintSha256(west) }] };
});

describe('verifyPeer on hostile input', () => {
  it('rejects random bytes without throwing', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
        const r = verifyPeer([bytes], trust);
        expect(r.ok).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('rejects every single-byte tampering of a valid certificate', () => {
    expect(verifyPeer([der], trust).ok).toBe(true);
    fc.assert(
      fc.property(fc.nat({ max: der.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, xor) => {
        const tampered = Buffer.from(der);
        tampered[at] = (tampered[at] ?? 0) ^ xor;
        const r = verifyPeer([tampered], trust);
        expect(r.ok).toBe(false);
      }),
      { numRuns: 300 },
    );
  });
});
