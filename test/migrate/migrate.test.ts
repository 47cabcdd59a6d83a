// `clgo migrate` against real kube-apiservers: two "clusters" (two apiserver processes, each with
// ClusterLink's own CRDs applied), ClusterLink objects created through the API the way ClusterLink
// and its users create them, migrate run through the CLI with a kubeconfig holding one context per
// cluster (each a ServiceAccount bound to deploy/migrate/rbac.yaml only), then the written
// repository checked: objects, MIGRATION.md, `clgo validate`, and that following the report's
// steps makes the repository valid.
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { runClgo } from '../fixtures/cli.ts';
import { startKubeApiServer, type KubeApiServer } from '../fixtures/kube-apiserver.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const CRD_DIR = join(ROOT, 'test/fixtures/clusterlink-crds');
const RBAC = readFileSync(join(ROOT, 'deploy/migrate/rbac.yaml'), 'utf8');
const CL_NS = 'clusterlink-system';
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

let east: KubeApiServer;
let west: KubeApiServer;
let work: string;
let kubeconfigPath: string;
/** The private key in east's cl-peer Secret: must never show up in anything migrate writes or prints. */
let eastPeerKeyPem: string;

/** A certificate like ClusterLink's `clusterlink create peer` makes: CN and DNS SAN = peer name. */
function clusterLinkPeerCertificate(name: string): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'clgo-migrate-cert-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '3650', '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`], { stdio: 'ignore' });
    return { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

async function installClusterLinkCrds(server: KubeApiServer): Promise<void> {
  for (const f of readdirSync(CRD_DIR).filter((n) => n.endsWith('.yaml')).sort()) await server.applyYaml(readFileSync(join(CRD_DIR, f), 'utf8'));
  // A new CRD is served once it is Established: list each kind until the API answers (bounded).
  const custom = server.adminKubeConfig().makeApiClient(CustomObjectsApi);
  for (const plural of ['peers', 'exports', 'imports', 'accesspolicies', 'privilegedaccesspolicies', 'instances']) {
    for (let i = 0; ; i++) {
      try {
        await custom.listClusterCustomObject({ group: 'clusterlink.net', version: 'v1alpha1', plural });
        break;
      } catch (err) {
        if (i >= 200) throw new Error(`${plural}.clusterlink.net not served after 20 s: ${String(err)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
}

/** The ServiceAccount migrate runs as: bound to deploy/migrate/rbac.yaml, with or without the peer-name Role. */
async function migrateUser(server: KubeApiServer, opts: { peerName: boolean }): Promise<{ token: string }> {
  await server.ensureNamespace('migrate-test');
  await server.applyYaml(RBAC);
  await server.applyYaml(`apiVersion: v1
kind: ServiceAccount
metadata: { name: clgo-migrate, namespace: migrate-test }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: clgo-migrate }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: clgo-migrate }
subjects: [{ kind: ServiceAccount, name: clgo-migrate, namespace: migrate-test }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: clgo-migrate, namespace: ${CL_NS} }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: clgo-migrate }
subjects: [{ kind: ServiceAccount, name: clgo-migrate, namespace: migrate-test }]
${
  opts.peerName
    ? `---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: clgo-migrate-peer-name, namespace: ${CL_NS} }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: clgo-migrate-peer-name }
subjects: [{ kind: ServiceAccount, name: clgo-migrate, namespace: migrate-test }]
`
    : ''
}`);
  const { token } = await server.serviceAccountKubeConfig('migrate-test', 'clgo-migrate');
  return { token };
}

