// The decision point, rule by rule (table-driven) and by property (fast-check).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LabelSelector, PolicyModel, WorkloadSetOrSelector } from '../../schema/model.ts';
import { ATTR, parseClientSpec, type AccessRequest } from './attributes.ts';
import { compilePolicies, decide, decideAttributes, tracePolicies } from './engine.ts';

let line = 1;
function policy(p: Partial<PolicyModel> & { name: string; action: 'allow' | 'deny' }): PolicyModel {
  const tier = p.tier ?? 'user';
  return {
    peer: 'west',
    tier,
    kind: tier === 'privileged' ? 'PrivilegedAccessPolicy' : 'AccessPolicy',
    namespace: tier === 'privileged' ? null : (p.namespace ?? 'default'),
    from: [{ workloadSelector: {} }],
    to: [{ workloadSelector: {} }],
    source: { file: `peers/west/policies/${p.name}.yaml`, line: line++, column: 1 },
    ...p,
  } as PolicyModel;
}
const sel = (s: LabelSelector) => ({ workloadSelector: s });

const request = (over: Partial<AccessRequest> = {}): AccessRequest => ({
  direction: 'ingress',
  namespace: 'default',
  self: 'west',
  selfLabels: { tier: 'core' },
  client: { namespace: 'web', serviceAccount: 'frontend', labels: { app: 'shop', tier: 'gold' } },
  peer: { name: 'east', labels: { region: 'eu' } },
  export: { name: 'http', namespace: 'default', labels: { team: 'a' } },
  ...over,
});

