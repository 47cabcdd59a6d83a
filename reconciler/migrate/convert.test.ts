import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse, parseDocument } from 'yaml';
import { validateFiles } from '../cli/commands/validate.ts';
import { cleanObject, planMigration, targetPortLeasedByClusterLink, withPeerAttestations, type ClusterSnapshot, type MigrationOptions, type MigrationPlan } from './convert.ts';
import { clusterLinkObject, peerLabelsFromArgs, peerSecret, type ClusterLinkObject } from './objects.ts';
import { renderReport } from './report.ts';

/** fabric-example's fabric.yaml (its CA) without its peers' attested labels: a fabric as `clgo create fabric` leaves it. */
const FABRIC_YAML = (() => {
  const doc = parseDocument(readFileSync(new URL('../../fabric-example/fabric.yaml', import.meta.url), 'utf8'));
  doc.deleteIn(['spec', 'peers']);
  return doc.toString();
})();
const OPTS: MigrationOptions = { fabricName: 'example', repoDir: 'fabric' };

let uid = 0;
/** An object the way the API server returns it: server metadata, managedFields, status. */
function live(kind: string, name: string, namespace: string | undefined, spec: Record<string, unknown>, extra: { labels?: Record<string, string>; status?: unknown; managedBy?: { manager: string; fields: string[] }[]; metadata?: Record<string, unknown> } = {}): ClusterLinkObject {
  uid++;
  return clusterLinkObject.parse({
    apiVersion: 'clusterlink.net/v1alpha1',
    kind,
    metadata: {
      name,
      ...(namespace ? { namespace } : {}),
      uid: `00000000-0000-0000-0000-${String(uid).padStart(12, '0')}`,
      resourceVersion: String(1000 + uid),
      generation: 1,
      creationTimestamp: '2026-12-01T10:00:00Z',
      ...(extra.labels ? { labels: extra.labels } : {}),
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"apiVersion":"clusterlink.net/v1alpha1"}\n' },
      managedFields: (extra.managedBy ?? [{ manager: 'kubectl-client-side-apply', fields: Object.keys(spec) }]).map((m) => ({
        manager: m.manager,
        operation: 'Update',
        apiVersion: 'clusterlink.net/v1alpha1',
        fieldsType: 'FieldsV1',
        fieldsV1: { 'f:spec': Object.fromEntries(m.fields.map((f) => [`f:${f}`, {}])) },
      })),
      ...extra.metadata,
    },
    spec,
    ...(extra.status !== undefined ? { status: extra.status } : {}),
  });
}

const noObjects = (): ClusterSnapshot['objects'] => ({ Export: [], Import: [], AccessPolicy: [], PrivilegedAccessPolicy: [] });

/** east imports web/http from west; each cluster has a Peer object for the other. */
function twoClusters(): ClusterSnapshot[] {
  const east: ClusterSnapshot = {
    context: 'kind-east',
    peer: { name: 'east', source: 'test' },
    labels: { values: { region: 'us-east' }, source: 'the --peer-label arguments of Deployment clusterlink-system/cl-controlplane' },
    ingress: null,
    peers: [live('Peer', 'west', 'clusterlink-system', { gateways: [{ host: '198.51.100.2', port: 443 }] }, { status: { conditions: [{ type: 'PeerReachable', status: 'True', reason: 'Heartbeat' }], labels: { region: 'us-west' } } })],
    objects: {
      ...noObjects(),
      Import: [
        live('Import', 'http', 'web', { port: 80, targetPort: 45123, lbScheme: 'round-robin', sources: [{ peer: 'west', exportName: 'http', exportNamespace: 'web' }] }, {
          managedBy: [
            { manager: 'kubectl-client-side-apply', fields: ['port', 'sources', 'lbScheme'] },
            { manager: 'cl-controlplane', fields: ['targetPort'] },
          ],
          status: { conditions: [{ type: 'ImportTargetPortValid', status: 'True', reason: 'Leased' }] },
        }),
      ],
      PrivilegedAccessPolicy: [
        live('PrivilegedAccessPolicy', 'deny-untrusted-peers', undefined, { action: 'deny', from: [{ workloadSelector: { matchLabels: { 'peer.clusterlink.net/labels.trust': 'low' } } }], to: [{ workloadSelector: {} }] }),
      ],
    },
  };
  const west: ClusterSnapshot = {
    context: 'kind-west',
    peer: { name: 'west', source: 'test' },
    labels: { values: { region: 'us-west', trust: 'high' }, source: 'Instance clusterlink-operator/cl-instance spec.peerLabels' },
    ingress: null,
    peers: [live('Peer', 'east', 'clusterlink-system', { gateways: [{ host: '198.51.100.1', port: 443 }] }, { status: { labels: { region: 'us-east' } } })],
    objects: {
      ...noObjects(),
      Export: [live('Export', 'http', 'web', { port: 8080 }, { labels: { app: 'web' }, status: { conditions: [{ type: 'ExportValid', status: 'True', reason: 'Verified' }] } })],
      AccessPolicy: [live('AccessPolicy', 'allow-east', 'web', { action: 'allow', from: [{ workloadSelector: { matchLabels: { 'peer.clusterlink.net/name': 'east' } } }], to: [{ workloadSelector: {} }] })],
    },
  };
  return [east, west];
}

