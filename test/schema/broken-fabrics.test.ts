// The broken-fabric corpus: fabric-example/ with exactly one defect each, validated through the
// real CLI (`clgo validate --format json`, in-process). Each case pins the exit code, the file and
// line a user is sent to, and what the message says.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../reconciler/cli.ts';
import { EXAMPLE_DIR } from '../../reconciler/demo/fresh-fabric.ts';
import { createCertificateAuthority, issuePeerCertificate } from '../../reconciler/pki/index.ts';
import { readFabricDir } from '../../schema/read-dir.ts';

type Files = Map<string, string>;
interface Case {
  name: string;
  mutate: (files: Files) => void | Promise<void>;
  file: string;
  /** The expected line: the first line of the mutated file containing this text (or a number). */
  at: string | number;
  message: RegExp;
  exit?: number;
  strict?: boolean;
  severity?: 'error' | 'warning';
}

let root: string;
let base: Files;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'clgo-corpus-'));
  const raw = await readFabricDir(EXAMPLE_DIR);
  base = new Map([...raw].map(([k, v]) => [k, Buffer.from(v).toString('utf8')]));
});
afterAll(async () => rm(root, { recursive: true, force: true }));

const edit = (path: string, from: string | RegExp, to: string) => (files: Files) => {
  const text = files.get(path);
  if (text === undefined) throw new Error(`no ${path}`);
  const next = text.replace(from, to);
  if (next === text) throw new Error(`mutation did not apply to ${path}: ${String(from)}`);
  files.set(path, next);
};
const add = (path: string, text: string) => (files: Files) => void files.set(path, text);
const remove = (path: string) => (files: Files) => void files.delete(path);

const POLICY = (extra: string): string => `apiVersion: clusterlink.net/v1alpha1
kind: AccessPolicy
metadata:
  name: extra
  namespace: perf
spec:
  action: allow
${extra}`;