/** East: deployed with `clusterlink deploy peer --start none` (its Deployment carries --peer-label); imports web/http from west. */
async function populateEast(server: KubeApiServer): Promise<void> {
  const peerCert = clusterLinkPeerCertificate('east');
  eastPeerKeyPem = peerCert.key;
  for (const ns of [CL_NS, 'web']) await server.ensureNamespace(ns);
  await server.applyYaml(`apiVersion: v1
kind: Secret
metadata: { name: cl-peer, namespace: ${CL_NS} }
data:
  cert.pem: ${b64(peerCert.cert)}
  key.pem: ${b64(peerCert.key)}
  ca.pem: ${b64(peerCert.cert)}
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: cl-controlplane, namespace: ${CL_NS}, labels: { app: cl-controlplane } }
spec:
  replicas: 1
  selector: { matchLabels: { app: cl-controlplane } }
  template:
    metadata: { labels: { app: cl-controlplane } }
    spec:
      containers:
        - name: cl-controlplane
          image: ghcr.io/clusterlink-net/cl-controlplane:latest
          args: ["--log-level", "info", "--peer-label", "region=us-east", "--peer-label", "trust=high"]
---
apiVersion: clusterlink.net/v1alpha1
kind: Peer
metadata: { name: west, namespace: ${CL_NS} }
spec:
  gateways: [{ host: west.gateway.example.com, port: 443 }]
---
apiVersion: clusterlink.net/v1alpha1
kind: Import
metadata: { name: http, namespace: web, labels: { app: web } }
spec:
  port: 80
  lbScheme: round-robin
  sources: [{ peer: west, exportName: http, exportNamespace: web }]
---
apiVersion: clusterlink.net/v1alpha1
kind: PrivilegedAccessPolicy
metadata: { name: deny-low-trust-peers }
spec:
  action: deny
  from: [{ workloadSelector: { matchLabels: { peer.clusterlink.net/labels.trust: low } } }]
  to: [{ workloadSelector: {} }]
---
apiVersion: clusterlink.net/v1alpha1
kind: AccessPolicy
metadata: { name: allow-all, namespace: web }
spec:
  action: allow
  from: [{ workloadSelector: {} }]
  to: [{ workloadSelector: {} }]
`);
  const custom = server.adminKubeConfig().makeApiClient(CustomObjectsApi);
  // ClusterLink's control plane leases a target port for an import without one and writes it back
  // (control.Manager.allocateTargetPort), as field manager cl-controlplane.
  await custom.patchNamespacedCustomObject({ group: 'clusterlink.net', version: 'v1alpha1', plural: 'imports', namespace: 'web', name: 'http', fieldManager: 'cl-controlplane', body: { spec: { targetPort: 20345 } } }, mergePatch);
  // What west told east about itself over the heartbeat.
  await custom.patchNamespacedCustomObjectStatus(
    { group: 'clusterlink.net', version: 'v1alpha1', plural: 'peers', namespace: CL_NS, name: 'west', body: { status: { labels: { region: 'us-west' }, conditions: [{ type: 'PeerReachable', status: 'True', reason: 'Heartbeat', message: '', lastTransitionTime: '2026-12-01T10:00:00Z' }] } } },
    mergePatch,
  );
}

/** West: deployed by ClusterLink's operator (an Instance with peerLabels and its ingress); exports web/http. */
async function populateWest(server: KubeApiServer): Promise<void> {
  for (const ns of [CL_NS, 'clusterlink-operator', 'web']) await server.ensureNamespace(ns);
  await server.applyYaml(`apiVersion: clusterlink.net/v1alpha1
kind: Instance
metadata: { name: cl-instance, namespace: clusterlink-operator }
spec:
  namespace: ${CL_NS}
  peerLabels: { region: us-west }
  ingress: { type: LoadBalancer }
---
apiVersion: clusterlink.net/v1alpha1
kind: Peer
metadata: { name: east, namespace: ${CL_NS} }
spec:
  gateways: [{ host: 192.0.2.10, port: 443 }]
---
apiVersion: clusterlink.net/v1alpha1
kind: Export
metadata: { name: http, namespace: web }
spec:
  port: 8080
---
apiVersion: clusterlink.net/v1alpha1
kind: AccessPolicy
metadata: { name: allow-east-to-web, namespace: web }
spec:
  action: allow
  from: [{ workloadSelector: { matchLabels: { peer.clusterlink.net/name: east } } }]
  to: [{ workloadSelector: { matchLabels: { export.clusterlink.net/name: http } } }]
`);
  const custom = server.adminKubeConfig().makeApiClient(CustomObjectsApi);
  await custom.patchNamespacedCustomObjectStatus(
    { group: 'clusterlink.net', version: 'v1alpha1', plural: 'exports', namespace: 'web', name: 'http', body: { status: { conditions: [{ type: 'ExportValid', status: 'True', reason: 'Verified', message: '', lastTransitionTime: '2026-12-01T10:00:00Z' }] } } },
    mergePatch,
  );
  await custom.patchNamespacedCustomObjectStatus(
    { group: 'clusterlink.net', version: 'v1alpha1', plural: 'instances', namespace: 'clusterlink-operator', name: 'cl-instance', body: { status: { ingress: { ip: '192.0.2.20', port: 443 } } } },
    mergePatch,
  );
}

