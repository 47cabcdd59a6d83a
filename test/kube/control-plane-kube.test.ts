// The cluster path in one piece: fabric directory → control plane → Kubernetes target (against the
// API stand-in, driven by the real @kubernetes/client-node) and ext_authz. Imports become Services
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
import { startKubeApiStandin, type KubeApiStandin } from '../fixtures/kube-api-standin.ts';
import { waitFor } from './helpers.ts';

let dir: string;
let fresh: FreshFabric;
let api: KubeApiStandin;
let kube: KubeTarget;
let plane: ControlPlane;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clgo-cp-kube-'));
  fresh = await freshExampleFabric();
  for (const [path, bytes] of fresh.files) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), bytes);
  }
  api = await startKubeApiStandin({ namespaces: ['clusterlink-system', 'perf', 'web'] });
  api.addPod({ namespace: 'clusterlink-system', name: 'clgo-tunnel-a', ip: '10.1.0.5', labels: { 'app.kubernetes.io/name': 'clgo-tunnel' } });
  api.addPod({ namespace: 'perf', name: 'iperf-client', ip: '10.2.0.7', serviceAccount: 'bench', labels: { app: 'iperf-client' } });
  api.addPod({ namespace: 'perf', name: 'stranger', ip: '10.2.0.8', labels: { app: 'other' } });
  kube = startKubeTarget({ kubeConfig: api.kubeConfig(), peer: 'east', namespace: 'clusterlink-system', dataplaneSelector: { 'app.kubernetes.io/name': 'clgo-tunnel' }, leaseDurationSeconds: 2 });
  await kube.ready();
  plane = await startControlPlane({
    peer: 'east',
    source: createDirectorySource({ dir, debounceMs: 50 }),
    identity: { privateKeyPem: fresh.peers.east!.privateKeyPem },
    xds: { host: '127.0.0.1', port: 0 },
    authz: { host: '127.0.0.1', port: 0 },
    egressAddress: '0.0.0.0',
    clientAttributes: (ip) => kube.clientAttributes(ip),
    target: kube,
  });
}, 30_000);

afterAll(async () => {
  await plane.close();
  await kube.stop();
  await api.close();
  await rm(dir, { recursive: true, force: true });
});

describe('control plane with the Kubernetes target', () => {
  it('applies a Service and an EndpointSlice of the tunnel pods per import once it leads', async () => {
    await waitFor('east leads and applied its imports', () => plane.status().target?.ok === true && api.get('services', 'perf', 'iperf3'), 10_000);
    const svc = api.get('services', 'perf', 'iperf3')!;
    expect(svc.metadata).toMatchObject({ labels: expect.objectContaining({ 'app.kubernetes.io/managed-by': 'clusterlink-gitops' }) });
    expect(api.get('services', 'web', 'http')).toBeDefined();
    const slices = api.list('endpointslices', 'perf');
    expect(JSON.stringify(slices)).toContain('10.1.0.5');
  });

  it("judges egress by the client Pod's attributes from the watch", async () => {
    const ask = (ip: string) => plane.authorizer.egress({ importNamespace: 'perf', importName: 'iperf3', sourceAddress: ip, sourcePort: 40000 });
    expect(ask('10.2.0.7').allowed).toBe(true);
    const denied = ask('10.2.0.8');
    expect(denied.allowed).toBe(false);
    // A deleted Pod's IP is forgotten: an unknown client has no attributes.
    api.deletePod('perf', 'iperf-client');
    await waitFor('pod deletion seen', () => kube.clientAttributes('10.2.0.7') === null);
    expect(ask('10.2.0.7').allowed).toBe(false);
  });

  it('prunes the Service of an import a commit removes, and writes nothing when a revision changes nothing for it', async () => {
    api.resetCounts();
    await rm(join(dir, 'peers/east/imports/http.yaml'));
    await waitFor('web/http pruned', () => api.get('services', 'web', 'http') === undefined, 10_000);
    expect(api.get('services', 'perf', 'iperf3')).toBeDefined();
    api.resetCounts();
    // A change elsewhere in the fabric (west's policy file) is a new revision with the same imports for east.
    const before = plane.status().applied!.revision;
    await writeFile(join(dir, 'peers/west/policies/allow-web.yaml'), `${Buffer.from(fresh.files.get('peers/west/policies/allow-web.yaml')!).toString()}\n# touched\n`);
    await waitFor('new revision applied', () => plane.status().applied!.revision !== before && plane.status().target?.revision === plane.status().applied!.revision, 10_000);
    expect(api.writes('services').total).toBe(0);
  });
});
