// `clgo plan` over a real Git repository: per-peer changes and flows that flip, as Markdown for a
// PR comment and as JSON; an invalid head exits 1 with located errors.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../reconciler/cli.ts';
import { createFabricRepo, type FabricRepo } from '../../reconciler/demo/git-repo.ts';
import { EXAMPLE_DIR } from '../../reconciler/demo/fresh-fabric.ts';
import type { Plan } from '../../reconciler/plan/plan.ts';
import { readFabricDir } from '../../schema/read-dir.ts';
import { DENY_EAST_WEB } from '../fixtures/policies.ts';

let root: string;
let repo: FabricRepo;
let base: string;

async function clgo(...args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const stdout = new Writable({ write: (c, _e, cb) => ((out += c.toString()), cb()) });
  const code = await main(['node', 'clgo', ...args], { stdout, stderr: stdout });
  return { code, out };
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'clgo-plan-'));
  repo = await createFabricRepo({ root, name: 'fabric', files: await readFabricDir(EXAMPLE_DIR) });
  base = await repo.head();
});
afterAll(async () => rm(root, { recursive: true, force: true }));

const DENY = DENY_EAST_WEB;

describe('clgo plan', () => {
  it('reports no change between a revision and itself', async () => {
    const { code, out } = await clgo('plan', '--repo', repo.workDir, '--base', base, '--head', base);
    expect(code).toBe(0);
    expect(out).toContain('No peer changes');
  });

  it('shows Services, tunnels, policies and flows a change causes, per peer', async () => {
    const head = await repo.commit(new Map<string, string | null>([['peers/west/policies/deny-east-web.yaml', DENY], ['peers/edge/imports/http.yaml', null]]), 'deny east web; edge drops web');
    const md = await clgo('plan', '--repo', repo.workDir, '--base', base, '--head', head);
    expect(md.code).toBe(0);
    expect(md.out).toMatch(/### edge \(changed\)[\s\S]*\| delete Service \| `web\/http` \|/);
    expect(md.out).toMatch(/### west \(changed\)[\s\S]*\| new policy \| `deny-east-web` \(privileged\) \|/);
    expect(md.out).toMatch(/\| `east web\/http \[[^\]]*\] → west web\/http` \| allowed \| 🔴 denied \| ingress: privileged deny-east-web \(peers\/west\/policies\/deny-east-web\.yaml:\d+\) \|/);
    expect(md.out).not.toMatch(/### east/);
    const json = await clgo('plan', '--repo', repo.workDir, '--base', base, '--head', 'main', '--format', 'json');
    const plan = JSON.parse(json.out) as Plan;
    expect(plan.head.revision).toBe(head);
    expect(plan.peers.find((p) => p.peer === 'edge')).toMatchObject({ status: 'changed', services: { delete: ['web/http'] }, tunnels: { close: ['west'] } });
    expect(plan.peers.find((p) => p.peer === 'east')?.status).toBe('unchanged');
  });

  it('shows a change of attested peer labels (fabric.yaml) as a change to other peers\' decisions', async () => {
    const prev = await repo.head();
    const fabricYaml = (await readFabricDir(EXAMPLE_DIR)).get('fabric.yaml')!;
    const demoted = Buffer.from(fabricYaml).toString('utf8').replace(/(east:\n\s+labels:\n\s+region: us-east\n\s+tier:) core/, '$1 edge');
    expect(demoted).toContain('tier: edge\n    edge:');
    const head = await repo.commit(new Map([['fabric.yaml', demoted]]), 'east is no longer core');
    const { code, out } = await clgo('plan', '--repo', repo.workDir, '--base', prev, '--head', head);
    expect(code).toBe(0);
    expect(out).toMatch(/### Attested peer labels \(fabric\.yaml, fabric admins\)[\s\S]*\| `east` \| `region=us-east`, `tier=core` \| `region=us-east`, `tier=edge` \| `east`, `edge`, `west` \|/);
    // west's allow-core-perf trusted tier=core: east's iperf3 flow to west flips at west's ingress.
    expect(out).toMatch(/\| `east perf\/iperf3 \[[^\]]*\] → west perf\/iperf3` \| allowed \| 🔴 denied \| ingress: /);
    // A peer writing the same label in its own peer.yaml changes no decision, and says so.
    const selfLabelled = await repo.commit(new Map([['peers/east/peer.yaml', Buffer.from((await readFabricDir(EXAMPLE_DIR)).get('peers/east/peer.yaml')!).toString('utf8').replace('  name: east\n', '  name: east\n  labels:\n    tier: core\n')]]), 'east labels itself core');
    const self = await clgo('plan', '--repo', repo.workDir, '--base', head, '--head', selfLabelled);
    expect(self.out).not.toMatch(/Attested peer labels|Flows that change/);
    expect(self.out).toMatch(/peers\/east\/peer\.yaml:\d+` labels in peers\/east\/peer\.yaml feed no policy decision/);
  });

  it('exits 1 with the located errors when the head is invalid', async () => {
    const head = await repo.commit(new Map([['peers/east/imports/http.yaml', 'apiVersion: clusterlink.net/v1alpha1\nkind: Import\nmetadata:\n  name: http\n  namespace: web\nspec:\n  port: 8080\n  sources:\n    - peer: nowhere\n      exportName: http\n      exportNamespace: web\n']]), 'bad');
    const { code, out } = await clgo('plan', '--repo', repo.workDir, '--base', base, '--head', head);
    expect(code).toBe(1);
    expect(out).toContain('The head revision is invalid');
    expect(out).toMatch(/\| `peers\/east\/imports\/http\.yaml:9` \| .*nowhere/);
  });

  it('names an unknown revision as a usage error', async () => {
    const { code, out } = await clgo('plan', '--repo', repo.workDir, '--base', 'no-such-branch', '--head', 'main');
    expect(code).toBe(2);
    expect(out).toMatch(/cannot resolve revision "no-such-branch"/);
  });
});