/** The harness's admin token (system:masters). */
function adminToken(server: KubeApiServer): string {
  const token = server.adminKubeConfig().getCurrentUser()?.token;
  if (!token) throw new Error('the test kube-apiserver admin kubeconfig has no token');
  return token;
}

function writeKubeconfig(path: string, contexts: { name: string; server: KubeApiServer; token: string }[]): void {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: contexts.map((c) => ({ name: c.name, server: c.server.url, caData: b64(c.server.caPem) })),
    users: contexts.map((c) => ({ name: `${c.name}-migrate`, token: c.token })),
    contexts: contexts.map((c) => ({ name: c.name, cluster: c.name, user: `${c.name}-migrate` })),
    currentContext: contexts[0]!.name,
  });
  writeFileSync(path, kc.exportConfig(), { mode: 0o600 });
}

/** Every file under dir, path → text. */
function readTree(dir: string, prefix = ''): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of readdirSync(join(dir, prefix))) {
    const rel = prefix ? `${prefix}/${name}` : name;
    if (statSync(join(dir, rel)).isDirectory()) for (const [p, t] of readTree(dir, rel)) out.set(p, t);
    else out.set(rel, readFileSync(join(dir, rel), 'utf8'));
  }
  return out;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'clgo-migrate-'));
  [east, west] = await Promise.all([startKubeApiServer({ host: '127.0.195.1' }), startKubeApiServer({ host: '127.0.195.2' })]);
  await Promise.all([installClusterLinkCrds(east), installClusterLinkCrds(west)]);
  await Promise.all([populateEast(east), populateWest(west)]);
  const [eastUser, westUser] = await Promise.all([migrateUser(east, { peerName: true }), migrateUser(west, { peerName: false })]);
  kubeconfigPath = join(work, 'kubeconfig');
  writeKubeconfig(kubeconfigPath, [
    { name: 'kind-east', server: east, token: eastUser.token },
    { name: 'kind-west', server: west, token: westUser.token },
  ]);
}, 300_000);

afterAll(async () => {
  await Promise.all([east?.stop(), west?.stop()]);
  if (work) rmSync(work, { recursive: true, force: true });
}, 60_000);

