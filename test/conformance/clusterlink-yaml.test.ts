// ClusterLink conformance, YAML: what ClusterLink (and `kubectl get -o yaml`) writes loads here
// unchanged, or is refused with a reason; never silently ignored. Each case edits the example
// fabric and checks what a user sees: the model, the warning or the error with file:line.
import { connect, createServer, type Server } from 'node:tls';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { runClgo } from '../fixtures/cli.ts';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { createCertificateAuthority, issuePeerCertificate } from '../../reconciler/pki/issue.ts';
import { verifyPeer } from '../../reconciler/pki/verify.ts';
import { toDer } from '../../reconciler/pki/encoding.ts';
import { sliceAll } from '../../reconciler/slice/slice.ts';
import { createAuthorizer } from '../../reconciler/xds/authz.ts';
import { LEASE_RANGE } from '../../schema/listen-ports.ts';
import { loadFabricFiles, ParseCache } from '../../schema/load.ts';
import type { Diagnostic, LoadResult } from '../../schema/model.ts';
import { readFabricDir } from '../../schema/read-dir.ts';

const EXAMPLE = fileURLToPath(new URL('../../fabric-example/', import.meta.url));
let example: Map<string, string>;

beforeAll(async () => {
  const raw = await readFabricDir(EXAMPLE);
  example = new Map([...raw].map(([k, v]) => [k, typeof v === 'string' ? v : Buffer.from(v).toString('utf8')]));
});

function load(edits: Record<string, string | null>): LoadResult {
  const files = new Map(example);
  for (const [path, text] of Object.entries(edits)) {
    if (text === null) files.delete(path);
    else files.set(path, text);
  }
  return loadFabricFiles(files);
}

function ok(r: LoadResult): Extract<LoadResult, { ok: true }> {
  if (!r.ok) throw new Error(`expected a valid fabric, got: ${r.errors.map((e) => `${e.file}:${e.line} ${e.code} ${e.message}`).join('; ')}`);
  return r;
}

const find = (list: Diagnostic[], code: string): Diagnostic | undefined => list.find((d) => d.code === code);
const lineOf = (text: string, marker: string): number => text.slice(0, text.indexOf(marker)).split('\n').length;

// ClusterLink's examples/policies/deny_from_gw1.json, verbatim but for the peer name.
const DENY_FROM_EAST_JSON = `{
    "kind": "AccessPolicy",
    "apiVersion": "clusterlink.net/v1alpha1",
    "metadata": {
        "name": "deny-from-east",
        "namespace": "perf"
    },
    "spec": {
        "action": "deny",
        "from": [
            {
                "workloadSelector": {
                    "matchLabels": {
                        "peer.clusterlink.net/name": "east"
                    }
                }
            }
        ],
        "to": [
            {
                "workloadSelector": {}
            }
        ]
    }
}
`;

const IMPORT = (name: string, namespace: string, spec: string, labels = '') =>
  `apiVersion: clusterlink.net/v1alpha1\nkind: Import\nmetadata:\n  name: ${name}\n  namespace: ${namespace}\n${labels}spec:\n${spec}`;

