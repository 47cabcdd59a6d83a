import { beforeAll, describe, expect, it } from 'vitest';
import type { FabricModel, ImportModel, PeerModel } from '../../schema/model.ts';
import { createCertificateAuthority, issuePeerCertificate } from './issue.ts';
import { certificateDiagnostics } from './diagnostics.ts';
import { fingerprintSha256 } from './encoding.ts';

type Ca = { certificatePem: string; privateKeyPem: string };
const DAY = 86_400_000;
let ca: Ca;
let otherCa: Ca;
let westPem: string;
let eastPem: string;

beforeAll(async () => {
  [ca, otherCa] = await Promise.all([createCertificateAuthority({ fabricName: 'demo' }), createCertificateAuthority({ fabricName: 'demo' })]);
  westPem = (await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca })).certificatePem;
  eastPem = (await issuePeerCertificate({ peerName: 'east', fabricName: 'demo', ca })).certificatePem;
});

function importFrom(peer: string, source: string): ImportModel {
  return {
    peer,
    name: 'db',
    namespace: 'default',
    labels: {},
    port: 5432,
    targetPort: null,
    listenPort: 5432,
    sources: [{ peer: source, exportName: 'db', exportNamespace: 'default' }],
    lbScheme: 'round-robin',
    sessionAffinity: 'None',
    source: { file: `peers/${peer}/imports/db.yaml`, line: 1, column: 1 },
  };
}

function peer(name: string, certificatePem: string | null, imports: ImportModel[] = []): PeerModel {
  return { name, declaredLabels: {}, gateways: [{ host: `${name}.example`, port: 443 }], certificatePem, exports: [], imports, policies: [], source: { file: `peers/${name}/peer.yaml`, line: 1, column: 1 } };
}

function fabric(peers: PeerModel[], extra: Partial<FabricModel> = {}): FabricModel {
  return {
    name: 'demo',
    caCertificates: [ca.certificatePem],
    revoked: { serials: [], fingerprints: [] },
    repo: { requireSignedCommits: false, allowedSigningKeys: [] },
    peers,
    peerLabels: {},
    source: { file: 'fabric.yaml', line: 1, column: 1 },
    ...extra,
  };
}

const codes = (f: FabricModel, opts?: Parameters<typeof certificateDiagnostics>[1]) => certificateDiagnostics(f, opts).map((d) => `${d.severity} ${d.code} ${d.file}`);

describe('certificateDiagnostics', () => {
  it('reports nothing for a healthy fabric', () => {
    expect(certificateDiagnostics(fabric([peer('east', eastPem), peer('west', westPem, [importFrom('west', 'east')])]))).toEqual([]);
  });

  it('reports a missing peer.pem at the peer, with a hint that names the command', () => {
    const [d] = certificateDiagnostics(fabric([peer('west', null)]));
    expect(d).toMatchObject({ severity: 'error', code: 'peer-certificate-missing', file: 'peers/west/peer.yaml' });
    expect(d?.hint).toContain('clgo sign');
  });

  it('reports a certificate from another CA, a wrong SAN and a key in peer.pem at peers/<p>/peer.pem line 1', async () => {
    const foreign = (await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca: otherCa })).certificatePem;
    expect(codes(fabric([peer('west', foreign)]))).toEqual(['error peer-certificate-untrusted peers/west/peer.pem']);
    // east's certificate committed as west's
    expect(codes(fabric([peer('east', eastPem), peer('west', eastPem)]))).toEqual(
      expect.arrayContaining(['error peer-certificate-duplicate peers/west/peer.pem', 'error peer-certificate-san peers/west/peer.pem']),
    );
    const badEku = (await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca, extendedKeyUsage: ['serverAuth'] })).certificatePem;
    expect(codes(fabric([peer('west', badEku)]))).toEqual(['error peer-certificate-key-usage peers/west/peer.pem']);
    const withKey = westPem + '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n';
    expect(codes(fabric([peer('west', withKey)]))).toContain('error peer-certificate-private-key peers/west/peer.pem');
    const d = certificateDiagnostics(fabric([peer('west', foreign)]))[0];
    expect(d).toMatchObject({ line: 1, column: 1 });
  });

  it('errors on an expired certificate and warns about one expiring soon', async () => {
    const oldCa = await createCertificateAuthority({ fabricName: 'demo', notBefore: new Date(Date.now() - 30 * DAY) });
    const expired = (await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca: oldCa, notBefore: new Date(Date.now() - 20 * DAY), lifetimeDays: 10 })).certificatePem;
    const soon = (await issuePeerCertificate({ peerName: 'east', fabricName: 'demo', ca: oldCa, lifetimeDays: 10 })).certificatePem;
    const f = fabric([peer('east', soon), peer('west', expired)], { caCertificates: [oldCa.certificatePem] });
    expect(codes(f)).toEqual(['warning peer-certificate-expiring peers/east/peer.pem', 'error peer-certificate-expired peers/west/peer.pem']);
    expect(codes(f, { expiryWarningDays: 5 })).toEqual(['error peer-certificate-expired peers/west/peer.pem']);
  });

  it('checks the CA bundle: not a CA, expired, expiring', () => {
    expect(codes(fabric([], { caCertificates: [westPem] }))).toEqual(['error ca-certificate-not-ca fabric.yaml']);
    expect(codes(fabric([]), { now: new Date(Date.now() + 6 * 365 * DAY) })).toEqual(['error ca-certificate-expired fabric.yaml']);
    expect(codes(fabric([]), { now: new Date(Date.now() + 5 * 365 * DAY - 10 * DAY) })).toEqual(['warning ca-certificate-expiring fabric.yaml']);
  });

  it('accepts peers signed by either CA during a CA rotation', async () => {
    const newWest = (await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca: otherCa })).certificatePem;
    expect(certificateDiagnostics(fabric([peer('east', eastPem), peer('west', newWest)], { caCertificates: [ca.certificatePem, otherCa.certificatePem] }))).toEqual([]);
  });

  it('warns (does not fail) about imports that still use a revoked peer, at the import source', () => {
    const f = fabric([peer('east', eastPem), peer('west', westPem, [importFrom('west', 'east')])], { revoked: { serials: [], fingerprints: [fingerprintSha256(eastPem)] } });
    const ds = certificateDiagnostics(f);
    expect(ds.map((d) => `${d.severity} ${d.code} ${d.file} ${d.path}`)).toEqual([
      'warning peer-certificate-revoked peers/east/peer.pem ',
      'warning import-source-revoked peers/west/imports/db.yaml spec.sources[0].peer',
    ]);
    // An emergency revocation must pass CI on its own: warnings only, each naming the import it affects.
    expect(ds.filter((d) => d.severity === 'error')).toEqual([]);
    expect(ds[1]!.message).toContain('import');
    expect(ds[1]!.message).toContain('of peer west uses peer east');
  });
});