describe('clgo migrate against real kube-apiservers with ClusterLink CRDs', () => {
  it('writes one peer directory per cluster, a report whose steps are exactly what validate refuses, and following them makes the fabric valid', async () => {
    const repo = join(work, 'fabric');
    const created = await runClgo('create', 'fabric', '--name', 'acme', '--out', repo, '--ca-key-out', join(work, 'acme-ca.key'), '--ca-cert-out', join(work, 'acme-ca.crt'));
    expect(created.code, created.err).toBe(0);

    const eastMark = await east.mark();
    const westMark = await west.mark();
    const res = await runClgo('migrate', '--kubeconfig', kubeconfigPath, '--context', 'kind-east', '--context', 'kind-west', '--peer', 'kind-west=west', '--out', repo);
    expect(res.code, `${res.out}\n${res.err}`).toBe(0);
    expect(res.err).toContain('read context kind-east: peer east (the peer certificate in Secret clusterlink-system/cl-peer)');
    expect(res.err).toContain('read context kind-west: peer west (--peer kind-west=west)');
    expect(res.out).toMatch(/migrated 2 cluster\(s\) into .* \(fabric acme\): east, west/);
    expect(res.out).toContain('clgo validate: 2 error(s), 2 of them listed steps');

    const tree = readTree(repo);
    expect([...tree.keys()].filter((p) => p.startsWith('peers/')).sort()).toEqual([
      'peers/east/imports/web.http.yaml',
      'peers/east/peer.yaml',
      'peers/east/policies/privileged.deny-low-trust-peers.yaml',
      'peers/east/policies/web.allow-all.yaml',
      'peers/west/exports/web.http.yaml',
      'peers/west/peer.yaml',
      'peers/west/policies/web.allow-east-to-web.yaml',
    ]);
    // Objects unchanged but for server fields: the import loses only the targetPort ClusterLink leased.
    expect(parse(tree.get('peers/east/imports/web.http.yaml')!)).toEqual({
      apiVersion: 'clusterlink.net/v1alpha1',
      kind: 'Import',
      metadata: { name: 'http', namespace: 'web', labels: { app: 'web' } },
      spec: { port: 80, lbScheme: 'round-robin', sources: [{ peer: 'west', exportName: 'http', exportNamespace: 'web' }] },
    });
    expect(parse(tree.get('peers/west/policies/web.allow-east-to-web.yaml')!)).toEqual({
      apiVersion: 'clusterlink.net/v1alpha1',
      kind: 'AccessPolicy',
      metadata: { name: 'allow-east-to-web', namespace: 'web' },
      spec: { action: 'allow', from: [{ workloadSelector: { matchLabels: { 'peer.clusterlink.net/name': 'east' } } }], to: [{ workloadSelector: { matchLabels: { 'export.clusterlink.net/name': 'http' } } }] },
    });
    // Peer labels: in fabric.yaml for the admin to attest (east's from its control plane's --peer-label
    // arguments, west's from the operator's Instance), none in the peers' own peer.yaml.
    expect((parse(tree.get('fabric.yaml')!) as { spec: { peers: unknown } }).spec.peers).toEqual({ east: { labels: { region: 'us-east', trust: 'high' } }, west: { labels: { region: 'us-west' } } });
    expect((parse(tree.get('peers/east/peer.yaml')!) as { metadata: unknown }).metadata).toEqual({ name: 'east' });
    expect(res.out).toContain('peer labels of east, west added to fabric.yaml for the admin to attest');
    // Gateways: what the other cluster dials.
    expect((parse(tree.get('peers/east/peer.yaml')!) as { spec: unknown }).spec).toEqual({ gateways: [{ host: '192.0.2.10', port: 443 }] });
    expect((parse(tree.get('peers/west/peer.yaml')!) as { spec: unknown }).spec).toEqual({ gateways: [{ host: 'west.gateway.example.com', port: 443 }] });
    for (const [path, text] of tree) {
      if (path.startsWith('peers/')) expect(text, path).not.toMatch(/resourceVersion|managedFields|creationTimestamp|uid:|status:/);
      expect(text, path).not.toContain('PRIVATE KEY');
      expect(text, path).not.toContain(eastPeerKeyPem.split('\n')[1]!);
    }
    expect(`${res.out}${res.err}`).not.toContain('PRIVATE KEY');

    // The report: where each peer's name came from, a certificate step per peer, the labels policies rely on.
    const report = tree.get('MIGRATION.md')!;
    expect(report).toContain('**east** — context `kind-east` (peer name from the peer certificate in Secret clusterlink-system/cl-peer): 1 import, 1 access policy, 1 privileged access policy');
    expect(report).toContain('**west** — context `kind-west` (peer name from --peer kind-west=west): 1 export, 1 access policy');
    expect(report).toMatch(/\[east\] certificate: .*\n.*clgo create peer east --fabric .*\n.*clgo sign east\.csr[\s\S]*?`clgo validate` reports this until it is done: peer-certificate-missing at peers\/east\/peer\.yaml/);
    expect(report).toMatch(/\[east\] labels: .*Read from the --peer-label arguments of Deployment clusterlink-system\/cl-controlplane:[\s\S]*?trust=high — key used by east: PrivilegedAccessPolicy deny-low-trust-peers/);
    expect(report).toContain('Read from Instance clusterlink-operator/cl-instance spec.peerLabels:\n    region=us-west — no migrated policy refers to it');
    expect(report).toContain('fabric admin: review fabric.yaml spec.peers.east.labels (written by this migration); keep only what is true of east — merging attests them');
    expect(report).toContain('spec.targetPort 20345 was leased by ClusterLink\'s control plane');

    // clgo validate agrees with the report: the two missing certificates, nothing else.
    const validate = await runClgo('validate', repo, '--format', 'json');
    expect(validate.code).toBe(1);
    const diagnostics = JSON.parse(validate.out) as { errors: { code: string; file: string }[] };
    expect(diagnostics.errors.map((d) => `${d.code} ${d.file.slice(d.file.indexOf('peers/'))}`).sort()).toEqual(['peer-certificate-missing peers/east/peer.yaml', 'peer-certificate-missing peers/west/peer.yaml']);

    // Least privilege, checked on the servers: west was never asked for a Secret (its peer name was given);
    // east only for cl-peer; migrate wrote nothing to either cluster.
    expect(await west.requests(westMark, { resource: 'secrets' })).toEqual([]);
    expect((await east.requests(eastMark, { resource: 'secrets' })).map((r) => `${r.verb} ${r.namespace}/${r.name}`)).toEqual(['get clusterlink-system/cl-peer']);
    expect((await east.writes(eastMark)).total + (await west.writes(westMark)).total).toBe(0);

    // Following the certificate steps (create peer, sign) makes the repository valid.
    for (const peer of ['east', 'west']) {
      const key = join(work, `${peer}.key`);
      const csr = join(work, `${peer}.csr`);
      const made = await runClgo('create', 'peer', peer, '--fabric', repo, '--key-out', key, '--csr-out', csr);
      expect(made.code, made.err).toBe(0);
      const signed = await runClgo('sign', csr, '--ca', join(work, 'acme-ca.crt'), '--ca-key', join(work, 'acme-ca.key'), '--fabric', repo);
      expect(signed.code, signed.err).toBe(0);
    }
    const after = await runClgo('validate', repo);
    expect(after.code, after.out).toBe(0);
    expect(after.out).toContain('valid: fabric acme, 2 peer(s), 1 export(s), 1 import(s), 3 policies');

    // A second run does not overwrite the peer's directory without --force, nor ever the directory of
    // a peer it only sees in Peer objects (east, here).
    const again = await runClgo('migrate', '--kubeconfig', kubeconfigPath, '--context', 'kind-west', '--peer', 'kind-west=west', '--out', repo);
    expect(again.code).toBe(2);
    expect(again.err).toContain('clgo: peers/west/ already in');
    const forced = await runClgo('migrate', '--kubeconfig', kubeconfigPath, '--context', 'kind-west', '--peer', 'kind-west=west', '--out', repo, '--force');
    expect(forced.code, forced.err).toBe(0);
    expect(readFileSync(join(repo, 'peers/east/peer.yaml'), 'utf8')).toBe(tree.get('peers/east/peer.yaml'));
    expect(existsSync(join(repo, 'peers/east/peer.pem'))).toBe(true);
  }, 120_000);

  it('asks for --peer when the cluster cannot say which peer it is', async () => {
    const repo = join(work, 'fabric-no-name');
    expect((await runClgo('create', 'fabric', '--name', 'acme', '--out', repo, '--ca-key-out', join(work, 'no-name-ca.key'), '--ca-cert-out', join(work, 'no-name-ca.crt'))).code).toBe(0);
    const res = await runClgo('migrate', '--kubeconfig', kubeconfigPath, '--context', 'kind-west', '--out', repo);
    expect(res.code).toBe(2);
    expect(res.err).toMatch(/context kind-west: cannot tell which peer this cluster is \(reading Secret clusterlink-system\/cl-peer.*\): HTTP 403.* — pass --peer kind-west=<peer-name>/);
    const badName = await runClgo('migrate', '--kubeconfig', kubeconfigPath, '--context', 'kind-west', '--peer', 'kind-west=West_1', '--out', repo);
    expect(badName.code).toBe(2);
    expect(badName.err).toContain('context kind-west: peer name "West_1" (from --peer kind-west=West_1) cannot name a fabric peer');
    expect(readdirSync(repo)).toEqual(['fabric.yaml']);
  }, 60_000);
});

