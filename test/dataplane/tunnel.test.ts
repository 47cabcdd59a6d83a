// The Node data plane end to end on loopback, driven by real slices of the example fabric and the
// real Authorizer: east's clients reach west/edge exports through mTLS CONNECT tunnels.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDataplane, type Dataplane } from '../../dataplane/dataplane.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import type { FabricModel } from '../../schema/model.ts';
import { freshExampleFabric, type FreshFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { slice } from '../../reconciler/slice/slice.ts';
import type { Slice } from '../../reconciler/slice/types.ts';
import { createAuthorizer } from '../../reconciler/xds/authz.ts';
import { dataplaneConfigFromSlice } from '../../reconciler/xds/config.ts';
import { clientLookup } from '../../reconciler/runtime/local-clients.ts';
import { echoThrough, openEchoConnection, startEchoServer, waitFor } from '../fixtures/servers.ts';
import { DENY_EAST_WEB } from '../fixtures/policies.ts';

// This file's own loopback range: gateways 127.0.51.x, services 127.0.52.x, egress 127.0.53.x.
const rewrite = (t: string): string => t.replaceAll('127.0.10.', '127.0.51.').replaceAll('127.0.20.', '127.0.52.');
const CLIENTS = clientLookup({
  clients: [
    { address: '127.0.54.1', namespace: 'perf', labels: { app: 'iperf-client' } },
    { address: '127.0.54.2', namespace: 'perf', labels: { app: 'iperf-client', trust: 'untrusted' } },
    { address: '127.0.54.3', namespace: 'web', labels: { app: 'browser' } },
  ],
});

interface Peer {
  name: string;
  slice: Slice;
  dataplane: Dataplane;
}

let fresh: FreshFabric;
let fabric: FabricModel;
const peers: Record<string, Peer> = {};
const services: Array<{ close(): Promise<void> }> = [];

function load(files: Map<string, Uint8Array>): FabricModel {
  const r = loadFabricFiles(files);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.fabric;
}

async function startPeer(name: string, egressAddress: string): Promise<Peer> {
  const peer = { name, slice: slice(fabric, name) } as Peer;
  const authorizer = createAuthorizer({ slice: () => peer.slice, clientAttributes: CLIENTS });
  peer.dataplane = await startDataplane({ config: dataplaneConfigFromSlice(peer.slice, fresh.peers[name]!, { egressAddress }, '1'), authorizer });
  return peer;
}

async function applyFabric(next: FabricModel, version: string): Promise<number> {
  fabric = next;
  let closed = 0;
  for (const [name, p] of Object.entries(peers)) {
    p.slice = slice(fabric, name);
    await p.dataplane.update(dataplaneConfigFromSlice(p.slice, fresh.peers[name]!, { egressAddress: p.dataplane.addresses().egress['perf/iperf3']?.host ?? '127.0.53.9' }, version));
    closed += await p.dataplane.revalidate();
  }
  return closed;
}

beforeAll(async () => {
  fresh = await freshExampleFabric({ rewrite });
  fabric = load(fresh.files);
  services.push(await startEchoServer('127.0.52.2', 5201), await startEchoServer('127.0.52.2', 8080), await startEchoServer('127.0.52.3', 5201));
  peers.west = await startPeer('west', '127.0.53.2');
  peers.edge = await startPeer('edge', '127.0.53.3');
  peers.east = await startPeer('east', '127.0.53.1');
});

afterAll(async () => {
  await Promise.all(Object.values(peers).map((p) => p.dataplane.close()));
  await Promise.all(services.map((s) => s.close()));
});

describe('Node data plane tunnels', () => {
  it('carries bytes unchanged from an allowed client through egress, the gateway and back', async () => {
    expect(await echoThrough({ host: '127.0.53.1', port: 5201, localAddress: '127.0.54.1', bytes: 4 * 1024 * 1024 })).toBe('ok');
    const s = () => peers.east!.dataplane.stats().egress['perf/iperf3']!;
    expect(s().connections).toBeGreaterThanOrEqual(1);
    // Byte counters are settled when the tunnel closes.
    expect(await waitFor(() => s().bytesOut >= 4 * 1024 * 1024 && s().active === 0)).toBe(true);
  });

  it('round-robins the two exporters of one import', async () => {
    const before = { west: peers.west!.dataplane.stats().ingress.requests, edge: peers.edge!.dataplane.stats().ingress.requests };
    for (let i = 0; i < 4; i++) expect(await echoThrough({ host: '127.0.53.1', port: 5201, localAddress: '127.0.54.1', bytes: 1024 })).toBe('ok');
    expect(peers.west!.dataplane.stats().ingress.requests - before.west).toBe(2);
    expect(peers.edge!.dataplane.stats().ingress.requests - before.edge).toBe(2);
  });

  it('refuses at egress a client that a privileged policy denies, and an unknown client', async () => {
    expect(await echoThrough({ host: '127.0.53.1', port: 5201, localAddress: '127.0.54.2', bytes: 1024 })).toBe('refused');
    expect(await echoThrough({ host: '127.0.53.1', port: 5201, localAddress: '127.0.54.9', bytes: 1024 })).toBe('refused');
    expect(peers.east!.dataplane.stats().egress['perf/iperf3']!.denied).toBeGreaterThanOrEqual(2);
  });

  it('refuses at the exporter\'s gateway what its ingress policy denies (edge → west web)', async () => {
    const deniedBefore = peers.west!.dataplane.stats().ingress.denied;
    expect(await echoThrough({ host: '127.0.53.3', port: 8080, localAddress: '127.0.54.3', bytes: 1024 })).toBe('refused');
    expect(peers.west!.dataplane.stats().ingress.denied).toBe(deniedBefore + 1);
    // ...while east's web client is allowed on both sides.
    expect(await echoThrough({ host: '127.0.53.1', port: 8080, localAddress: '127.0.54.3', bytes: 1024 })).toBe('ok');
  });

  it('fails over to the other exporter when one is down', async () => {
    await peers.edge!.dataplane.close();
    try {
      for (let i = 0; i < 4; i++) expect(await echoThrough({ host: '127.0.53.1', port: 5201, localAddress: '127.0.54.1', bytes: 1024 })).toBe('ok');
      expect(peers.east!.dataplane.stats().egress['perf/iperf3']!.failovers).toBeGreaterThanOrEqual(1);
    } finally {
      peers.edge = await startPeer('edge', '127.0.53.3');
    }
  });

  it('keeps resuming TLS sessions across a revision that does not change the gateway\'s identity', async () => {
    const westKey = Object.keys(peers.east!.dataplane.stats().exporters).find((k) => k.startsWith('west@'))!;
    const west = () => peers.east!.dataplane.stats().exporters[westKey]!;
    expect(await echoThrough({ host: '127.0.53.1', port: 8080, localAddress: '127.0.54.3', bytes: 1024 })).toBe('ok');
    // A new revision of the same fabric reaches every data plane (east drops its spares, west keeps its ticket keys).
    await applyFabric(fabric, 'same-identity');
    const before = west();
    for (let i = 0; i < 3; i++) expect(await echoThrough({ host: '127.0.53.1', port: 8080, localAddress: '127.0.54.3', bytes: 1024 })).toBe('ok');
    expect(await waitFor(() => west().handshakes - before.handshakes >= 3)).toBe(true);
    expect(west().resumed - before.resumed).toBe(west().handshakes - before.handshakes);
  });

  it('resumes TLS sessions with a gateway, and again after it restarted (its old tickets refused)', async () => {
    const edgeKey = Object.keys(peers.east!.dataplane.stats().exporters).find((k) => k.startsWith('edge@'))!;
    const edge = () => peers.east!.dataplane.stats().exporters[edgeKey]!;
    // Edge was just restarted: its new ticket keys refuse east's stored session once, then east resumes again.
    const before = edge();
    for (let i = 0; i < 8; i++) expect(await echoThrough({ host: '127.0.53.1', port: 5201, localAddress: '127.0.54.1', bytes: 1024 })).toBe('ok');
    expect(await waitFor(() => edge().handshakes - before.handshakes >= 4)).toBe(true);
    const full = edge().handshakes - before.handshakes - (edge().resumed - before.resumed);
    expect(full).toBeGreaterThanOrEqual(1);
    expect(full).toBeLessThanOrEqual(2);
    expect(edge().resumed - before.resumed).toBeGreaterThanOrEqual(2);
  });

  it('keeps open tunnels across an unrelated change and closes them when the right is revoked', async () => {
    const conn = await openEchoConnection({ host: '127.0.53.1', port: 8080, localAddress: '127.0.54.3' });
    // Unrelated change: a new label on edge. The tunnel east → west stays.
    const files = new Map(fresh.files);
    files.set('peers/edge/peer.yaml', Buffer.from(Buffer.from(files.get('peers/edge/peer.yaml')!).toString().replace('tier: edge', 'tier: edge\n    extra: "1"')));
    expect(await applyFabric(load(files), '2')).toBe(0);
    expect(conn.socket.destroyed).toBe(false);
    // West now denies east's web traffic: the open tunnel closes within this reconcile.
    files.set(
      'peers/west/policies/deny-east-web.yaml',
      Buffer.from(DENY_EAST_WEB),
    );
    expect(await applyFabric(load(files), '3')).toBeGreaterThanOrEqual(1);
    await conn.closed;
    expect(await echoThrough({ host: '127.0.53.1', port: 8080, localAddress: '127.0.54.3', bytes: 1024 })).toBe('refused');
    await applyFabric(load(fresh.files), '4');
    expect(await echoThrough({ host: '127.0.53.1', port: 8080, localAddress: '127.0.54.3', bytes: 1024 })).toBe('ok');
  });
});
