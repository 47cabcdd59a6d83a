// Fixtures for the authorization tests: a small fabric "demo" with real certificates from
// reconciler/pki. west imports default/db from east and north; east and north export it.
// Slices are written out by hand (the Slice type is the contract), one per peer's point of view.
import { createCertificateAuthority, issuePeerCertificate } from '../../reconciler/pki/issue.ts';
import { fingerprintSha256 } from '../../reconciler/pki/encoding.ts';
import type { PolicyModel } from '../../schema/model.ts';
import type { Slice, SliceImport, SliceImportSource } from '../../reconciler/slice/types.ts';

export interface Pki {
  ca: { certificatePem: string; privateKeyPem: string };
  west: { certificatePem: string; privateKeyPem: string };
  north: { certificatePem: string; privateKeyPem: string };
  /** Signed by another CA, with west's name. */
  impostor: { certificatePem: string; privateKeyPem: string };
}

export async function makePki(): Promise<Pki> {
  const [ca, otherCa] = await Promise.all([createCertificateAuthority({ fabricName: 'demo' }), createCertificateAuthority({ fabricName: 'demo' })]);
  const [west, north, impostor] = await Promise.all([
    issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca }),
    issuePeerCertificate({ peerName: 'north', fabricName: 'demo', ca }),
    issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca: otherCa }),
  ]);
  return { ca, west, north, impostor };
}

let line = 1;
/** A policy as the schema loader would produce it, written in peers/<peer>/policies/<name>.yaml. */
export function policy(
  peer: string,
  p: { name: string; action: 'allow' | 'deny'; privileged?: boolean; namespace?: string; from?: PolicyModel['from']; to?: PolicyModel['to'] },
): PolicyModel {
  const privileged = p.privileged ?? false;
  return {
    peer,
    tier: privileged ? 'privileged' : 'user',
    kind: privileged ? 'PrivilegedAccessPolicy' : 'AccessPolicy',
    name: p.name,
    namespace: privileged ? null : (p.namespace ?? 'default'),
    action: p.action,
    from: p.from ?? [{ workloadSelector: {} }],
    to: p.to ?? [{ workloadSelector: {} }],
    source: { file: `peers/${peer}/policies/${p.name}.yaml`, line: (line = (line % 7) + 1), column: 1 },
  };
}

export const ALLOW_ALL = (peer: string, namespace = 'default'): PolicyModel => policy(peer, { name: `allow-all-${namespace}`, action: 'allow', namespace });

const src = (peer: string, over: Partial<SliceImportSource> = {}): SliceImportSource => ({
  peer,
  exportName: 'db',
  exportNamespace: 'default',
  resolved: true,
  exportLabels: { tier: 'data' },
  exportPort: 5432,
  peerLabels: { region: peer === 'east' ? 'eu' : 'us' },
  gateways: [{ host: peer === 'east' ? '127.0.0.2' : '127.0.0.3', port: 8443 }],
  ...over,
});

export function dbImport(over: Partial<SliceImport> = {}): SliceImport {
  return {
    name: 'db',
    namespace: 'default',
    labels: {},
    port: 5432,
    targetPort: null,
    listenPort: over.targetPort ?? over.port ?? 5432,
    lbScheme: 'round-robin',
    sessionAffinity: 'None',
    sources: [src('east'), src('north')],
    source: { file: 'peers/west/imports/db.yaml', line: 1, column: 1 },
    ...over,
  };
}

/** west's slice: the importer. */
export function westSlice(pki: Pki, policies: PolicyModel[], imports: SliceImport[] = [dbImport()]): Slice {
  return {
    fabric: 'demo',
    self: { name: 'west', labels: {}, gateways: [{ host: '127.0.0.1', port: 8443 }], certificatePem: pki.west.certificatePem },
    caCertificates: [pki.ca.certificatePem],
    revoked: { serials: [], fingerprints: [] },
    members: [
      { name: 'east', labels: { region: 'eu' }, certificateFingerprint: null, gateways: [{ host: '127.0.0.2', port: 8443 }] },
      { name: 'north', labels: { region: 'us' }, certificateFingerprint: fingerprintSha256(pki.north.certificatePem), gateways: [{ host: '127.0.0.3', port: 8443 }] },
    ],
    exports: [],
    imports,
    policies,
  };
}

/** east's slice: the exporter of default/db, imported by west (and, in some tests, north). */
export function eastSlice(pki: Pki, policies: PolicyModel[], opts: { importers?: string[]; revoked?: Slice['revoked']; members?: string[] } = {}): Slice {
  const certs: Record<string, string> = { west: pki.west.certificatePem, north: pki.north.certificatePem };
  const members = opts.members ?? ['north', 'west'];
  return {
    fabric: 'demo',
    self: { name: 'east', labels: { region: 'eu' }, gateways: [{ host: '127.0.0.2', port: 8443 }], certificatePem: null },
    caCertificates: [pki.ca.certificatePem],
    revoked: opts.revoked ?? { serials: [], fingerprints: [] },
    members: members.map((name) => ({ name, labels: { region: name === 'west' ? 'eu' : 'us' }, certificateFingerprint: fingerprintSha256(certs[name] as string), gateways: [] })),
    exports: [
      {
        name: 'db',
        namespace: 'default',
        labels: { tier: 'data' },
        host: '127.0.0.1',
        port: 5432,
        importers: opts.importers ?? ['west'],
        source: { file: 'peers/east/exports/db.yaml', line: 1, column: 1 },
      },
    ],
    imports: [],
    policies,
  };
}