/** The repository as `clgo migrate` leaves it: the plan's files, fabric.yaml with the plan's attestations. */
const filesOf = (plan: MigrationPlan): Map<string, Uint8Array> =>
  new Map([['fabric.yaml', Buffer.from(withPeerAttestations(FABRIC_YAML, plan.attestations).text)], ...[...plan.files].map(([p, t]) => [p, Buffer.from(t)] as [string, Uint8Array])]);

describe('planMigration', () => {
  it('writes one directory per cluster with the objects unchanged but for server fields', () => {
    const [east, west] = twoClusters();
    const plan = planMigration([east!, west!], OPTS);
    expect([...plan.files.keys()].sort()).toEqual([
      'peers/east/imports/web.http.yaml',
      'peers/east/peer.yaml',
      'peers/east/policies/privileged.deny-untrusted-peers.yaml',
      'peers/west/exports/web.http.yaml',
      'peers/west/peer.yaml',
      'peers/west/policies/web.allow-east.yaml',
    ]);
    const exp = parse(plan.files.get('peers/west/exports/web.http.yaml')!) as Record<string, unknown>;
    expect(exp).toEqual({ apiVersion: 'clusterlink.net/v1alpha1', kind: 'Export', metadata: { name: 'http', namespace: 'web', labels: { app: 'web' } }, spec: { port: 8080 } });
    const policy = parse(plan.files.get('peers/west/policies/web.allow-east.yaml')!) as { spec: unknown };
    expect(policy.spec).toEqual(west!.objects.AccessPolicy[0]!.spec);
    const privileged = parse(plan.files.get('peers/east/policies/privileged.deny-untrusted-peers.yaml')!) as { metadata: Record<string, unknown> };
    expect(privileged.metadata).toEqual({ name: 'deny-untrusted-peers' });
    for (const [path, text] of plan.files) {
      expect(text, path).not.toMatch(/uid:|resourceVersion|managedFields|creationTimestamp|generation:|status:|last-applied/);
    }
  });

  it("takes a peer's gateways from the other clusters' Peer objects", () => {
    const plan = planMigration(twoClusters(), OPTS);
    expect((parse(plan.files.get('peers/west/peer.yaml')!) as { spec: unknown }).spec).toEqual({ gateways: [{ host: '198.51.100.2', port: 443 }] });
    expect((parse(plan.files.get('peers/east/peer.yaml')!) as { spec: unknown }).spec).toEqual({ gateways: [{ host: '198.51.100.1', port: 443 }] });
  });

  it('drops a targetPort that ClusterLink leased, keeps one a user set', () => {
    const [east] = twoClusters();
    expect(targetPortLeasedByClusterLink(east!.objects.Import[0]!)).toBe(true);
    expect(cleanObject('Import', east!.objects.Import[0]!).doc.spec).toEqual({ port: 80, lbScheme: 'round-robin', sources: [{ peer: 'west', exportName: 'http', exportNamespace: 'web' }] });
    const userSet = live('Import', 'db', 'data', { port: 5432, targetPort: 15432, lbScheme: 'static', sources: [{ peer: 'west', exportName: 'db', exportNamespace: 'data' }] });
    expect(targetPortLeasedByClusterLink(userSet)).toBe(false);
    expect(cleanObject('Import', userSet).doc.spec).toMatchObject({ targetPort: 15432 });
    const plan = planMigration(twoClusters(), OPTS);
    expect(plan.items.some((i) => i.message.includes('targetPort 45123 was leased'))).toBe(true);
  });

  it('lists a certificate step per peer, and validate reports exactly those until peer.pem is committed', () => {
    const plan = planMigration(twoClusters(), OPTS);
    const certs = plan.items.filter((i) => i.topic === 'certificate');
    expect(certs.map((i) => i.peer).sort()).toEqual(['east', 'west']);
    expect(certs[0]!.action.join('\n')).toMatch(/clgo create peer \w+ --fabric fabric[\s\S]*clgo sign/);
    const validation = validateFiles(filesOf(plan));
    expect(validation.errors.map((d) => `${d.code} ${d.file}`).sort()).toEqual(['peer-certificate-missing peers/east/peer.yaml', 'peer-certificate-missing peers/west/peer.yaml']);
    const { text, checked } = renderReport(plan, validation, { repoDir: 'fabric', readAt: new Date(0), fabricName: 'example' });
    expect(checked.unexplained).toEqual([]);
    expect(text).toContain('`clgo validate` reports this until it is done: peer-certificate-missing at peers/east/peer.yaml:');
    expect(text).toContain('2 error(s), 2 of them steps listed above');
  });

  it('puts peer labels in fabric.yaml for the admin, where the policies see them, and none in peer.yaml', () => {
    const plan = planMigration(twoClusters(), OPTS);
    expect(Object.fromEntries(plan.attestations)).toEqual({ east: { region: 'us-east' }, west: { region: 'us-west', trust: 'high' } });
    expect((parse(plan.files.get('peers/west/peer.yaml')!) as { metadata: unknown }).metadata).toEqual({ name: 'west' });
    const validation = validateFiles(filesOf(plan));
    expect(validation.warnings).toEqual([]);
    // Load passes (only certificate errors): the model the reconcilers would use carries the attested labels.
    expect(validation.errors.every((d) => d.code === 'peer-certificate-missing')).toBe(true);
  });

  it('keeps a dotted peer name (ClusterLink\'s sample peer cluster17.us-east) as the directory name', () => {
    const [east, west] = twoClusters();
    west!.peer = { name: 'cluster17.us-east', source: 'test' };
    east!.peers[0]!.metadata.name = 'cluster17.us-east';
    east!.objects.Import[0]!.spec!.sources = [{ peer: 'cluster17.us-east', exportName: 'http', exportNamespace: 'web' }];
    const plan = planMigration([east!, west!], OPTS);
    expect(plan.files.has('peers/cluster17.us-east/exports/web.http.yaml')).toBe(true);
    const validation = validateFiles(filesOf(plan));
    expect(validation.errors.map((d) => `${d.code} ${d.file}`).sort()).toEqual(['peer-certificate-missing peers/cluster17.us-east/peer.yaml', 'peer-certificate-missing peers/east/peer.yaml']);
  });

  it('says which peer labels policies rely on', () => {
    const plan = planMigration(twoClusters(), OPTS);
    const west = plan.items.find((i) => i.topic === 'labels' && i.peer === 'west' && i.severity === 'todo')!;
    expect(west.message).toContain('trust=high — key used by east: PrivilegedAccessPolicy deny-untrusted-peers');
    expect(west.message).toContain('region=us-west — no migrated policy refers to it');
    expect(west.message).toContain('deny policies on them stop denying');
    // east last heard west announce fewer labels than west's control plane has now.
    expect(plan.items).toContainEqual(expect.objectContaining({ severity: 'note', peer: 'west', message: expect.stringContaining('context kind-east last heard west report labels {region=us-west}') }));
  });

  it('reports clusters that disagree on a gateway, and a peer whose gateway nobody knows', () => {
    const [east, west] = twoClusters();
    const third: ClusterSnapshot = {
      context: 'kind-edge',
      peer: { name: 'edge', source: 'test' },
      labels: null,
      ingress: null,
      peers: [live('Peer', 'west', 'clusterlink-system', { gateways: [{ host: '203.0.113.9', port: 443 }] })],
      objects: noObjects(),
    };
    const plan = planMigration([east!, west!, third], OPTS);
    const disagree = plan.items.find((i) => i.topic === 'gateways' && i.peer === 'west')!;
    expect(disagree.message).toContain('198.51.100.2:443 (kind-east); 203.0.113.9:443 (kind-edge)');
    const unknown = plan.items.find((i) => i.topic === 'gateways' && i.peer === 'edge')!;
    expect(unknown.severity).toBe('todo');
    const validation = validateFiles(filesOf(plan));
    const { checked } = renderReport(plan, validation, { repoDir: 'fabric', readAt: new Date(0), fabricName: 'example' });
    expect(validation.errors.map((d) => `${d.code} ${d.file}`).sort()).toEqual(['invalid-field peers/edge/peer.yaml', 'missing-peer peers/edge/peer.yaml']);
    expect(checked.unexplained).toEqual([]);
  });

  it('writes a peer known only from Peer objects, and says its objects were not read', () => {
    const [east] = twoClusters();
    east!.ingress = { host: '198.51.100.1', port: 443, source: 'Instance status' };
    const plan = planMigration([east!], OPTS);
    expect(plan.peers.map((p) => [p.name, p.context])).toEqual([
      ['east', 'kind-east'],
      ['west', null],
    ]);
    expect(plan.files.has('peers/west/peer.yaml')).toBe(true);
    expect((parse(plan.files.get('peers/west/peer.yaml')!) as { metadata: unknown }).metadata).toEqual({ name: 'west' });
    // What east heard west announce is what the admin gets to attest.
    expect(plan.attestations.get('west')).toEqual({ region: 'us-west' });
    expect(plan.items.find((i) => i.topic === 'peer' && i.peer === 'west')!.message).toContain("its own Exports, Imports and policies were not read, so the exports imported from it (by east's Import web/http) are missing");
    // validate refuses east's import (west exports nothing yet): that is the step above, not a problem of its own.
    const validation = validateFiles(filesOf(plan));
    expect(validation.errors.map((d) => `${d.code} ${d.file}`)).toEqual(['unknown-export peers/east/imports/web.http.yaml']);
    expect(renderReport(plan, validation, { repoDir: 'fabric', readAt: new Date(0), fabricName: 'example' }).checked.unexplained).toEqual([]);
    // Already in the repository (migrated earlier, or written by its team): left alone, and no step about it.
    const later = planMigration([east!], { ...OPTS, existingPeers: new Set(['west']) });
    expect([...later.files.keys()].filter((p) => p.startsWith('peers/west/'))).toEqual([]);
    expect(later.items.filter((i) => i.peer === 'west')).toEqual([]);
  });

  it('lists an import from a peer nobody knows, and validate reports it there', () => {
    const [east] = twoClusters();
    east!.peers = [];
    east!.ingress = { host: '198.51.100.1', port: 443, source: 'Instance status' };
    const plan = planMigration([east!], OPTS);
    expect(plan.items.find((i) => i.topic === 'peer')!.message).toBe('Import web/http on east imports from peer west, which no migrated cluster is and no ClusterLink Peer object describes');
    const validation = validateFiles(filesOf(plan));
    expect(validation.errors.map((d) => `${d.code} ${d.file}`)).toEqual(['unknown-peer peers/east/imports/web.http.yaml']);
    expect(renderReport(plan, validation, { repoDir: 'fabric', readAt: new Date(0), fabricName: 'example' }).checked.unexplained).toEqual([]);
  });

  it('refuses two contexts that are the same peer', () => {
    const [east] = twoClusters();
    expect(() => planMigration([east!, { ...east!, context: 'other' }], OPTS)).toThrow(/contexts kind-east and other are both peer east/);
  });

  it('keeps a migrated object that the fabric refuses, and the report shows it as a problem of its own', () => {
    const [east, west] = twoClusters();
    west!.objects.AccessPolicy.push(live('AccessPolicy', 'sets', 'web', { action: 'allow', from: [{ workloadSets: ['a'] }], to: [{ workloadSelector: {} }] }));
    const plan = planMigration([east!, west!], OPTS);
    const validation = validateFiles(filesOf(plan));
    const { text, checked } = renderReport(plan, validation, { repoDir: 'fabric', readAt: new Date(0), fabricName: 'example' });
    expect(checked.unexplained.map((d) => d.file)).toEqual(['peers/west/policies/web.sets.yaml']);
    expect(text).toContain('Errors that are not one of the steps above');
    expect(text).toContain('peers/west/policies/web.sets.yaml:');
  });

  it('notes finalizers, owner references and objects being deleted', () => {
    const [east, west] = twoClusters();
    west!.objects.Export.push(live('Export', 'old', 'web', { port: 81 }, { metadata: { finalizers: ['example.com/keep'], ownerReferences: [{ kind: 'Application', name: 'web', uid: 'x', apiVersion: 'argoproj.io/v1alpha1' }], deletionTimestamp: '2026-12-02T00:00:00Z' } }));
    const plan = planMigration([east!, west!], OPTS);
    const msgs = plan.items.filter((i) => i.peer === 'west' && i.topic === 'object').map((i) => `${i.severity}: ${i.message}`);
    expect(msgs).toContainEqual(expect.stringMatching(/^todo: .*web\.old\.yaml: Export web\/old was being deleted/));
    expect(msgs).toContainEqual(expect.stringMatching(/^note: .*finalizers \(example\.com\/keep\) and owner references \(Application\/web\) removed/));
  });
});

