import { beforeAll, describe, expect, it } from 'vitest';
import { toDer, fingerprintSha256 } from '../pki/encoding.ts';
import type { Slice } from '../slice/types.ts';
import type { ClientAttributes, EgressCheck } from '../../protocol/contracts.ts';
import { ALLOW_ALL, dbImport, eastSlice, makePki, policy, westSlice, type Pki } from '../../test/xds/authz-fixtures.ts';
import { createAuthorizer, denyReason } from './authz.ts';

let pki: Pki;
beforeAll(async () => {
  pki = await makePki();
});

const clients: Record<string, ClientAttributes> = {
  '10.0.0.1': { namespace: 'default', serviceAccount: 'frontend', labels: { app: 'frontend' } },
  '10.0.0.2': { namespace: 'default', serviceAccount: 'batch', labels: { app: 'batch' } },
};
const egressCheck = (sourceAddress = '10.0.0.1', importName = 'db', importNamespace = 'default'): EgressCheck => ({ importNamespace, importName, sourceAddress, sourcePort: 40000 });
const fixed = (slice: Slice) => () => slice;
const byAddress = (a: string) => clients[a] ?? null;

describe('egress', () => {
  it('allows a client and lists every allowed exporter, rotating round-robin', () => {
    const authz = createAuthorizer({ slice: fixed(westSlice(pki, [ALLOW_ALL('west')])), clientAttributes: byAddress });
    const first = authz.egress(egressCheck());
    expect(first).toEqual({
      allowed: true,
      client: clients['10.0.0.1'],
      candidates: [
        { peer: 'east', exportName: 'db', exportNamespace: 'default' },
        { peer: 'north', exportName: 'db', exportNamespace: 'default' },
      ],
    });
    const second = authz.egress(egressCheck());
    expect(second.allowed && second.candidates.map((c) => c.peer)).toEqual(['north', 'east']);
    const third = authz.egress(egressCheck());
    expect(third.allowed && third.candidates.map((c) => c.peer)).toEqual(['east', 'north']);
  });

  it('with session affinity ClientIP, a client keeps its exporter while others rotate, until it is no longer allowed or the entry expires', () => {
    let t = Date.parse('2026-11-26T00:00:00Z');
    let slice = westSlice(pki, [ALLOW_ALL('west')], [dbImport({ sessionAffinity: 'ClientIP' })]);
    const authz = createAuthorizer({ slice: () => slice, clientAttributes: byAddress, now: () => new Date(t) });
    const firstOf = (address: string): string | undefined => {
      const v = authz.egress(egressCheck(address));
      return v.allowed ? v.candidates[0]?.peer : undefined;
    };
    const a = firstOf('10.0.0.1');
    expect([firstOf('10.0.0.1'), firstOf('10.0.0.1'), firstOf('10.0.0.1')]).toEqual([a, a, a]);
    // Another client is placed by the rotation, not by the first client's choice.
    expect(firstOf('10.0.0.2')).not.toBe(a);
    // The rest stay as failover candidates.
    const v = authz.egress(egressCheck('10.0.0.1'));
    expect(v.allowed && v.candidates.length).toBe(2);
    // The sticky exporter becomes denied: the client moves, and stays on the new one.
    const other = a === 'east' ? 'north' : 'east';
    slice = westSlice(pki, [ALLOW_ALL('west'), policy('west', { name: 'no-sticky', action: 'deny', to: [{ workloadSelector: { matchLabels: { 'peer.clusterlink.net/name': a! } } }] })], [dbImport({ sessionAffinity: 'ClientIP' })]);
    expect(firstOf('10.0.0.1')).toBe(other);
    slice = westSlice(pki, [ALLOW_ALL('west')], [dbImport({ sessionAffinity: 'ClientIP' })]);
    expect(firstOf('10.0.0.1')).toBe(other);
    // After the affinity timeout (3 h) the rotation places it again.
    t += 3 * 3600_000 + 1;
    const placed = [firstOf('10.0.0.1'), firstOf('10.0.0.1')];
    expect(placed[0]).toBe(placed[1]);
  });

  it('skips exporters denied by policy, keeping the rest in load-balancing order', () => {
    const denyNorth = policy('west', { name: 'no-north', action: 'deny', to: [{ workloadSelector: { matchLabels: { 'peer.clusterlink.net/name': 'north' } } }] });
    const authz = createAuthorizer({ slice: fixed(westSlice(pki, [denyNorth, ALLOW_ALL('west')])), clientAttributes: byAddress });
    for (let i = 0; i < 3; i++) {
      const v = authz.egress(egressCheck());
      expect(v.allowed && v.candidates.map((c) => c.peer)).toEqual(['east']);
    }
  });

  it('skips unresolved sources', () => {
    const imp = dbImport({ sources: [...dbImport().sources.map((s) => (s.peer === 'east' ? { ...s, resolved: false } : s))] });
    const authz = createAuthorizer({ slice: fixed(westSlice(pki, [ALLOW_ALL('west')], [imp])), clientAttributes: byAddress });
    const v = authz.egress(egressCheck());
    expect(v.allowed && v.candidates.map((c) => c.peer)).toEqual(['north']);
  });

  it('invalidate() restarts the round-robin rotation', () => {
    const authz = createAuthorizer({ slice: fixed(westSlice(pki, [ALLOW_ALL('west')])), clientAttributes: byAddress });
    const firstPeer = () => {
      const v = authz.egress(egressCheck());
      return v.allowed ? v.candidates[0]?.peer : null;
    };
    expect([firstPeer(), firstPeer()]).toEqual(['east', 'north']);
    authz.invalidate();
    expect(firstPeer()).toBe('east');
  });

  it('static keeps the written order; random picks the first with the given random source', () => {
    const slice = westSlice(pki, [ALLOW_ALL('west')], [dbImport({ lbScheme: 'static' }), dbImport({ name: 'db-random', lbScheme: 'random' })]);
    const authz = createAuthorizer({ slice: fixed(slice), clientAttributes: byAddress, random: () => 0.99 });
    for (let i = 0; i < 2; i++) {
      const v = authz.egress(egressCheck());
      expect(v.allowed && v.candidates.map((c) => c.peer)).toEqual(['east', 'north']);
    }
    const r = authz.egress(egressCheck('10.0.0.1', 'db-random'));
    expect(r.allowed && r.candidates.map((c) => c.peer)).toEqual(['north', 'east']);
  });

  it('gives an unknown client empty attributes: a policy selecting client labels does not allow it', () => {
    const onlyFrontend = policy('west', { name: 'frontend-only', action: 'allow', from: [{ workloadSelector: { matchLabels: { 'client.clusterlink.net/labels.app': 'frontend' } } }] });
    const authz = createAuthorizer({ slice: fixed(westSlice(pki, [onlyFrontend])), clientAttributes: byAddress });
    expect(authz.egress(egressCheck('10.0.0.1')).allowed).toBe(true);
    const unknown = authz.egress(egressCheck('10.9.9.9'));
    expect(unknown).toMatchObject({ allowed: false, explanation: { tier: 'default', policy: null } });
    const other = authz.egress(egressCheck('10.0.0.2'));
    expect(other.allowed).toBe(false);
  });

  it('counts user policies only in the import namespace', () => {
    const slice = westSlice(pki, [ALLOW_ALL('west', 'other')]);
    const authz = createAuthorizer({ slice: fixed(slice), clientAttributes: byAddress });
    expect(authz.egress(egressCheck())).toMatchObject({ allowed: false, explanation: { tier: 'default' } });
  });

  it('explains a denial: tier, policy, file:line, also in the deny-reason header', () => {
    const deny = policy('west', { name: 'no-db', action: 'deny', privileged: true, from: [{ workloadSelector: { matchLabels: { 'client.clusterlink.net/labels.app': 'batch' } } }] });
    const authz = createAuthorizer({ slice: fixed(westSlice(pki, [deny, ALLOW_ALL('west')])), clientAttributes: byAddress });
    const v = authz.egress(egressCheck('10.0.0.2'));
    expect(v.allowed).toBe(false);
    if (v.allowed) return;
    expect(v.explanation).toMatchObject({ tier: 'privileged', policy: 'no-db', location: `${deny.source.file}:${deny.source.line}` });
    expect(v.explanation.message).toContain('no-db');
    expect(denyReason(v.explanation)).toBe(`privileged:no-db (${deny.source.file}:${deny.source.line})`);
    // The frontend is still allowed by the user policy.
    expect(authz.egress(egressCheck('10.0.0.1')).allowed).toBe(true);
    // explainEgress shows the decision for every exporter.
    const ex = authz.explainEgress(egressCheck('10.0.0.2'));
    expect(ex.sources.map((s) => [s.peer, s.allowed, s.explanation.policy])).toEqual([
      ['east', false, 'no-db'],
      ['north', false, 'no-db'],
    ]);
  });

  it('denies an import this peer does not have', () => {
    const authz = createAuthorizer({ slice: fixed(westSlice(pki, [ALLOW_ALL('west')])), clientAttributes: byAddress });
    const v = authz.egress(egressCheck('10.0.0.1', 'nope'));
    expect(v).toMatchObject({ allowed: false, explanation: { tier: 'default', message: expect.stringContaining('default/nope') } });
  });

  it('follows a new slice (policy change) on the next call', () => {
    let slice = westSlice(pki, [ALLOW_ALL('west')]);
    const authz = createAuthorizer({ slice: () => slice, clientAttributes: byAddress });
    expect(authz.egress(egressCheck()).allowed).toBe(true);
    slice = westSlice(pki, []);
    expect(authz.egress(egressCheck()).allowed).toBe(false);
  });
});

