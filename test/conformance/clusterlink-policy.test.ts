// ClusterLink conformance, decisions: one table row per rule of ClusterLink's policy engine
// (clusterlink-net/clusterlink pkg/controlplane/authz/manager.go and connectivitypdp/), each run
// through the real path: YAML files → loader → slice → the Authorizer the data planes ask
// (egress on the importing peer, ingress on the exporting one, with real peer certificates).
// docs/policy.md lists the same rules side by side with ClusterLink's code.
import { beforeAll, describe, expect, it } from 'vitest';
import type { ClientAttributes } from '../../protocol/contracts.ts';
import { toDer } from '../../reconciler/pki/encoding.ts';
import { createCertificateAuthority, issuePeerCertificate } from '../../reconciler/pki/issue.ts';
import { renderFabricYaml } from '../../reconciler/pki/repo.ts';
import { explainPath, explanationToText } from '../../reconciler/policy/explain-path.ts';
import { sliceAll } from '../../reconciler/slice/slice.ts';
import { createAuthorizer } from '../../reconciler/xds/authz.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import type { FabricModel } from '../../schema/model.ts';

/** ClusterLink's own sample peer name: a DNS subdomain. It imports shop/db from west. */
const IMPORTER = 'cluster17.us-east';
const EXPORTER = 'west';
/** A second importer of shop/db, attested tier=edge. */
const EDGE = 'edge';

const certs = new Map<string, string>();
let base: Map<string, string>;

beforeAll(async () => {
  const ca = await createCertificateAuthority({ fabricName: 'conformance' });
  for (const peer of [IMPORTER, EXPORTER, EDGE]) certs.set(peer, (await issuePeerCertificate({ peerName: peer, fabricName: 'conformance', ca })).certificatePem);
  const attested = {
    [IMPORTER]: { labels: { tier: 'core', region: 'us-east' } },
    [EXPORTER]: { labels: { tier: 'core', region: 'us-west' } },
    [EDGE]: { labels: { tier: 'edge' } },
  };
  base = new Map<string, string>([['fabric.yaml', renderFabricYaml('conformance', [ca.certificatePem], attested)]]);
  for (const [i, peer] of [IMPORTER, EXPORTER, EDGE].entries()) {
    base.set(`peers/${peer}/peer.yaml`, `apiVersion: clusterlink.net/v1alpha1\nkind: Peer\nmetadata:\n  name: ${peer}\nspec:\n  gateways:\n    - host: 127.0.190.${i + 1}\n      port: 443\n`);
    base.set(`peers/${peer}/peer.pem`, certs.get(peer)!);
  }
  base.set(`peers/${EXPORTER}/exports/db.yaml`, 'apiVersion: clusterlink.net/v1alpha1\nkind: Export\nmetadata:\n  name: db\n  namespace: shop\n  labels:\n    app: db-export\nspec:\n  host: 127.0.190.10\n  port: 5432\n');
  for (const peer of [IMPORTER, EDGE]) {
    base.set(`peers/${peer}/imports/db.yaml`, 'apiVersion: clusterlink.net/v1alpha1\nkind: Import\nmetadata:\n  name: db\n  namespace: shop\n  labels:\n    app: db-import\nspec:\n  port: 5432\n  sources:\n    - peer: west\n      exportName: db\n      exportNamespace: shop\n');
  }
});

type Selector = Record<string, unknown>;
interface PolicySpec {
  name: string;
  action: 'allow' | 'deny';
  privileged?: boolean;
  namespace?: string;
  from?: Selector[];
  to?: Selector[];
}