describe('policy engine rules', () => {
  const cases: Array<{ name: string; policies: PolicyModel[]; req?: Partial<AccessRequest>; allowed: boolean; tier: string; policy: string | null }> = [
    { name: 'no policies: default deny', policies: [], allowed: false, tier: 'default', policy: null },
    { name: 'empty selectors allow everything', policies: [policy({ name: 'all', action: 'allow' })], allowed: true, tier: 'user', policy: 'default/all' },
    { name: 'empty from list matches nothing', policies: [policy({ name: 'none', action: 'allow', from: [] })], allowed: false, tier: 'default', policy: null },
    { name: 'empty to list matches nothing', policies: [policy({ name: 'none', action: 'allow', to: [] })], allowed: false, tier: 'default', policy: null },
    { name: 'entry without workloadSelector matches nothing', policies: [policy({ name: 'sets', action: 'allow', from: [{ workloadSets: ['x'] }] })], allowed: false, tier: 'default', policy: null },
    {
      name: 'ingress: peer name is a source attribute',
      policies: [policy({ name: 'from-east', action: 'allow', from: [sel({ matchLabels: { [ATTR.peerName]: 'east' } })] })],
      allowed: true,
      tier: 'user',
      policy: 'default/from-east',
    },
    {
      name: 'egress: peer name is a destination attribute',
      policies: [policy({ name: 'to-east', action: 'allow', to: [sel({ matchLabels: { [ATTR.peerName]: 'east' } })] })],
      req: { direction: 'egress' },
      allowed: true,
      tier: 'user',
      policy: 'default/to-east',
    },
    {
      name: 'egress: a from-selector on the peer name never matches (the peer is the destination)',
      policies: [policy({ name: 'from-east', action: 'allow', from: [sel({ matchLabels: { [ATTR.peerName]: 'east' } })] })],
      req: { direction: 'egress' },
      allowed: false,
      tier: 'default',
      policy: null,
    },
    {
      name: 'matchLabels on client namespace, service account, labels',
      policies: [policy({ name: 'web', action: 'allow', from: [sel({ matchLabels: { [ATTR.clientNamespace]: 'web', [ATTR.clientServiceAccount]: 'frontend', [`${ATTR.clientLabelPrefix}app`]: 'shop' } })] })],
      allowed: true,
      tier: 'user',
      policy: 'default/web',
    },
    {
      name: 'one mismatching label fails the selector',
      policies: [policy({ name: 'web', action: 'allow', from: [sel({ matchLabels: { [ATTR.clientNamespace]: 'web', [`${ATTR.clientLabelPrefix}app`]: 'admin' } })] })],
      allowed: false,
      tier: 'default',
      policy: null,
    },
    { name: 'In', policies: [policy({ name: 'in', action: 'allow', from: [sel({ matchExpressions: [{ key: `${ATTR.clientLabelPrefix}tier`, operator: 'In', values: ['gold', 'silver'] }] })] })], allowed: true, tier: 'user', policy: 'default/in' },
    { name: 'In on an absent attribute fails', policies: [policy({ name: 'in', action: 'allow', from: [sel({ matchExpressions: [{ key: `${ATTR.clientLabelPrefix}zone`, operator: 'In', values: ['a'] }] })] })], allowed: false, tier: 'default', policy: null },
    { name: 'NotIn holds for an absent attribute', policies: [policy({ name: 'notin', action: 'allow', from: [sel({ matchExpressions: [{ key: `${ATTR.clientLabelPrefix}zone`, operator: 'NotIn', values: ['a'] }] })] })], allowed: true, tier: 'user', policy: 'default/notin' },
    { name: 'NotIn fails on a listed value', policies: [policy({ name: 'notin', action: 'allow', from: [sel({ matchExpressions: [{ key: `${ATTR.clientLabelPrefix}tier`, operator: 'NotIn', values: ['gold'] }] })] })], allowed: false, tier: 'default', policy: null },
    { name: 'Exists', policies: [policy({ name: 'ex', action: 'allow', to: [sel({ matchExpressions: [{ key: `${ATTR.exportLabelPrefix}team`, operator: 'Exists' }] })] })], allowed: true, tier: 'user', policy: 'default/ex' },
    { name: 'DoesNotExist', policies: [policy({ name: 'dne', action: 'allow', to: [sel({ matchExpressions: [{ key: `${ATTR.exportLabelPrefix}team`, operator: 'DoesNotExist' }] })] })], allowed: false, tier: 'default', policy: null },
    {
      name: 'user deny beats user allow',
      policies: [policy({ name: 'a-allow', action: 'allow' }), policy({ name: 'z-deny', action: 'deny' })],
      allowed: false,
      tier: 'user',
      policy: 'default/z-deny',
    },
    {
      name: 'privileged allow beats user deny',
      policies: [policy({ name: 'deny', action: 'deny' }), policy({ name: 'admin-allow', action: 'allow', tier: 'privileged' })],
      allowed: true,
      tier: 'privileged',
      policy: 'admin-allow',
    },
    {
      name: 'privileged deny beats privileged allow',
      policies: [policy({ name: 'p-allow', action: 'allow', tier: 'privileged' }), policy({ name: 'p-deny', action: 'deny', tier: 'privileged' })],
      allowed: false,
      tier: 'privileged',
      policy: 'p-deny',
    },
    {
      name: "user policies of another namespace do not count",
      policies: [policy({ name: 'other', action: 'allow', namespace: 'other' })],
      allowed: false,
      tier: 'default',
      policy: null,
    },
    {
      name: 'privileged policies apply in every namespace',
      policies: [policy({ name: 'all', action: 'allow', tier: 'privileged' })],
      req: { namespace: 'anything' },
      allowed: true,
      tier: 'privileged',
      policy: 'all',
    },
    {
      name: 'unknown client (no attributes): only selectors not needing client attributes match',
      policies: [
        policy({ name: 'needs-ns', action: 'allow', from: [sel({ matchExpressions: [{ key: ATTR.clientNamespace, operator: 'Exists' }] })] }),
        policy({ name: 'deny-known', action: 'deny', from: [sel({ matchLabels: { [ATTR.clientNamespace]: 'web' } })] }),
      ],
      req: { client: { labels: {} } },
      allowed: false,
      tier: 'default',
      policy: null,
    },
    {
      name: 'export name and namespace attributes',
      policies: [policy({ name: 'http-only', action: 'allow', to: [sel({ matchLabels: { [ATTR.exportName]: 'http', [ATTR.exportNamespace]: 'default' } })] })],
      allowed: true,
      tier: 'user',
      policy: 'default/http-only',
    },
    {
      name: 'any entry of a list may match',
      policies: [policy({ name: 'two', action: 'allow', to: [sel({ matchLabels: { [ATTR.exportName]: 'ssh' } }), sel({ matchLabels: { [`${ATTR.exportLabelPrefix}team`]: 'a' } })] })],
      allowed: true,
      tier: 'user',
      policy: 'default/two',
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const d = decide(compilePolicies(c.policies), request(c.req));
      expect({ allowed: d.allowed, tier: d.tier, policy: d.policy }).toEqual({ allowed: c.allowed, tier: c.tier, policy: c.policy });
      if (d.policy) expect(d.location).toMatch(/^peers\/west\/policies\/.+\.yaml:\d+$/);
    });
  }

  it('explains which entries matched and where the policy is written', () => {
    const p = policy({ name: 'web', action: 'allow', from: [sel({ matchLabels: { [ATTR.clientNamespace]: 'batch' } }), sel({ matchLabels: { [ATTR.clientNamespace]: 'web' } })] });
    const d = decide(compilePolicies([p]), request());
    expect(d.matched).toBe('from[1] {client.clusterlink.net/namespace=web}, to[0] {} (matches everything)');
    expect(d.message).toBe(`ingress from east for default/http allowed by user policy default/web (${p.source.file}:${p.source.line})`);
  });

  it('traces why each policy did not match', () => {
    const policies = [
      policy({ name: 'batch-only', action: 'allow', from: [sel({ matchLabels: { [ATTR.clientNamespace]: 'batch' } })] }),
      policy({ name: 'elsewhere', action: 'allow', namespace: 'other' }),
    ];
    const trace = tracePolicies(policies, request());
    expect(trace.map((t) => [t.policy, t.matches, t.reason])).toEqual([
      ['default/batch-only', false, 'from[0] needs client.clusterlink.net/namespace=batch (is web)'],
      ['other/elsewhere', false, 'user policy of namespace other, request is in default'],
    ]);
  });

  it('parses client specs from the command line and rejects unknown keys', () => {
    expect(parseClientSpec('namespace=web,serviceAccount=fe,labels.app=shop')).toEqual({ ok: true, client: { namespace: 'web', serviceAccount: 'fe', labels: { app: 'shop' } } });
    expect(parseClientSpec('')).toEqual({ ok: true, client: { labels: {} } });
    expect(parseClientSpec('colour=red').ok).toBe(false);
    expect(parseClientSpec('namespace').ok).toBe(false);
  });
});