describe('ingress', () => {
  const west = () => toDer(pki.west.certificatePem);
  const ingressCheck = (der: Uint8Array, client: ClientAttributes = { namespace: 'default', labels: { app: 'frontend' } }, exportName = 'db') => ({
    peerCertificateDer: der,
    exportName,
    exportNamespace: 'default',
    client,
  });

  it('allows a verified importer and names the export target', () => {
    const authz = createAuthorizer({ slice: fixed(eastSlice(pki, [ALLOW_ALL('east')])), clientAttributes: () => null });
    expect(authz.ingress(ingressCheck(west()))).toEqual({ allowed: true, peer: 'west', target: { host: '127.0.0.1', port: 5432 } });
  });

  it('denies by ingress policy on the client attributes the peer asserted, with an explanation', () => {
    const deny = policy('east', { name: 'no-batch', action: 'deny', from: [{ workloadSelector: { matchLabels: { 'client.clusterlink.net/labels.app': 'batch' } } }] });
    const authz = createAuthorizer({ slice: fixed(eastSlice(pki, [deny, ALLOW_ALL('east')])), clientAttributes: () => null });
    const v = authz.ingress(ingressCheck(west(), { labels: { app: 'batch' } }));
    expect(v).toMatchObject({ allowed: false, status: 403, peer: 'west', explanation: { tier: 'user', policy: 'default/no-batch', location: `${deny.source.file}:${deny.source.line}` } });
    expect(authz.ingress(ingressCheck(west())).allowed).toBe(true);
  });

  it('decides on peer attributes from the verified certificate', () => {
    const onlyWest = policy('east', { name: 'west-only', action: 'allow', from: [{ workloadSelector: { matchLabels: { 'peer.clusterlink.net/name': 'west' } } }] });
    const authz = createAuthorizer({ slice: fixed(eastSlice(pki, [onlyWest], { importers: ['west', 'north'] })), clientAttributes: () => null });
    expect(authz.ingress(ingressCheck(west())).allowed).toBe(true);
    expect(authz.ingress(ingressCheck(toDer(pki.north.certificatePem)))).toMatchObject({ allowed: false, status: 403, peer: 'north' });
  });

  it('denies a revoked certificate and a peer removed from the fabric', () => {
    const revoked = eastSlice(pki, [ALLOW_ALL('east')], { revoked: { serials: [], fingerprints: [fingerprintSha256(pki.west.certificatePem)] } });
    const a = createAuthorizer({ slice: fixed(revoked), clientAttributes: () => null });
    expect(a.ingress(ingressCheck(west()))).toMatchObject({ allowed: false, status: 403, peer: null, explanation: { message: expect.stringContaining('revoked') } });
    const removed = eastSlice(pki, [ALLOW_ALL('east')], { members: ['north'] });
    const b = createAuthorizer({ slice: fixed(removed), clientAttributes: () => null });
    expect(b.ingress(ingressCheck(west()))).toMatchObject({ allowed: false, status: 403, peer: null, explanation: { message: expect.stringContaining('not-a-member') } });
  });

  it('denies a certificate from another CA carrying a member name', () => {
    const authz = createAuthorizer({ slice: fixed(eastSlice(pki, [ALLOW_ALL('east')])), clientAttributes: () => null });
    expect(authz.ingress(ingressCheck(toDer(pki.impostor.certificatePem)))).toMatchObject({ allowed: false, status: 403, peer: null });
  });

  it('denies a member that does not import the export, and 404s an unknown export', () => {
    const authz = createAuthorizer({ slice: fixed(eastSlice(pki, [ALLOW_ALL('east')])), clientAttributes: () => null });
    expect(authz.ingress(ingressCheck(toDer(pki.north.certificatePem)))).toMatchObject({ allowed: false, status: 403, peer: 'north', explanation: { message: expect.stringContaining('does not import') } });
    expect(authz.ingress(ingressCheck(west(), undefined, 'cache'))).toMatchObject({ allowed: false, status: 404, peer: 'west' });
  });

  it('refuses a peer on the next call once a new slice removes it', () => {
    let slice = eastSlice(pki, [ALLOW_ALL('east')]);
    const authz = createAuthorizer({ slice: () => slice, clientAttributes: () => null });
    expect(authz.ingress(ingressCheck(west())).allowed).toBe(true);
    slice = eastSlice(pki, [ALLOW_ALL('east')], { members: ['north'], importers: [] });
    expect(authz.ingress(ingressCheck(west()))).toMatchObject({ allowed: false, peer: null });
  });

  it('honours the clock: an expired certificate is refused', () => {
    const slice = eastSlice(pki, [ALLOW_ALL('east')]);
    const authz = createAuthorizer({ slice: fixed(slice), clientAttributes: () => null, now: () => new Date(Date.now() + 400 * 86_400_000) });
    expect(authz.ingress(ingressCheck(west()))).toMatchObject({ allowed: false, peer: null, explanation: { message: expect.stringMatching(/expired/) } });
  });
});