// ClusterLink's BookInfo tutorial, set up the way the tutorial does it (three clusters, its own
// object files through `envsubst | kubectl apply`, peer certificates as `clusterlink deploy peer`
// stores them), then migrated in one run with the peer names read from the certificates.
describe("clgo migrate of ClusterLink's BookInfo tutorial (three kube-apiservers)", () => {
  const TUTORIAL = join(ROOT, 'test/fixtures/clusterlink-bookinfo');
  const IPS = { CLIENT_IP: '192.0.2.1', SERVER1_IP: '192.0.2.2', SERVER2_IP: '192.0.2.3' };
  const servers: Record<'client' | 'server1' | 'server2', KubeApiServer | undefined> = { client: undefined, server1: undefined, server2: undefined };
  let dir: string;
  let kubeconfig: string;

  /** `envsubst < file | kubectl apply -f -`, as the tutorial does. */
  const kubectlApply = (server: KubeApiServer, file: string): void => {
    const text = readFileSync(join(TUTORIAL, file), 'utf8').replace(/\$\{(\w+)\}/g, (_, v: string) => IPS[v as keyof typeof IPS] ?? '');
    execFileSync('kubectl', ['--kubeconfig', server.kubeconfigPath, 'apply', '-f', '-'], { input: text, stdio: ['pipe', 'ignore', 'pipe'], timeout: 60_000 });
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'clgo-migrate-bookinfo-'));
    const [client, server1, server2] = await Promise.all([startKubeApiServer({ host: '127.0.196.1' }), startKubeApiServer({ host: '127.0.196.2' }), startKubeApiServer({ host: '127.0.196.3' })]);
    Object.assign(servers, { client, server1, server2 });
    const setups: [KubeApiServer, string, string[]][] = [
      [client, 'client', ['peer-server1.yaml', 'peer-server2.yaml', 'import-reviews-lb-random.yaml', 'allow-policy.yaml', 'deny-server1-policy.yaml']],
      [server1, 'server1', ['peer-client.yaml', 'export-reviews.yaml', 'allow-policy.yaml']],
      [server2, 'server2', ['peer-client.yaml', 'export-reviews.yaml', 'allow-policy.yaml']],
    ];
    await Promise.all(
      setups.map(async ([server, peer, files]) => {
        await installClusterLinkCrds(server);
        await server.ensureNamespace(CL_NS);
        const cert = clusterLinkPeerCertificate(peer);
        await server.applyYaml(`apiVersion: v1\nkind: Secret\nmetadata: { name: cl-peer, namespace: ${CL_NS} }\ndata:\n  cert.pem: ${b64(cert.cert)}\n  key.pem: ${b64(cert.key)}\n`);
        for (const f of files) kubectlApply(server, f);
      }),
    );
    kubeconfig = join(dir, 'kubeconfig');
    writeKubeconfig(kubeconfig, [
      { name: 'kind-client', server: client, token: adminToken(client) },
      { name: 'kind-server1', server: server1, token: adminToken(server1) },
      { name: 'kind-server2', server: server2, token: adminToken(server2) },
    ]);
  }, 300_000);

  afterAll(async () => {
    await Promise.all(Object.values(servers).map((s) => s?.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('migrates the tutorial into a fabric that, once its certificates are issued, validates and decides as the tutorial says', async () => {
    const repo = join(dir, 'fabric');
    expect((await runClgo('create', 'fabric', '--name', 'bookinfo', '--out', repo, '--ca-key-out', join(dir, 'ca.key'), '--ca-cert-out', join(dir, 'ca.crt'))).code).toBe(0);
    const res = await runClgo('migrate', '--kubeconfig', kubeconfig, '--context', 'kind-client', '--context', 'kind-server1', '--context', 'kind-server2', '--out', repo);
    expect(res.code, `${res.out}\n${res.err}`).toBe(0);
    expect(res.out).toContain('clgo validate: 3 error(s), 3 of them listed steps');

    const tree = readTree(repo);
    expect([...tree.keys()].filter((p) => p.startsWith('peers/')).sort()).toEqual([
      'peers/client/imports/default.reviews.yaml',
      'peers/client/peer.yaml',
      'peers/client/policies/default.allow-policy.yaml',
      'peers/client/policies/privileged.deny-from-server1.yaml',
      'peers/server1/exports/default.reviews.yaml',
      'peers/server1/peer.yaml',
      'peers/server1/policies/default.allow-policy.yaml',
      'peers/server2/exports/default.reviews.yaml',
      'peers/server2/peer.yaml',
      'peers/server2/policies/default.allow-policy.yaml',
    ]);
    expect((parse(tree.get('peers/client/imports/default.reviews.yaml')!) as { spec: unknown }).spec).toEqual({
      port: 9080,
      sources: [
        { exportName: 'reviews', exportNamespace: 'default', peer: 'server1' },
        { exportName: 'reviews', exportNamespace: 'default', peer: 'server2' },
      ],
      lbScheme: 'random',
    });
    // Each peer's gateway is the address the other clusters were given for it (both servers agree on the client's).
    expect((parse(tree.get('peers/client/peer.yaml')!) as { spec: unknown }).spec).toEqual({ gateways: [{ host: '192.0.2.1', port: 30443 }] });
    expect((parse(tree.get('peers/server2/peer.yaml')!) as { spec: unknown }).spec).toEqual({ gateways: [{ host: '192.0.2.3', port: 30443 }] });
    expect(tree.get('MIGRATION.md')).toContain('**client** — context `kind-client` (peer name from the peer certificate in Secret clusterlink-system/cl-peer): 1 import, 1 access policy, 1 privileged access policy');

    for (const peer of ['client', 'server1', 'server2']) {
      expect((await runClgo('create', 'peer', peer, '--fabric', repo, '--key-out', join(dir, `${peer}.key`), '--csr-out', join(dir, `${peer}.csr`))).code).toBe(0);
      expect((await runClgo('sign', join(dir, `${peer}.csr`), '--ca', join(dir, 'ca.crt'), '--ca-key', join(dir, 'ca.key'), '--fabric', repo)).code).toBe(0);
    }
    const valid = await runClgo('validate', repo);
    expect(valid.code, valid.out).toBe(0);

    // "productpage can access only reviews-v3 from server2, and deny all services from server1".
    const explained = await runClgo('explain', '--fabric', repo, '--from', 'client', '--import', 'default/reviews', '--client', 'namespace=default', '--format', 'json');
    const e = JSON.parse(explained.out) as { candidates: { peer: string; allowed: boolean; egress: { policy: string | null; tier: string } }[] };
    expect(e.candidates.map((c) => [c.peer, c.allowed, c.egress.tier, c.egress.policy])).toEqual([
      ['server1', false, 'privileged', 'deny-from-server1'],
      ['server2', true, 'user', 'default/allow-policy'],
    ]);
  }, 120_000);
});