describe('ClusterLink YAML accepted unchanged', () => {
  it('.json files in a peer directory are fabric objects: a JSON deny policy is loaded and enforced', () => {
    const r = ok(load({ 'peers/west/policies/deny_from_east.json': DENY_FROM_EAST_JSON }));
    const west = r.fabric.peers.find((p) => p.name === 'west')!;
    expect(west.policies.map((p) => p.name)).toContain('deny-from-east');
    expect(r.warnings.filter((w) => w.file.endsWith('.json'))).toEqual([]);
    // Enforced: west's ingress now refuses east's iperf3 connections that allow-core-perf admitted.
    const authz = createAuthorizer({ slice: () => sliceAll(r.fabric).get('west')!, clientAttributes: () => null });
    const verdict = authz.ingress({ peerCertificateDer: toDer(example.get('peers/east/peer.pem')!), exportNamespace: 'perf', exportName: 'iperf3', client: { namespace: 'perf', labels: { app: 'iperf-client' } } });
    expect(verdict).toMatchObject({ allowed: false, explanation: { policy: 'perf/deny-from-east', location: 'peers/west/policies/deny_from_east.json:1' } });
    const without = createAuthorizer({ slice: () => sliceAll(ok(load({})).fabric).get('west')!, clientAttributes: () => null });
    expect(without.ingress({ peerCertificateDer: toDer(example.get('peers/east/peer.pem')!), exportNamespace: 'perf', exportName: 'iperf3', client: { namespace: 'perf', labels: { app: 'iperf-client' } } }).allowed).toBe(true);
  });

  it('a fabric object outside the layout is an error, never a silent skip', () => {
    for (const path of ['peers/west/deny_from_east.json', 'policies/deny_from_east.json', 'peers/west/policy/deny.yaml']) {
      const r = load({ [path]: DENY_FROM_EAST_JSON });
      expect(r.ok, path).toBe(false);
      const e = find(r.ok ? [] : r.errors, 'misplaced-object');
      expect(e, path).toMatchObject({ file: path, line: 3 });
      expect(e!.hint).toMatch(/peers\/<peer>\//);
    }
    // Other files outside the layout stay ignored (READMEs, CI workflows).
    expect(load({ 'docs/notes.yaml': 'title: notes\n' }).ok).toBe(true);
  });

  it('status and server-populated metadata (kubectl get -o yaml) are accepted, ignored, and noted once per object', () => {
    const exported = `apiVersion: clusterlink.net/v1alpha1
kind: Export
metadata:
  creationTimestamp: "2024-05-02T10:11:12Z"
  generation: 1
  managedFields:
    - apiVersion: clusterlink.net/v1alpha1
      fieldsType: FieldsV1
      manager: kubectl-client-side-apply
      operation: Update
  name: http
  namespace: web
  resourceVersion: "123456"
  uid: 0f4f6c1e-1d7a-4f52-9d5e-8b5d0e0a1b2c
  labels:
    app: http
    data: internal
spec:
  host: 127.0.20.2
  port: 8080
status:
  conditions:
    - lastTransitionTime: "2024-05-02T10:11:13Z"
      message: ""
      reason: Verified
      status: "True"
      type: ExportValid
`;
    const r = ok(load({ 'peers/west/exports/http.yaml': exported }));
    const exp = r.fabric.peers.find((p) => p.name === 'west')!.exports.find((e) => e.name === 'http')!;
    expect(exp).toMatchObject({ host: '127.0.20.2', port: 8080, labels: { app: 'http', data: 'internal' } });
    const notes = r.warnings.filter((w) => w.code === 'ignored-server-fields');
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatchObject({ file: 'peers/west/exports/http.yaml', line: lineOf(exported, 'status:') });
    expect(notes[0]!.message).toMatch(/status, metadata\.uid, metadata\.resourceVersion, metadata\.generation, metadata\.creationTimestamp, metadata\.managedFields/);
  });

  it('clgo validate --strict: the server-fields note does not fail CI; a peer labelling itself does', async () => {
    const root = await mkdtemp(join(tmpdir(), 'clgo-conformance-'));
    try {
      const write = async (edits: Record<string, string>): Promise<string> => {
        const dir = await mkdtemp(join(root, 'case-'));
        for (const [path, text] of new Map([...example, ...Object.entries(edits)])) {
          await mkdir(dirname(join(dir, path)), { recursive: true });
          await writeFile(join(dir, path), text);
        }
        return dir;
      };
      const exported = example.get('peers/west/exports/iperf3.yaml')!.replace('  name: iperf3\n', '  name: iperf3\n  uid: 0f4f6c1e\n  resourceVersion: "7"\n') + 'status:\n  conditions: []\n';
      const noted = await runClgo('validate', await write({ 'peers/west/exports/iperf3.yaml': exported }), '--strict');
      expect(noted.code, noted.out + noted.err).toBe(0);
      expect(noted.out + noted.err).toMatch(/ignored here/);
      const labelled = example.get('peers/edge/peer.yaml')!.replace('  name: edge\n', '  name: edge\n  labels:\n    tier: core\n');
      const selfLabelled = await runClgo('validate', await write({ 'peers/edge/peer.yaml': labelled }), '--strict');
      expect(selfLabelled.code).toBe(1);
      expect(selfLabelled.out + selfLabelled.err).toMatch(/feed no policy decision/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('two imports on one port in two namespaces: both valid, distinct listen ports, the same in every load; targetPort kept', () => {
    const second = IMPORT('metrics', 'monitoring', '  port: 8080\n  sources:\n    - peer: west\n      exportName: http\n      exportNamespace: web\n');
    const pinned = IMPORT('admin', 'ops', '  port: 8080\n  targetPort: 18080\n  sources:\n    - peer: west\n      exportName: http\n      exportNamespace: web\n');
    const r = ok(load({ 'peers/east/imports/metrics.yaml': second, 'peers/east/imports/admin.yaml': pinned }));
    const east = r.fabric.peers.find((p) => p.name === 'east')!;
    const port = (ref: string) => east.imports.find((i) => `${i.namespace}/${i.name}` === ref)!.listenPort;
    // monitoring/metrics sorts before web/http: it keeps 8080, web/http gets a derived port.
    expect(port('monitoring/metrics')).toBe(8080);
    expect(port('web/http')).toBeGreaterThanOrEqual(LEASE_RANGE.first);
    expect(port('web/http')).toBeLessThan(LEASE_RANGE.first + LEASE_RANGE.size);
    expect(port('ops/admin')).toBe(18080);
    expect(new Set(east.imports.map((i) => i.listenPort)).size).toBe(east.imports.length);
    // The slice (what xDS, the Node data plane and the kube Services use) carries the same port.
    expect(sliceAll(r.fabric).get('east')!.imports.find((i) => i.name === 'http')!.listenPort).toBe(port('web/http'));
    // Deterministic: another load, files in another order, and an incremental load agree.
    const reversed = new Map([...new Map(example).set('peers/east/imports/metrics.yaml', second).set('peers/east/imports/admin.yaml', pinned)].reverse());
    const again = ok(loadFabricFiles(reversed));
    expect(again.fabric.peers.find((p) => p.name === 'east')!.imports.map((i) => i.listenPort)).toEqual(east.imports.map((i) => i.listenPort));
    const cache = new ParseCache();
    ok(loadFabricFiles(example, { cache }));
    const incremental = ok(loadFabricFiles(reversed, { cache }));
    expect(incremental.fabric.peers.find((p) => p.name === 'east')!.imports.map((i) => i.listenPort)).toEqual(east.imports.map((i) => i.listenPort));
  });

  it('sources: [] is accepted with a warning (ClusterLink creates the Service; every connection fails)', () => {
    const text = IMPORT('http', 'web', '  port: 8080\n  sources: []\n');
    const r = ok(load({ 'peers/edge/imports/http.yaml': text }));
    expect(r.fabric.peers.find((p) => p.name === 'edge')!.imports.find((i) => i.name === 'http')!.sources).toEqual([]);
    expect(find(r.warnings, 'import-no-sources')).toMatchObject({ file: 'peers/edge/imports/http.yaml', line: lineOf(text, 'sources') });
  });

  it('exportName / exportNamespace empty or absent fall back to the import\'s own name and namespace', () => {
    const absent = IMPORT('http', 'web', '  port: 8080\n  sources:\n    - peer: west\n');
    const empty = IMPORT('http', 'web', '  port: 8080\n  sources:\n    - peer: west\n      exportName: ""\n      exportNamespace: ""\n');
    for (const text of [absent, empty]) {
      const r = ok(load({ 'peers/edge/imports/http.yaml': text }));
      const src = sliceAll(r.fabric).get('edge')!.imports.find((i) => i.name === 'http')!.sources[0]!;
      expect(src).toMatchObject({ peer: 'west', exportName: 'http', exportNamespace: 'web', resolved: true });
    }
  });

  it('import.clusterlink.net/merge is refused with the reason, at the label', () => {
    const text = IMPORT('http', 'web', '  port: 8080\n  sources:\n    - peer: west\n      exportName: http\n      exportNamespace: web\n', '  labels:\n    import.clusterlink.net/merge: "true"\n');
    const r = load({ 'peers/edge/imports/http.yaml': text });
    expect(r.ok).toBe(false);
    const e = find(r.ok ? [] : r.errors, 'unsupported');
    expect(e).toMatchObject({ file: 'peers/edge/imports/http.yaml', line: lineOf(text, 'import.clusterlink.net/merge') });
    expect(e!.message).toMatch(/merg.*not supported.*Service/);
  });

  it('names up to 253 characters (DNS subdomain) where Kubernetes allows them; an Import stays a Service name', () => {
    const long = `allow-${'a'.repeat(54)}.example.policy`; // 75 characters, as in ClusterLink's own tests
    expect(long.length).toBe(75);
    const policy = DENY_FROM_EAST_JSON.replace('deny-from-east', long);
    const r = ok(load({ 'peers/west/policies/long.json': policy }));
    expect(r.fabric.peers.find((p) => p.name === 'west')!.policies.map((p) => p.name)).toContain(long);
    const tooLong = load({ 'peers/west/policies/long.json': DENY_FROM_EAST_JSON.replace('deny-from-east', 'x'.repeat(254)) });
    expect(tooLong.ok).toBe(false);
    const longImport = load({ 'peers/edge/imports/http.yaml': IMPORT('h'.repeat(64), 'web', '  port: 8080\n  sources:\n    - peer: west\n      exportName: http\n      exportNamespace: web\n') });
    expect(longImport.ok ? [] : longImport.errors.map((e) => e.path)).toContain('metadata.name');
  });

  it('lbScheme is ClusterLink\'s lowercase round-robin | random | static; workloadSets stay refused', () => {
    const imp = (scheme: string) => IMPORT('http', 'web', `  port: 8080\n  lbScheme: ${scheme}\n  sources:\n    - peer: west\n      exportName: http\n      exportNamespace: web\n`);
    for (const scheme of ['round-robin', 'random', 'static']) expect(load({ 'peers/edge/imports/http.yaml': imp(scheme) }).ok, scheme).toBe(true);
    expect(load({ 'peers/edge/imports/http.yaml': imp('RoundRobin') }).ok).toBe(false);
    const sets = load({ 'peers/west/policies/sets.json': DENY_FROM_EAST_JSON.replace('"workloadSelector": {}', '"workloadSets": ["all"]') });
    expect(sets.ok ? [] : sets.errors.map((e) => e.message)).toEqual([expect.stringMatching(/workloadSets are not supported/)]);
  });
});

describe('peer names that are DNS subdomains (cluster17.us-east)', () => {
  let server: Server | null = null;
  afterAll(() => server?.close());

  it('load from their directory, get a certificate with that SAN, verify, and serve TLS under that SNI', async () => {
    const name = 'cluster17.us-east';
    const ca = await createCertificateAuthority({ fabricName: 'example' });
    const cert = await issuePeerCertificate({ peerName: name, fabricName: 'example', ca });
    const fabric = example.get('fabric.yaml')!.replace(/(caCertificates:\n)/, `$1    - |\n${ca.certificatePem.trim().split('\n').map((l) => `      ${l}`).join('\n')}\n`);
    const peerYaml = `apiVersion: clusterlink.net/v1alpha1\nkind: Peer\nmetadata:\n  name: ${name}\nspec:\n  gateways:\n    - host: 127.0.190.40\n      port: 443\n`;
    const importYaml = IMPORT('http', 'web', '  port: 8080\n  sources:\n    - peer: west\n      exportName: http\n      exportNamespace: web\n');
    const r = ok(load({ 'fabric.yaml': fabric, [`peers/${name}/peer.yaml`]: peerYaml, [`peers/${name}/peer.pem`]: cert.certificatePem, [`peers/${name}/imports/http.yaml`]: importYaml }));
    const slices = sliceAll(r.fabric);
    // west sees it as an importer of web/http, and verifies its certificate as that peer.
    const west = slices.get('west')!;
    expect(west.exports.find((e) => e.name === 'http')!.importers).toContain(name);
    const verified = verifyPeer([toDer(cert.certificatePem)], west);
    expect(verified).toMatchObject({ ok: true, peer: name });
    // A TLS client checking the SNI name against the certificate's DNS SAN accepts it.
    server = createServer({ key: cert.privateKeyPem, cert: cert.certificatePem }, (s) => s.end('ok'));
    server.listen(0, '127.0.190.41');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;
    const socket = connect({ host: '127.0.190.41', port, servername: name, ca: ca.certificatePem });
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    expect(chunk.toString()).toBe('ok');
    expect(socket.authorized).toBe(true);
    socket.destroy();
  });
});