const cases: Case[] = [
  { name: 'YAML syntax error', mutate: edit('peers/west/exports/http.yaml', 'port: 8080', 'port: [8080'), file: 'peers/west/exports/http.yaml', at: 13, message: /YAML syntax error/i },
  { name: 'unknown field with a suggestion', mutate: edit('peers/west/exports/http.yaml', 'host:', 'hots:'), file: 'peers/west/exports/http.yaml', at: 'hots:', message: /hots.*did you mean.*host|unknown field/i },
  { name: 'port out of range', mutate: edit('peers/west/exports/http.yaml', 'port: 8080', 'port: 70000'), file: 'peers/west/exports/http.yaml', at: 'port: 70000', message: /65535|port/i },
  { name: 'port not a number', mutate: edit('peers/west/exports/http.yaml', 'port: 8080', 'port: http'), file: 'peers/west/exports/http.yaml', at: 'port: http', message: /number/i },
  { name: 'kind in the wrong directory', mutate: edit('peers/west/exports/http.yaml', 'kind: Export', 'kind: Import'), file: 'peers/west/exports/http.yaml', at: 'kind: Import', message: /exports|belongs|directory/i },
  { name: 'unknown apiVersion', mutate: edit('peers/west/exports/http.yaml', 'clusterlink.net/v1alpha1', 'clusterlink.net/v2'), file: 'peers/west/exports/http.yaml', at: 'apiVersion', message: /apiVersion|v1alpha1/ },
  { name: 'unknown kind', mutate: edit('peers/west/exports/http.yaml', 'kind: Export', 'kind: Exprt'), file: 'peers/west/exports/http.yaml', at: 'kind: Exprt', message: /Exprt|kind/ },
  { name: 'missing metadata.name', mutate: edit('peers/west/exports/http.yaml', '  name: http\n', ''), file: 'peers/west/exports/http.yaml', at: 'metadata:', message: /name/ },
  { name: 'name not DNS-1123', mutate: edit('peers/west/exports/http.yaml', 'name: http', 'name: Http_Service'), file: 'peers/west/exports/http.yaml', at: 'Http_Service', message: /DNS|lower/i },
  { name: 'import names an unknown peer (did you mean)', mutate: edit('peers/east/imports/iperf3.yaml', '- peer: edge', '- peer: edgee'), file: 'peers/east/imports/iperf3.yaml', at: 'edgee', message: /edgee.*did you mean.*edge/ },
  { name: 'import names an unknown export', mutate: edit('peers/east/imports/iperf3.yaml', /exportName: iperf3\n {6}exportNamespace: perf\n$/, 'exportName: iperf4\n      exportNamespace: perf\n'), file: 'peers/east/imports/iperf3.yaml', at: '- peer: edge', message: /iperf4/ },
  { name: 'unknown lbScheme', mutate: edit('peers/east/imports/iperf3.yaml', 'lbScheme: round-robin', 'lbScheme: round-robbin'), file: 'peers/east/imports/iperf3.yaml', at: 'round-robbin', message: /round-robin|random|static/ },
  { name: 'import without sources', mutate: edit('peers/east/imports/http.yaml', / {2}sources:[\s\S]*$/, ''), file: 'peers/east/imports/http.yaml', at: 'spec:', message: /sources/ },
  { name: 'import with an empty source list (warning: ClusterLink accepts it, every connection fails)', mutate: edit('peers/east/imports/http.yaml', / {2}sources:[\s\S]*$/, '  sources: []\n'), file: 'peers/east/imports/http.yaml', at: 'sources: []', message: /no sources/, strict: true, severity: 'warning' },
  { name: 'duplicate import name in a namespace', mutate: (f) => f.set('peers/east/imports/http-copy.yaml', f.get('peers/east/imports/http.yaml')!.replace('port: 8080', 'port: 8081')), file: 'peers/east/imports/http.yaml', at: 'name: http', message: /duplicate Import web\/http.*http-copy\.yaml/ },
  {
    name: 'two imports on one targetPort',
    mutate: (f) => {
      edit('peers/east/imports/http.yaml', 'port: 8080', 'port: 8080\n  targetPort: 15000')(f);
      edit('peers/east/imports/iperf3.yaml', 'port: 5201', 'port: 5201\n  targetPort: 15000')(f);
    },
    file: 'peers/east/imports/http.yaml',
    at: 'targetPort: 15000',
    message: /targetPort 15000.*perf\/iperf3/,
  },
  { name: 'peer.yaml names another peer', mutate: edit('peers/west/peer.yaml', 'name: west', 'name: east'), file: 'peers/west/peer.yaml', at: 'name: east', message: /peers\/west/ },
  { name: 'object claims another owner', mutate: edit('peers/west/exports/http.yaml', '    app: http', '    app: http\n    clusterlink.net/peer: east'), file: 'peers/west/exports/http.yaml', at: 'clusterlink.net/peer: east', message: /belong|east/ },
  { name: 'policy action not allow/deny', mutate: edit('peers/east/policies/allow-iperf-clients.yaml', 'action: allow', 'action: permit'), file: 'peers/east/policies/allow-iperf-clients.yaml', at: 'action: permit', message: /allow|deny/ },
  { name: 'selector operator unknown', mutate: add('peers/east/policies/extra.yaml', POLICY('  from:\n    - workloadSelector:\n        matchExpressions:\n          - key: client.clusterlink.net/labels.app\n            operator: Contains\n            values: [x]\n  to:\n    - workloadSelector: {}\n')), file: 'peers/east/policies/extra.yaml', at: 'operator: Contains', message: /In|NotIn|Exists|operator/ },
  { name: 'In without values', mutate: add('peers/east/policies/extra.yaml', POLICY('  from:\n    - workloadSelector:\n        matchExpressions:\n          - key: client.clusterlink.net/labels.app\n            operator: In\n  to:\n    - workloadSelector: {}\n')), file: 'peers/east/policies/extra.yaml', at: 'operator: In', message: /values/ },
  { name: 'Exists with values', mutate: add('peers/east/policies/extra.yaml', POLICY('  from:\n    - workloadSelector:\n        matchExpressions:\n          - key: client.clusterlink.net/labels.app\n            operator: Exists\n            values: [x]\n  to:\n    - workloadSelector: {}\n')), file: 'peers/east/policies/extra.yaml', at: 'operator: Exists', message: /values/ },
  { name: 'workloadSets are not supported', mutate: add('peers/east/policies/extra.yaml', POLICY('  from:\n    - workloadSets: [frontends]\n  to:\n    - workloadSelector: {}\n')), file: 'peers/east/policies/extra.yaml', at: 'workloadSets', message: /workloadSets/ },
  { name: 'attribute ClusterLink does not define (warning, fatal with --strict)', mutate: add('peers/east/policies/extra.yaml', POLICY('  from:\n    - workloadSelector:\n        matchLabels:\n          client.example.com/team: a\n  to:\n    - workloadSelector: {}\n')), file: 'peers/east/policies/extra.yaml', at: 'client.example.com/team', message: /client\.example\.com\/team/, strict: true, severity: 'warning' },
  { name: 'private key in a YAML file', mutate: add('peers/west/exports/key.yaml', '# oops\nkey: |\n  -----BEGIN PRIVATE KEY-----\n  MC4CAQAwBQYDK2VwBCIEIA==\n  -----END PRIVATE KEY-----\n'), file: 'peers/west/exports/key.yaml', at: 'BEGIN PRIVATE KEY', message: /private key/ },
  { name: 'private key appended to peer.pem', mutate: (f) => f.set('peers/west/peer.pem', `${f.get('peers/west/peer.pem')!}-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n`), file: 'peers/west/peer.pem', at: 'PRIVATE KEY', message: /private key/ },
  { name: 'fabric.yaml missing', mutate: remove('fabric.yaml'), file: 'fabric.yaml', at: 1, message: /fabric\.yaml/ },
  { name: 'CA bundle empty', mutate: edit('fabric.yaml', /caCertificates:\n {4}- \|\n[\s\S]*?-----END CERTIFICATE-----\n/, 'caCertificates: []\n'), file: 'fabric.yaml', at: 'caCertificates', message: /CA|certificate|least/i },
  { name: 'CA entry not a PEM certificate', mutate: edit('fabric.yaml', /caCertificates:\n {4}- \|\n[\s\S]*?-----END CERTIFICATE-----\n/, 'caCertificates:\n    - not a certificate\n'), file: 'fabric.yaml', at: 'not a certificate', message: /PEM/ },
  { name: 'malformed revoked fingerprint', mutate: (f) => f.set('fabric.yaml', `${f.get('fabric.yaml')!.trimEnd()}\n  revoked:\n    fingerprints: [abc]\n`), file: 'fabric.yaml', at: 'fingerprints: [abc]', message: /SHA-256|fingerprint/ },
  { name: 'unknown signing key type', mutate: (f) => f.set('fabric.yaml', `${f.get('fabric.yaml')!.trimEnd()}\n  repo:\n    requireSignedCommits: true\n    allowedSigningKeys:\n      - name: admin\n        type: x509\n        publicKey: abc\n`), file: 'fabric.yaml', at: 'type: x509', message: /openpgp|ssh/ },
  { name: 'peer directory without peer.yaml', mutate: add('peers/north/exports/db.yaml', 'apiVersion: clusterlink.net/v1alpha1\nkind: Export\nmetadata:\n  name: db\n  namespace: data\nspec:\n  port: 5432\n'), file: 'peers/north/peer.yaml', at: 1, message: /peer\.yaml/ },
  { name: 'peer directory name not DNS-1123', mutate: (f) => f.set('peers/North_1/peer.yaml', f.get('peers/west/peer.yaml')!.replace('name: west', 'name: North_1')), file: 'peers/North_1/peer.yaml', at: 1, message: /DNS-1123/ },
  { name: 'gateway port 0', mutate: edit('peers/west/peer.yaml', 'port: 4443', 'port: 0'), file: 'peers/west/peer.yaml', at: 'port: 0', message: /port|1/ },
  { name: 'duplicate key in a mapping', mutate: edit('peers/west/exports/http.yaml', '  port: 8080', '  port: 8080\n  port: 8081'), file: 'peers/west/exports/http.yaml', at: 'port: 8081', message: /unique|duplicate/i },
  { name: 'second document of a multi-document file is invalid', mutate: (f) => f.set('peers/west/exports/http.yaml', `${f.get('peers/west/exports/http.yaml')!}---\napiVersion: clusterlink.net/v1alpha1\nkind: Export\nmetadata:\n  name: metrics\n  namespace: web\nspec:\n  port: -1\n`), file: 'peers/west/exports/http.yaml', at: 'port: -1', message: /port|0|greater/i },
  { name: 'peer certificate signed by another CA', mutate: async (f) => {
      const ca = await createCertificateAuthority({ fabricName: 'example' });
      const cert = await issuePeerCertificate({ peerName: 'west', fabricName: 'example', ca });
      f.set('peers/west/peer.pem', cert.certificatePem);
    }, file: 'peers/west/peer.pem', at: 1, message: /CA|chain|signed/i },
  { name: 'peer certificate unreadable', mutate: add('peers/west/peer.pem', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), file: 'peers/west/peer.pem', at: 1, message: /parse|certificate/i },
  { name: 'peer certificate naming another peer', mutate: (f) => f.set('peers/west/peer.pem', f.get('peers/east/peer.pem')!), file: 'peers/west/peer.pem', at: 1, message: /east|SAN|name/i },
];

