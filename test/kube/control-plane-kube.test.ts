// The cluster path in one piece: fabric directory → control plane → Kubernetes target (against a
// real kube-apiserver, as the reconciler's ServiceAccount of deploy/base/rbac.yaml) and ext_authz. Imports become Services
// with EndpointSlices of the tunnel pods; a Pod's IP gives the client attributes egress policy
// judges; a commit removing an import prunes its Service.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshExampleFabric, type FreshFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { startKubeTarget, type KubeTarget } from '../../reconciler/kube/index.ts';
import { startControlPlane, type ControlPlane } from '../../reconciler/runtime/control-plane.ts';
import { createDirectorySource } from '../../reconciler/source/directory-source.ts';
import { RECONCILER_USER, SYSTEM_NS, startKubeEnv, waitFor, withoutVerb, type KubeEnv } from './helpers.ts';

let dir: string;
let fresh: FreshFabric;
let env: KubeEnv;
let kube: KubeTarget;
let plane: ControlPlane;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clgo-cp-kube-'));
  fresh = await freshExampleFabric();
  for (const [path, bytes] of fresh.files) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), bytes);
  }
  env = await startKubeEnv(['perf', 'web']);
  await env.api.applyYaml('apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: bench}\n', 'perf');
  await env.api.createPod({ namespace: SYSTEM_NS, name: 'clgo-tunnel-a', ip: '10.1.0.5', labels: { 'app.kubernetes.io/name': 'clgo-tunnel' } });
  await env.api.createPod({ namespace: 'perf', name: 'iperf-client', ip: '10.2.0.7', serviceAccount: 'bench', labels: { app: 'iperf-client' } });
  await env.api.createPod({ namespace: 'perf', name: 'stranger', ip: '10.2.0.8', labels: { app: 'other' } });
  kube = startKubeTarget({ kubeConfig: env.reconciler, peer: 'east', namespace: SYSTEM_NS, dataplaneSelector: { 'app.kubernetes.io/name': 'clgo-tunnel' }, leaseDurationSeconds: 2 });
  await kube.ready();
  plane = await startControlPlane({
    peer: 'east',
    source: createDirectorySource({ dir, debounceMs: 50 }),
    identity: { privateKeyPem: fresh.peers.east!.privateKeyPem },
    // Named to the tunnel pods over SDS (as deploy/ mounts the Secret); no data plane connects here.
    identityFiles: { certificateFile: '/var/run/clgo/peer/tls.crt', privateKeyFile: '/var/run/clgo/peer/tls.key' },
    xds: { host: '127.0.0.1', port: 0 },
    authz: { host: '127.0.0.1', port: 0 },
    egressAddress: '0.0.0.0',
    clientAttributes: (ip) => kube.clientAttributes(ip),
    target: kube,
  });
}, 30_000);

afterAll(async () => {
  await plane?.close();
  await kube?.stop();
  await env?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('control plane with the Kubernetes target', () => {
  it('applies a Service and an EndpointSlice of the tunnel pods per import once it leads', async () => {
    await waitFor('east leads and applied its imports', async () => plane.status().target?.ok === true && (await env.get('v1', 'Service', 'perf', 'iperf3')), 20_000, 100);
    const svc = (await env.get('v1', 'Service', 'perf', 'iperf3'))!;
    expect(svc.metadata).toMatchObject({ labels: expect.objectContaining({ 'app.kubernetes.io/managed-by': 'clusterlink-gitops' }) });
    expect(await env.get('v1', 'Service', 'web', 'http')).toBeDefined();
    const slices = await env.list<{ endpoints?: { addresses: string[] }[] }>('discovery.k8s.io/v1', 'EndpointSlice', 'perf');
    expect(slices.flatMap((s) => (s.endpoints ?? []).flatMap((e) => e.addresses))).toEqual(['10.1.0.5']);
  });

  it("judges egress by the client Pod's attributes from the watch", async () => {
    const ask = (ip: string) => plane.authorizer.egress({ importNamespace: 'perf', importName: 'iperf3', sourceAddress: ip, sourcePort: 40000 });
    expect(ask('10.2.0.7').allowed).toBe(true);
    const denied = ask('10.2.0.8');
    expect(denied.allowed).toBe(false);
    // A deleted Pod's IP is forgotten: an unknown client has no attributes.
    await env.api.deletePod('perf', 'iperf-client');
    await waitFor('pod deletion seen', () => kube.clientAttributes('10.2.0.7') === null, 10_000);
    expect(ask('10.2.0.7').allowed).toBe(false);
  });

  it('prunes the Service of an import a commit removes, and writes nothing when a revision changes nothing for it', async () => {
    await rm(join(dir, 'peers/east/imports/http.yaml'));
    await waitFor('web/http pruned', async () => (await env.get('v1', 'Service', 'web', 'http')) === undefined, 20_000, 100);
    expect(await env.get('v1', 'Service', 'perf', 'iperf3')).toBeDefined();
    const mark = await env.api.mark();
    // A change elsewhere in the fabric (west's policy file) is a new revision with the same imports for east.
    const before = plane.status().applied!.revision;
    await writeFile(join(dir, 'peers/west/policies/allow-web.yaml'), `${Buffer.from(fresh.files.get('peers/west/policies/allow-web.yaml')!).toString()}\n# touched\n`);
    await waitFor('new revision applied', () => plane.status().applied!.revision !== before && plane.status().target?.revision === plane.status().applied!.revision, 20_000);
    expect((await env.api.writes(mark, { resource: 'services', user: RECONCILER_USER })).total).toBe(0);
    expect((await env.api.writes(mark, { resource: 'endpointslices', user: RECONCILER_USER })).total).toBe(0);
  });

  it('a revision the cluster refuses in part (RBAC) shows in the control plane status as not ok, with the 403, until a later one applies', async () => {
    const commit = async (path: string, bytes: Uint8Array | string) => {
      const before = plane.status().applied!.revision;
      await writeFile(join(dir, path), bytes);
      await waitFor('new revision applied', () => plane.status().applied!.revision !== before && plane.status().target?.revision === plane.status().applied!.revision, 20_000);
    };
    const touch = (n: number) => commit('peers/west/policies/allow-web.yaml', `${Buffer.from(fresh.files.get('peers/west/policies/allow-web.yaml')!).toString()}\n# touched ${n}\n`);
    await withoutVerb(env, 'services', 'patch', async () => {
      // The import pruned above comes back while the reconciler may not patch Services.
      await commit('peers/east/imports/http.yaml', fresh.files.get('peers/east/imports/http.yaml')!);
      expect(plane.status().target).toMatchObject({ ok: false, error: expect.stringMatching(/web\/http: HTTP 403: .*cannot patch resource "services"/) });
    });
    await touch(2);
    expect(plane.status().target).toMatchObject({ ok: true, error: null });
    expect(await env.get('v1', 'Service', 'web', 'http')).toBeDefined();
  });
});
