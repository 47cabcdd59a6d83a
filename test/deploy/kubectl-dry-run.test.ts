// deploy/ as a stock API server sees it: `kubectl apply --server-side --dry-run=server -k
// deploy/overlays/<peer>` against a real kube-apiserver (test/fixtures/kube-apiserver.ts) for
// every overlay — schema validation, defaulting, admission and RBAC escalation checks of the
// server, with kubectl's own kustomize. Nothing is stored (server dry run); the namespace exists
// first, as in a cluster where the overlay is applied (namespace.yaml is in it too).
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { startKubeApiServer, type KubeApiServer } from '../fixtures/kube-apiserver.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const OVERLAYS = (await readdir(join(ROOT, 'deploy', 'overlays'))).sort();

describe('kubectl apply --server-side --dry-run=server -k deploy/overlays/<peer> (real API server)', () => {
  let api: KubeApiServer;
  let tmp: string;

  beforeAll(async () => {
    api = await startKubeApiServer();
    await api.ensureNamespace('clusterlink-system');
    tmp = await mkdtemp(join(tmpdir(), 'clgo-dry-run-'));
  });
  afterAll(async () => {
    await api?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  const kubectl = (...args: string[]) => run('kubectl', ['--kubeconfig', api.kubeconfigPath, ...args], { cwd: ROOT, maxBuffer: 16 << 20, timeout: 60_000 });

  it.each(OVERLAYS)('overlay %s: every object is accepted', async (overlay) => {
    const { stdout } = await kubectl('apply', '--server-side', '--field-manager=clgo-deploy-test', '--dry-run=server', '-k', `deploy/overlays/${overlay}`);
    const accepted = stdout.trim().split('\n').filter((l) => l.endsWith('serverside-applied (server dry run)')).map((l) => l.split(' ')[0]).sort();
    // Each rendered object, by kind and name, was accepted (kubectl prints resource.group/name).
    const rendered = parseAllDocuments((await kubectl('kustomize', `deploy/overlays/${overlay}`)).stdout).map((d) => d.toJS() as { kind: string; apiVersion: string; metadata: { name: string } });
    expect(rendered.length).toBeGreaterThan(10);
    expect(accepted).toHaveLength(rendered.length);
    for (const o of rendered) expect(accepted).toContain(`${o.kind.toLowerCase()}${o.apiVersion.includes('/') ? `.${o.apiVersion.split('/')[0]}` : ''}/${o.metadata.name}`);
    // Dry run: nothing was stored.
    const { stdout: deployments } = await kubectl('get', 'deployments', '-n', 'clusterlink-system', '-o', 'name');
    expect(deployments.trim()).toBe('');
  });

  it('refuses an overlay the server would reject, saying what and where', async () => {
    // The east overlay with one invalid field: the server's message names the object and the field.
    const dir = join(tmp, 'broken');
    await run('mkdir', ['-p', dir]);
    await writeFile(
      join(dir, 'kustomization.yaml'),
      `resources:\n  - ${relative(dir, join(ROOT, 'deploy', 'overlays', 'east'))}\npatches:\n  - target: {kind: Deployment, name: clgo-tunnel}\n    patch: |-\n      - op: replace\n        path: /spec/replicas\n        value: -1\n`,
    );
    const err = await kubectl('apply', '--server-side', '--dry-run=server', '-k', dir).then(
      () => undefined,
      (e: unknown) => e as { stderr: string },
    );
    expect(err?.stderr).toMatch(/The Deployment "clgo-tunnel" is invalid: spec.replicas: Invalid value: -1/);
  });
});