async function validateCase(files: Files, strict: boolean): Promise<{ code: number; report: { ok: boolean; errors: Array<{ file: string; line: number; message: string; hint: string; severity: string }>; warnings: Array<{ file: string; line: number; message: string; hint: string; severity: string }> } }> {
  const dir = await mkdtemp(join(root, 'case-'));
  for (const [path, text] of files) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  let out = '';
  const stdout = new Writable({ write: (c, _e, cb) => ((out += c.toString()), cb()) });
  const stderr = new Writable({ write: (_c, _e, cb) => cb() });
  const code = await main(['node', 'clgo', 'validate', dir, '--format', 'json', ...(strict ? ['--strict'] : [])], { stdout, stderr });
  const report = JSON.parse(out) as Awaited<ReturnType<typeof validateCase>>['report'];
  // Paths are printed relative to the working directory: strip the case directory.
  const prefix = `${join(dir).replace(`${process.cwd()}/`, '')}/`;
  for (const d of [...report.errors, ...report.warnings]) d.file = d.file.startsWith(prefix) ? d.file.slice(prefix.length) : d.file.replace(/^.*?case-[^/]+\//, '');
  return { code, report };
}

describe('clgo validate: the example fabric', () => {
  it('is valid (exit 0, no errors)', async () => {
    const { code, report } = await validateCase(new Map(base), true);
    expect(report.errors).toEqual([]);
    expect(code).toBe(0);
  });
});

describe('clgo validate: broken fabrics (one defect each)', () => {
  it('has at least 30 cases', () => expect(cases.length).toBeGreaterThanOrEqual(30));
  for (const c of cases) {
    it(c.name, async () => {
      const files = new Map(base);
      await c.mutate(files);
      const { code, report } = await validateCase(files, c.strict === true);
      expect(code).toBe(c.exit ?? 1);
      const pool = c.severity === 'warning' ? report.warnings : report.errors;
      const text = files.get(c.file) ?? '';
      const line = typeof c.at === 'number' ? c.at : text.split('\n').findIndex((l) => l.includes(c.at as string)) + 1;
      expect(line, `marker "${String(c.at)}" not found in ${c.file}`).toBeGreaterThan(0);
      const hit = pool.find((d) => d.file === c.file && d.line === line && c.message.test(`${d.message} ${d.hint}`));
      expect(hit, `expected ${c.severity ?? 'error'} at ${c.file}:${line} matching ${c.message}; got:\n${pool.map((d) => `${d.file}:${d.line}: ${d.message}`).join('\n')}`).toBeDefined();
      expect(hit!.hint.length).toBeGreaterThan(0);
    });
  }
});