// ---- properties ----------------------------------------------------------------------------

const KEYS = [ATTR.peerName, ATTR.exportName, ATTR.clientNamespace, `${ATTR.clientLabelPrefix}app`, `${ATTR.exportLabelPrefix}team`];
const VALUES = ['a', 'b', 'c'];
const arbSelector = fc.record(
  {
    matchLabels: fc.dictionary(fc.constantFrom(...KEYS), fc.constantFrom(...VALUES), { maxKeys: 2 }),
    matchExpressions: fc.array(
      fc.oneof(
        fc.record({ key: fc.constantFrom(...KEYS), operator: fc.constantFrom('In' as const, 'NotIn' as const), values: fc.uniqueArray(fc.constantFrom(...VALUES), { minLength: 1, maxLength: 2 }) }),
        fc.record({ key: fc.constantFrom(...KEYS), operator: fc.constantFrom('Exists' as const, 'DoesNotExist' as const) }),
      ),
      { maxLength: 2 },
    ),
  },
  { requiredKeys: [] },
);
const arbEntries: fc.Arbitrary<WorkloadSetOrSelector[]> = fc.array(fc.oneof({ weight: 9, arbitrary: arbSelector.map((s): WorkloadSetOrSelector => sel(s as LabelSelector)) }, { weight: 1, arbitrary: fc.constant<WorkloadSetOrSelector>({ workloadSets: ['x'] }) }), { minLength: 0, maxLength: 2 });
const arbPolicies = fc
  .array(
    fc.record({
      tier: fc.constantFrom('privileged' as const, 'user' as const),
      action: fc.constantFrom('allow' as const, 'deny' as const),
      namespace: fc.constantFrom('a', 'b'),
      from: arbEntries,
      to: arbEntries,
    }),
    { maxLength: 12 },
  )
  .map((list) => list.map((p, i) => policy({ ...p, name: `p${i}` })));
