// `clgo policy eval` and `clgo explain` through the real CLI entry, on the example fabric.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runClgo } from '../fixtures/cli.ts';
import { EXAMPLE_DIR } from '../../reconciler/demo/fresh-fabric.ts';

const clgo = runClgo;

const scratch = mkdtempSync(join(tmpdir(), 'clgo-policy-cli-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const westPolicies = join(EXAMPLE_DIR, 'peers/west/policies');

describe('clgo policy eval', () => {
  it('allows with exit 0 and names the deciding policy in JSON', async () => {
    const r = await clgo('policy', 'eval', '--policies', westPolicies, '--direction', 'ingress', '--namespace', 'web', '--src', 'peer.clusterlink.net/name=east', '--dst', 'export.clusterlink.net/name=http,export.clusterlink.net/namespace=web', '--format', 'json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ decision: 'allow', tier: 'user', policy: 'web/allow-web' });
  });

  it('denies with exit 3: a privileged deny beats the user allow', async () => {
    const r = await clgo('policy', 'eval', '--policies', westPolicies, '--direction', 'ingress', '--namespace', 'web', '--src', 'peer.clusterlink.net/name=edge', '--dst', 'export.clusterlink.net/name=http,export.clusterlink.net/namespace=web', '--format', 'json');
    expect(r.code).toBe(3);
    expect(JSON.parse(r.out)).toMatchObject({ decision: 'deny', tier: 'privileged', policy: 'deny-edge-web' });
  });

  it('an unknown client (empty --src) falls to default deny where policies need client attributes', async () => {
    const r = await clgo('policy', 'eval', '--policies', join(EXAMPLE_DIR, 'peers/east/policies/allow-iperf-clients.yaml'), '--direction', 'egress', '--namespace', 'perf', '--src', '', '--dst', 'export.clusterlink.net/name=iperf3', '--format', 'json');
    expect(r.code).toBe(3);
    expect(JSON.parse(r.out)).toEqual({ decision: 'deny', tier: 'default', policy: null, location: null, matched: null });
  });

  it('usage errors exit 2; an invalid policy file exits 1 with file:line', async () => {
    expect((await clgo('policy', 'eval', '--policies', westPolicies, '--direction', 'sideways', '--namespace', 'web')).code).toBe(2);
    expect((await clgo('policy', 'eval', '--policies', westPolicies, '--direction', 'egress', '--namespace', 'web', '--src', 'nonsense')).code).toBe(2);
    const bad = join(scratch, 'bad.yaml');
    writeFileSync(bad, 'apiVersion: clusterlink.net/v1alpha1\nkind: AccessPolicy\nmetadata:\n  name: x\n  namespace: web\nspec:\n  action: allow\n  from:\n    - workloadSelector:\n        matchExpressions:\n          - key: peer.clusterlink.net/name\n            operator: In\n  to: []\n');
    const r = await clgo('policy', 'eval', '--policies', bad, '--direction', 'egress', '--namespace', 'web');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/bad\.yaml:12:\d+: error\[bad-selector\]: operator In needs a non-empty values list/);
  });
});

describe('clgo explain', () => {
  it('shows egress and ingress per exporter and exits 3 when every path is refused', async () => {
    const r = await clgo('explain', '--fabric', EXAMPLE_DIR, '--from', 'edge', '--import', 'web/http', '--client', 'labels.app=x');
    expect(r.code).toBe(3);
    expect(r.out).toContain('egress on edge: allow — user policy web/allow-web-egress');
    expect(r.out).toMatch(/ingress on west: deny — privileged policy deny-edge-web \(peers\/west\/policies\/deny-edge-web\.yaml:\d+\)/);
    expect(r.out).toContain('verdict: refused');
  });

  it('lists the policies that did not match, and why, when egress falls to default deny', async () => {
    const r = await clgo('explain', '--fabric', EXAMPLE_DIR, '--from', 'east', '--import', 'perf/iperf3', '--client', 'namespace=perf,labels.app=other', '--format', 'json');
    expect(r.code).toBe(3);
    const e = JSON.parse(r.out) as { candidates: Array<{ peer: string; egress: { tier: string }; reached: boolean; trace: Array<{ policy: string; reason: string }> }> };
    expect(e.candidates.map((c) => [c.peer, c.egress.tier, c.reached])).toEqual([
      ['west', 'default', false],
      ['edge', 'default', false],
    ]);
    expect(e.candidates[0]!.trace).toContainEqual(expect.objectContaining({ policy: 'perf/allow-iperf-clients', reason: 'from[0] needs client.clusterlink.net/labels.app=iperf-client (is other)' }));
  });

  it('exits 0 with the load-balancing verdict when a path is allowed', async () => {
    const r = await clgo('explain', '--fabric', EXAMPLE_DIR, '--from', 'east', '--import', 'perf/iperf3', '--client', 'namespace=perf,labels.app=iperf-client');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/verdict: allowed: round-robin over west, edge/);
  });

  it('names the imports there are when the one asked for does not exist', async () => {
    const r = await clgo('explain', '--fabric', EXAMPLE_DIR, '--from', 'east', '--import', 'web/nope');
    expect(r.code).toBe(2);
    expect(r.err).toContain('its imports: perf/iperf3, web/http');
  });
});