describe('peer labels from the control plane arguments', () => {
  it('reads --peer-label in both forms, with comma-separated pairs', () => {
    expect(peerLabelsFromArgs(['--log-level', 'info', '--peer-label', 'region=us-east', '--peer-label=tier=core,env=prod'])).toEqual({ region: 'us-east', tier: 'core', env: 'prod' });
    expect(peerLabelsFromArgs(['--log-level', 'info'])).toEqual({});
  });
});

describe('withPeerAttestations', () => {
  it('adds spec.peers.<peer>.labels, keeps comments, and never overrides labels the admin attested', () => {
    const fabricYaml = '# The fabric acme.\napiVersion: clusterlink.net/v1alpha1\nkind: Fabric\nmetadata:\n  name: acme\nspec:\n  caCertificates:\n    - "-----BEGIN CERTIFICATE-----"\n';
    const first = withPeerAttestations(fabricYaml, new Map([['west', { region: 'us-west', trust: 'high' }]]));
    expect(first.text).toContain('# The fabric acme.');
    expect(first.text).toContain('# Peer labels other peers\' policies may trust');
    expect((parse(first.text) as { spec: { peers: unknown } }).spec.peers).toEqual({ west: { labels: { region: 'us-west', trust: 'high' } } });
    const second = withPeerAttestations(first.text, new Map<string, Record<string, string>>([['west', { region: 'us-west', trust: 'low' }], ['east', { region: 'us-east' }]]));
    expect((parse(second.text) as { spec: { peers: unknown } }).spec.peers).toEqual({ west: { labels: { region: 'us-west', trust: 'high' } }, east: { labels: { region: 'us-east' } } });
    expect(second.items).toHaveLength(1);
    expect(second.items[0]!.message).toContain('fabric.yaml already attests labels for west (region=us-west, trust=high); the cluster has {region=us-west, trust=low}');
  });
});

describe('the peer Secret at the edge', () => {
  it('keeps cert.pem and drops everything else the Secret holds (the private key among it)', () => {
    const parsed = peerSecret.parse({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'cl-peer' }, data: { 'cert.pem': 'Y2VydA==', 'key.pem': 'a2V5', 'ca.pem': 'Y2E=' } });
    expect(parsed).toEqual({ data: { 'cert.pem': 'Y2VydA==' } });
  });
});