/** An AccessPolicy / PrivilegedAccessPolicy as ClusterLink writes it (JSON is YAML). */
function policyDoc(p: PolicySpec): string {
  const kind = p.privileged ? 'PrivilegedAccessPolicy' : 'AccessPolicy';
  const metadata = p.privileged ? { name: p.name } : { name: p.name, namespace: p.namespace ?? 'shop' };
  const wrap = (list: Selector[] | undefined) => (list ?? [{}]).map((s) => ({ workloadSelector: s }));
  return JSON.stringify({ apiVersion: 'clusterlink.net/v1alpha1', kind, metadata, spec: { action: p.action, from: wrap(p.from), to: wrap(p.to) } }, null, 2);
}

const ml = (labels: Record<string, string>): Selector => ({ matchLabels: labels });
const expr = (key: string, operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist', values?: string[]): Selector => ({ matchExpressions: [{ key, operator, ...(values ? { values } : {}) }] });
const ALLOW_ALL: PolicySpec = { name: 'allow-all', action: 'allow' };
const KNOWN: ClientAttributes = { namespace: 'shop', serviceAccount: 'api', labels: { app: 'api' } };

interface Row {
  rule: string;
  name: string;
  /** egress: decided on the importer (`on`, default IMPORTER) for its import; ingress: on west for the export. */
  direction: 'egress' | 'ingress';
  /** The importing peer (egress: whose policies decide; ingress: whose certificate connects). */
  importer?: string;
  /** The deciding peer's policies. */
  policies: PolicySpec[];
  /** null: unknown client (no Pod for the source address; at ingress, no attribute headers). */
  client: ClientAttributes | null;
  /** Extra files (e.g. a peer labelling itself). */
  files?: Record<string, string>;
  expected: 'allow' | 'deny';
  /** The deciding policy (or `unknown-client` / `default`). */
  by?: string;
}

const ROWS: Row[] = [
  // Egress source attributes: the importing (local) peer's own name and labels, besides the client's (manager.go getSrcAttributes).
  { rule: 'egress src: local peer name', name: 'deny from the local peer by name', direction: 'egress', policies: [ALLOW_ALL, { name: 'deny-self', privileged: true, action: 'deny', from: [ml({ 'peer.clusterlink.net/name': IMPORTER })] }], client: KNOWN, expected: 'deny', by: 'deny-self' },
  { rule: 'egress src: local peer name', name: 'allow from the local peer by name', direction: 'egress', policies: [{ name: 'from-self', action: 'allow', from: [ml({ 'peer.clusterlink.net/name': IMPORTER })] }], client: KNOWN, expected: 'allow', by: 'shop/from-self' },
  { rule: 'egress src: local peer labels', name: 'allow from tier=core (attested for the importer)', direction: 'egress', policies: [{ name: 'from-core', action: 'allow', from: [ml({ 'peer.clusterlink.net/labels.tier': 'core' })] }], client: KNOWN, expected: 'allow', by: 'shop/from-core' },
  { rule: 'egress src: local peer labels', name: 'the same policy on edge (tier=edge) does not match', direction: 'egress', importer: EDGE, policies: [{ name: 'from-core', action: 'allow', from: [ml({ 'peer.clusterlink.net/labels.tier': 'core' })] }], client: KNOWN, expected: 'deny', by: 'default' },
  // Egress destination attributes: the exporting peer's name and labels, and the Import's labels as export labels.
  { rule: 'egress dst: exporting peer', name: 'to the exporter by name', direction: 'egress', policies: [{ name: 'to-west', action: 'allow', to: [ml({ 'peer.clusterlink.net/name': EXPORTER })] }], client: KNOWN, expected: 'allow', by: 'shop/to-west' },
  { rule: 'egress dst: exporting peer', name: 'to the exporter by attested label', direction: 'egress', policies: [{ name: 'to-us-west', action: 'allow', to: [ml({ 'peer.clusterlink.net/labels.region': 'us-west' })] }], client: KNOWN, expected: 'allow', by: 'shop/to-us-west' },
  { rule: 'egress dst: export labels are the Import\'s', name: 'the Import\'s label matches', direction: 'egress', policies: [{ name: 'to-import-label', action: 'allow', to: [ml({ 'export.clusterlink.net/labels.app': 'db-import' })] }], client: KNOWN, expected: 'allow', by: 'shop/to-import-label' },
  { rule: 'egress dst: export labels are the Import\'s', name: 'the Export\'s label does not, at egress', direction: 'egress', policies: [{ name: 'to-export-label', action: 'allow', to: [ml({ 'export.clusterlink.net/labels.app': 'db-export' })] }], client: KNOWN, expected: 'deny', by: 'default' },
  // Ingress: source = the importing peer (name from its certificate) and its attested labels; destination = the export and the local peer.
  { rule: 'ingress src: importing peer', name: 'from the importer by name', direction: 'ingress', policies: [{ name: 'from-importer', action: 'allow', from: [ml({ 'peer.clusterlink.net/name': IMPORTER })] }], client: KNOWN, expected: 'allow', by: 'shop/from-importer' },
  { rule: 'ingress src: importing peer', name: 'from tier=core admits the importer', direction: 'ingress', policies: [{ name: 'from-core', action: 'allow', from: [ml({ 'peer.clusterlink.net/labels.tier': 'core' })] }], client: KNOWN, expected: 'allow', by: 'shop/from-core' },
  { rule: 'ingress src: importing peer', name: 'from tier=core refuses edge', direction: 'ingress', importer: EDGE, policies: [{ name: 'from-core', action: 'allow', from: [ml({ 'peer.clusterlink.net/labels.tier': 'core' })] }], client: KNOWN, expected: 'deny', by: 'default' },
  { rule: 'ingress dst: local peer', name: 'to the local (exporting) peer by name', direction: 'ingress', policies: [{ name: 'to-self', action: 'allow', to: [ml({ 'peer.clusterlink.net/name': EXPORTER })] }], client: KNOWN, expected: 'allow', by: 'shop/to-self' },
  { rule: 'ingress dst: local peer', name: 'to the local peer by attested label', direction: 'ingress', policies: [ALLOW_ALL, { name: 'deny-to-core', privileged: true, action: 'deny', to: [ml({ 'peer.clusterlink.net/labels.tier': 'core' })] }], client: KNOWN, expected: 'deny', by: 'deny-to-core' },
  { rule: 'ingress dst: export labels are the Export\'s', name: 'the Export\'s label matches', direction: 'ingress', policies: [{ name: 'to-export-label', action: 'allow', to: [ml({ 'export.clusterlink.net/labels.app': 'db-export' })] }], client: KNOWN, expected: 'allow', by: 'shop/to-export-label' },
  { rule: 'ingress dst: export labels are the Export\'s', name: 'the Import\'s label does not, at ingress', direction: 'ingress', policies: [{ name: 'to-import-label', action: 'allow', to: [ml({ 'export.clusterlink.net/labels.app': 'db-import' })] }], client: KNOWN, expected: 'deny', by: 'default' },
  { rule: 'ingress src: client attributes', name: 'client attributes sent by the importer', direction: 'ingress', policies: [{ name: 'from-api', action: 'allow', from: [ml({ 'client.clusterlink.net/namespace': 'shop', 'client.clusterlink.net/service-account': 'api', 'client.clusterlink.net/labels.app': 'api' })] }], client: KNOWN, expected: 'allow', by: 'shop/from-api' },
  // Attribute-less clients (PDP.DependsOnClientAttrs): refused when any policy, either tier, any namespace, allow or deny, has a non-empty `from` selector.
  { rule: 'unknown client', name: 'only empty from selectors: decided by the policies', direction: 'egress', policies: [ALLOW_ALL], client: null, expected: 'allow', by: 'shop/allow-all' },
  { rule: 'unknown client', name: 'a deny policy of another namespace selects on from', direction: 'egress', policies: [ALLOW_ALL, { name: 'deny-batch', namespace: 'batch', action: 'deny', from: [ml({ 'client.clusterlink.net/labels.app': 'batch' })] }], client: null, expected: 'deny', by: 'unknown-client' },
  { rule: 'unknown client', name: 'a DoesNotExist selector counts', direction: 'egress', policies: [ALLOW_ALL, { name: 'no-untrusted', privileged: true, action: 'allow', from: [expr('client.clusterlink.net/labels.trust', 'DoesNotExist')] }], client: null, expected: 'deny', by: 'unknown-client' },
  { rule: 'unknown client', name: 'a known client is decided as usual', direction: 'egress', policies: [ALLOW_ALL, { name: 'deny-batch', namespace: 'batch', action: 'deny', from: [ml({ 'client.clusterlink.net/labels.app': 'batch' })] }], client: KNOWN, expected: 'allow', by: 'shop/allow-all' },
  { rule: 'unknown client', name: 'at ingress: no attribute headers and a from-peer policy', direction: 'ingress', policies: [{ name: 'from-importer', action: 'allow', from: [ml({ 'peer.clusterlink.net/name': IMPORTER })] }], client: null, expected: 'deny', by: 'unknown-client' },
  { rule: 'unknown client', name: 'at ingress: no attribute headers, only empty selectors', direction: 'ingress', policies: [ALLOW_ALL], client: null, expected: 'allow', by: 'shop/allow-all' },
  // Tiers and namespaces (connectivity_pdp.go Decide): privileged deny, privileged allow, user deny, user allow, default deny.
  { rule: 'tiers', name: 'privileged allow beats user deny', direction: 'egress', policies: [{ name: 'p-allow', privileged: true, action: 'allow' }, { name: 'u-deny', action: 'deny' }], client: KNOWN, expected: 'allow', by: 'p-allow' },
  { rule: 'tiers', name: 'privileged deny beats privileged allow', direction: 'egress', policies: [{ name: 'p-allow', privileged: true, action: 'allow' }, { name: 'p-deny', privileged: true, action: 'deny' }], client: KNOWN, expected: 'deny', by: 'p-deny' },
  { rule: 'tiers', name: 'user deny beats user allow', direction: 'egress', policies: [ALLOW_ALL, { name: 'u-deny', action: 'deny' }], client: KNOWN, expected: 'deny', by: 'shop/u-deny' },
  { rule: 'tiers', name: 'nothing matches: default deny', direction: 'egress', policies: [], client: KNOWN, expected: 'deny', by: 'default' },
  { rule: 'namespaces', name: 'egress: a user policy of another namespace does not count', direction: 'egress', policies: [{ name: 'allow-all', namespace: 'other', action: 'allow' }], client: KNOWN, expected: 'deny', by: 'default' },
  { rule: 'namespaces', name: 'ingress: user policies of the export\'s namespace count', direction: 'ingress', policies: [{ name: 'allow-all', namespace: 'shop', action: 'allow' }], client: KNOWN, expected: 'allow', by: 'shop/allow-all' },
  // Kubernetes label selector semantics (metav1.LabelSelectorAsSelector).
  { rule: 'selectors', name: 'NotIn holds for an absent attribute', direction: 'egress', policies: [{ name: 'notin', action: 'allow', from: [expr('client.clusterlink.net/labels.trust', 'NotIn', ['untrusted'])] }], client: KNOWN, expected: 'allow', by: 'shop/notin' },
  { rule: 'selectors', name: 'Exists fails for an absent attribute', direction: 'egress', policies: [{ name: 'exists', action: 'allow', from: [expr('client.clusterlink.net/labels.trust', 'Exists')] }], client: KNOWN, expected: 'deny', by: 'default' },
  { rule: 'selectors', name: 'entries of from are ORed, matchLabels ANDed', direction: 'egress', policies: [{ name: 'or', action: 'allow', from: [ml({ 'client.clusterlink.net/labels.app': 'api', 'client.clusterlink.net/namespace': 'other' }), ml({ 'client.clusterlink.net/service-account': 'api' })] }], client: KNOWN, expected: 'allow', by: 'shop/or' },
  // Issue 18 item 2: a peer cannot grant itself access by labelling itself in its own directory.
  {
    rule: 'peer labels are attested',
    name: 'edge labels itself tier=core in its peer.yaml: west still refuses it',
    direction: 'ingress',
    importer: EDGE,
    policies: [{ name: 'allow-core', action: 'allow', from: [ml({ 'peer.clusterlink.net/labels.tier': 'core' })] }],
    files: { 'peers/edge/peer.yaml': 'apiVersion: clusterlink.net/v1alpha1\nkind: Peer\nmetadata:\n  name: edge\n  labels:\n    tier: core\nspec:\n  gateways:\n    - host: 127.0.190.3\n      port: 443\n' },
    client: KNOWN,
    expected: 'deny',
    by: 'default',
  },
  {
    rule: 'peer labels are attested',
    name: 'the same label attested in fabric.yaml admits edge',
    direction: 'ingress',
    importer: EDGE,
    policies: [{ name: 'allow-core', action: 'allow', from: [ml({ 'peer.clusterlink.net/labels.tier': 'core' })] }],
    files: { 'fabric.yaml': 'ATTEST_EDGE_CORE' },
    client: KNOWN,
    expected: 'allow',
    by: 'shop/allow-core',
  },
];

function fabricWith(row: Row): { fabric: FabricModel; warnings: string[] } {
  const files = new Map(base);
  const decider = row.direction === 'egress' ? (row.importer ?? IMPORTER) : EXPORTER;
  row.policies.forEach((p, i) => files.set(`peers/${decider}/policies/p${i}.json`, policyDoc(p)));
  for (const [path, text] of Object.entries(row.files ?? {})) {
    files.set(path, text === 'ATTEST_EDGE_CORE' ? files.get('fabric.yaml')!.replace(/(edge:\n\s+labels:\n\s+tier:) edge/, '$1 core') : text);
  }
  const r = loadFabricFiles(files);
  if (!r.ok) throw new Error(`row "${row.name}" does not load: ${r.errors.map((e) => `${e.file}:${e.line} ${e.message}`).join('; ')}`);
  return { fabric: r.fabric, warnings: r.warnings.map((w) => `${w.code} ${w.file}`) };
}

describe('ClusterLink policy conformance (loader → slice → Authorizer)', () => {
  it.each(ROWS.map((r) => [`${r.rule}: ${r.name}`, r] as const))('%s', (_, row) => {
    const { fabric } = fabricWith(row);
    const slices = sliceAll(fabric);
    const importer = row.importer ?? IMPORTER;
    const decider = row.direction === 'egress' ? importer : EXPORTER;
    const authz = createAuthorizer({ slice: () => slices.get(decider)!, clientAttributes: () => row.client });
    let allowed: boolean;
    let by: string;
    if (row.direction === 'egress') {
      const v = authz.egress({ importNamespace: 'shop', importName: 'db', sourceAddress: '127.0.190.20', sourcePort: 40000 });
      allowed = v.allowed;
      const explained = authz.explainEgress({ importNamespace: 'shop', importName: 'db', sourceAddress: '127.0.190.20', sourcePort: 40000 }).sources[0]!.explanation;
      by = explained.policy ?? (/client attributes unknown/.test(explained.message) ? 'unknown-client' : 'default');
    } else {
      const v = authz.ingress({ peerCertificateDer: toDer(certs.get(importer)!), exportNamespace: 'shop', exportName: 'db', client: row.client ?? { labels: {} } });
      allowed = v.allowed;
      if (v.allowed) {
        expect(v.peer).toBe(importer);
        // An allowed ingress verdict carries no explanation: `clgo explain` names the deciding policy.
        const e = explainPath(fabric, importer, 'shop/db', row.client ?? { labels: {} });
        if ('error' in e) throw new Error(e.error);
        expect(e.candidates[0]!.ingress!.allowed).toBe(true);
        by = e.candidates[0]!.ingress!.policy ?? 'default';
      } else {
        by = v.explanation.policy ?? (/client attributes unknown/.test(v.explanation.message) ? 'unknown-client' : 'default');
      }
    }
    expect(allowed ? 'allow' : 'deny').toBe(row.expected);
    if (row.by !== undefined) expect(by).toBe(row.by);
  });

  it('covers every rule of docs/policy.md with an allow and a deny where both exist', () => {
    const rules = new Set(ROWS.map((r) => r.rule));
    expect(rules.size).toBeGreaterThanOrEqual(12);
    for (const rule of ['egress src: local peer name', 'unknown client', 'peer labels are attested', 'ingress dst: local peer']) {
      expect(ROWS.filter((r) => r.rule === rule).map((r) => r.expected)).toEqual(expect.arrayContaining(['allow', 'deny']));
    }
  });

  it('a peer labelling itself gets a warning that says the labels decide nothing', () => {
    const row = ROWS.find((r) => r.files?.['peers/edge/peer.yaml'])!;
    expect(fabricWith(row).warnings).toContain('unattested-peer-labels peers/edge/peer.yaml');
  });

  it('clgo explain shows the attributes that decided: the local peer, attested labels, the Import\'s labels', () => {
    const row: Row = { rule: '', name: 'explain', direction: 'egress', policies: [{ name: 'from-core', action: 'allow', from: [ml({ 'peer.clusterlink.net/labels.tier': 'core' })], to: [ml({ 'export.clusterlink.net/labels.app': 'db-import' })] }], client: KNOWN, expected: 'allow' };
    const { fabric } = fabricWith(row);
    const e = explainPath(fabric, IMPORTER, 'shop/db', KNOWN);
    if ('error' in e) throw new Error(e.error);
    expect(e.candidates[0]!.egress).toMatchObject({ allowed: true, policy: 'shop/from-core' });
    expect(e.candidates[0]!.egressAttributes!.src).toMatchObject({ 'peer.clusterlink.net/name': IMPORTER, 'peer.clusterlink.net/labels.tier': 'core' });
    expect(e.candidates[0]!.egressAttributes!.dst).toMatchObject({ 'export.clusterlink.net/labels.app': 'db-import', 'peer.clusterlink.net/name': EXPORTER });
    const text = explanationToText(e);
    expect(text).toMatch(/matched from\[0\] \{peer\.clusterlink\.net\/labels\.tier=core\}, to\[0\] \{export\.clusterlink\.net\/labels\.app=db-import\}/);
    // An unknown client: the refusal names the rule and the policy that triggers it.
    const unknown = explainPath(fabric, IMPORTER, 'shop/db', { labels: {} });
    if ('error' in unknown) throw new Error(unknown.error);
    expect(unknown.candidates[0]!.egress).toMatchObject({ allowed: false, reason: 'unknown-client', location: `peers/${IMPORTER}/policies/p0.json:1` });
    const unknownText = explanationToText(unknown);
    expect(unknownText).toMatch(/unknown client refused: a policy selects on source attributes \(peers\/cluster17\.us-east\/policies\/p0\.json:1\)/);
    // Where a side refuses, the attributes it saw: no client attributes, the local peer's attested labels.
    expect(unknownText).toMatch(/saw from \{peer\.clusterlink\.net\/name=cluster17\.us-east, peer\.clusterlink\.net\/labels\.tier=core \(fabric\.yaml\), peer\.clusterlink\.net\/labels\.region=us-east \(fabric\.yaml\)\} to \{export\.clusterlink\.net\/name=db, export\.clusterlink\.net\/namespace=shop, export\.clusterlink\.net\/labels\.app=db-import, /);
  });
});
