import { pino } from 'pino';
import { Writable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { fingerprintSha256, toDer } from '../pki/encoding.ts';
import { createCertificateAuthority, issuePeerCertificate } from '../pki/issue.ts';
import { dataplaneTrust, RefusalLog, verifyDataplane } from './dataplane-auth.ts';

type Pair = { certificatePem: string; privateKeyPem: string };
let ca: Pair;
let otherCa: Pair;
let east: Pair;
let eastRotated: Pair;
let west: Pair;
let foreignEast: Pair;

beforeAll(async () => {
  ca = await createCertificateAuthority({ fabricName: 'demo' });
  otherCa = await createCertificateAuthority({ fabricName: 'demo' });
  east = await issuePeerCertificate({ peerName: 'east', fabricName: 'demo', ca });
  eastRotated = await issuePeerCertificate({ peerName: 'east', fabricName: 'demo', ca });
  west = await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca });
  foreignEast = await issuePeerCertificate({ peerName: 'east', fabricName: 'demo', ca: otherCa });
});

const slice = (committed: string | null, revoked: string[] = []) => ({ fabric: 'demo', caCertificates: [ca.certificatePem], revoked: { serials: [], fingerprints: revoked }, self: { name: 'east', labels: {}, gateways: [], certificatePem: committed } });
const der = (p: Pair) => toDer(p.certificatePem);

describe('verifyDataplane', () => {
  it("admits this peer's committed certificate and the reconciler's own (rotation in either order)", () => {
    const trust = dataplaneTrust('east', slice(east.certificatePem), eastRotated.certificatePem);
    expect(verifyDataplane(der(east), trust)).toMatchObject({ ok: true });
    expect(verifyDataplane(der(eastRotated), trust)).toMatchObject({ ok: true });
  });

  it('refuses another CA, another peer, a revoked or an unpinned certificate of this peer, each with its reason', () => {
    const trust = dataplaneTrust('east', slice(east.certificatePem, [fingerprintSha256(eastRotated.certificatePem)]), null);
    expect(verifyDataplane(der(foreignEast), trust)).toMatchObject({ ok: false, reason: 'untrusted-ca' });
    expect(verifyDataplane(der(west), trust)).toMatchObject({ ok: false, reason: 'other-peer' });
    expect(verifyDataplane(der(eastRotated), trust)).toMatchObject({ ok: false, reason: 'revoked' });
    expect(verifyDataplane(der(eastRotated), dataplaneTrust('east', slice(east.certificatePem), null))).toMatchObject({ ok: false, reason: 'pin-mismatch' });
    expect(verifyDataplane(der(east), dataplaneTrust('east', slice(null), null))).toMatchObject({ ok: false, reason: 'unpinned' });
  });

  it('refuses an expired certificate', () => {
    const trust = dataplaneTrust('east', slice(east.certificatePem), null);
    expect(verifyDataplane(der(east), trust, new Date(Date.now() + 2 * 365 * 86_400_000))).toMatchObject({ ok: false, reason: 'expired' });
  });
});

describe('RefusalLog', () => {
  it('counts every refusal but logs a reason once per window, then with how many were suppressed', () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (lines.push(JSON.parse(c.toString()) as Record<string, unknown>), cb()) }));
    let now = 0;
    const r = new RefusalLog(log, 60_000, () => now);
    for (let i = 0; i < 100; i++) r.refuse('xds', 'untrusted-ca', { remote: '10.0.0.1' }, 'not our CA');
    r.refuse('authz', 'untrusted-ca', {}, 'not our CA');
    expect(lines).toHaveLength(2);
    now = 61_000;
    r.refuse('xds', 'untrusted-ca', {}, 'not our CA');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({ server: 'xds', reason: 'untrusted-ca', suppressedSinceLastLine: 99 });
    expect(r.snapshot()).toEqual(expect.arrayContaining([{ server: 'xds', reason: 'untrusted-ca', count: 101 }, { server: 'authz', reason: 'untrusted-ca', count: 1 }]));
  });
});