const arbAttrs = fc.dictionary(fc.constantFrom(...KEYS), fc.constantFrom(...VALUES), { maxKeys: KEYS.length });

/** The rules written as directly as possible: the reference the indexed engine must agree with. */
function reference(policies: PolicyModel[], ns: string, src: Record<string, string>, dst: Record<string, string>): { allowed: boolean; tier: string } {
  const holds = (s: LabelSelector, attrs: Record<string, string>): boolean =>
    Object.entries(s.matchLabels ?? {}).every(([k, v]) => attrs[k] === v) &&
    (s.matchExpressions ?? []).every((e) =>
      e.operator === 'In' ? e.key in attrs && (e.values ?? []).includes(attrs[e.key] as string) : e.operator === 'NotIn' ? !(e.key in attrs) || !(e.values ?? []).includes(attrs[e.key] as string) : e.operator === 'Exists' ? e.key in attrs : !(e.key in attrs),
    );
  const matches = (p: PolicyModel): boolean => p.from.some((w) => w.workloadSelector !== undefined && holds(w.workloadSelector, src)) && p.to.some((w) => w.workloadSelector !== undefined && holds(w.workloadSelector, dst));
  for (const [tier, action] of [['privileged', 'deny'], ['privileged', 'allow'], ['user', 'deny'], ['user', 'allow']] as const) {
    if (policies.some((p) => p.tier === tier && p.action === action && (tier === 'privileged' || p.namespace === ns) && matches(p))) return { allowed: action === 'allow', tier };
  }
  return { allowed: false, tier: 'default' };
}

describe('policy engine properties', () => {
  it('default deny when there are no policies', () => {
    fc.assert(fc.property(arbAttrs, arbAttrs, fc.constantFrom('a', 'b'), (src, dst, ns) => !decideAttributes(compilePolicies([]), ns, src, dst).allowed));
  });

  it('the indexed engine agrees with the rules written plainly', () => {
    fc.assert(
      fc.property(arbPolicies, arbAttrs, arbAttrs, fc.constantFrom('a', 'b'), (policies, src, dst, ns) => {
        const d = decideAttributes(compilePolicies(policies), ns, src, dst);
        expect({ allowed: d.allowed, tier: d.tier }).toEqual(reference(policies, ns, src, dst));
      }),
      { numRuns: 2000 },
    );
  });

  it('a matching deny in a tier beats any allow in the same or a lower tier', () => {
    fc.assert(
      fc.property(arbPolicies, arbAttrs, arbAttrs, fc.constantFrom('privileged' as const, 'user' as const), (policies, src, dst, tier) => {
        // A deny that matches everything, added to the tier; allows in this tier and below must lose to it.
        const deny = policy({ name: 'zz-deny', action: 'deny', tier, namespace: 'a' });
        const withoutHigher = policies.filter((p) => !(tier === 'user' && p.tier === 'privileged'));
        const d = decideAttributes(compilePolicies([...withoutHigher, deny]), 'a', src, dst);
        expect(d.allowed).toBe(false);
        expect(d.tier).toBe(tier);
      }),
      { numRuns: 500 },
    );
  });

  it('the decision does not depend on the order policies are written in', () => {
    fc.assert(
      fc.property(arbPolicies, arbAttrs, arbAttrs, (policies, src, dst) => {
        const a = decideAttributes(compilePolicies(policies), 'a', src, dst);
        const b = decideAttributes(compilePolicies([...policies].reverse()), 'a', src, dst);
        expect(b).toEqual(a);
      }),
      { numRuns: 500 },
    );
  });
});
