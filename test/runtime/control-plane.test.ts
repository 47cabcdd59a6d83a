// Cluster-shaped delivery: per peer a control plane (source → slice → ADS + ext_authz) and a Node
// data plane that knows nothing but the control plane's addresses (xDS client + remote ext_authz),
// exactly as a tunnel pod runs. Traffic flows, a policy commit closes the tunnel it revokes, and
// the data plane keeps serving its last config while its control plane is down.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startXdsDataplane, type XdsDataplane } from '../../dataplane/xds-dataplane.ts';
import { freshExampleFabric, type FreshFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { startControlPlane, type ControlPlane } from '../../reconciler/runtime/control-plane.ts';
import { clientLookup } from '../../reconciler/runtime/local-clients.ts';
import { createDirectorySource } from '../../reconciler/source/directory-source.ts';
import { echoThrough, openEchoConnection, startEchoServer, waitFor } from '../fixtures/servers.ts';
import { DENY_EAST_WEB } from '../fixtures/policies.ts';
import { writePeerSecret, type PeerSecretFiles } from '../fixtures/peer-secret.ts';

// This file's loopback range: gateways 127.0.111.x, services 127.0.112.x, egress 127.0.113.x, clients 127.0.114.x, control planes 127.0.115.x.
const rewrite = (t: string): string => t.replaceAll('127.0.10.', '127.0.111.').replaceAll('127.0.20.', '127.0.112.');
const CLIENTS = clientLookup({
  clients: [
    { address: '127.0.114.1', namespace: 'perf', labels: { app: 'iperf-client' } },
    { address: '127.0.114.3', namespace: 'web', labels: { app: 'browser' } },
  ],
});
const EGRESS: Record<string, string> = { east: '127.0.113.1', west: '127.0.113.2', edge: '127.0.113.3' };
const CP_HOST: Record<string, string> = { east: '127.0.115.1', west: '127.0.115.2', edge: '127.0.115.3' };

let dir: string;
let fresh: FreshFabric;
const planes: Record<string, ControlPlane> = {};
const dataplanes: Record<string, XdsDataplane> = {};
const services: Array<{ close(): Promise<void> }> = [];
const secrets: Record<string, PeerSecretFiles> = {};

async function writeFabric(files: ReadonlyMap<string, Uint8Array | string>): Promise<void> {
  for (const [path, bytes] of files) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), bytes);
  }
}

async function startPlane(peer: string, port = 0, authzPort = 0): Promise<ControlPlane> {
  return startControlPlane({
    peer,
    source: createDirectorySource({ dir, debounceMs: 50 }),
    identity: { privateKeyPem: fresh.peers[peer]!.privateKeyPem, certificatePem: fresh.peers[peer]!.certificatePem },
    identityFiles: secrets[peer]!,
    xds: { host: CP_HOST[peer]!, port },
    authz: { host: CP_HOST[peer]!, port: authzPort },
    egressAddress: EGRESS[peer]!,
    clientAttributes: CLIENTS,
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clgo-cp-'));
  fresh = await freshExampleFabric({ rewrite });
  await writeFabric(fresh.files);
  services.push(await startEchoServer('127.0.112.2', 5201), await startEchoServer('127.0.112.2', 8080), await startEchoServer('127.0.112.3', 5201));
  for (const peer of ['west', 'edge', 'east']) {
    secrets[peer] = await writePeerSecret(join(dir, '..', `${dir.split('/').pop()}-secret-${peer}`), fresh.peers[peer]!, fresh.ca.certificatePem);
    const plane = await startPlane(peer);
    planes[peer] = plane;
    dataplanes[peer] = startXdsDataplane({ xds: `${plane.xdsAddress.host}:${plane.xdsAddress.port}`, authz: plane.authzAddress, nodeId: `${peer}/pod-1`, tls: secrets[peer]! });
  }
  for (const peer of Object.keys(dataplanes)) expect(await dataplanes[peer]!.waitForConfig(undefined, 10_000), peer).toBe(true);
});

afterAll(async () => {
  await Promise.all(Object.values(dataplanes).map((d) => d.close()));
  await Promise.all(Object.values(planes).map((p) => p.close()));
  await Promise.all(services.map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
  for (const s of Object.values(secrets)) await rm(s.dir, { recursive: true, force: true });
});

describe('control plane → xDS → Node data plane', () => {
  it('serves each peer its resources over ADS and carries traffic end to end', async () => {
    for (const [peer, plane] of Object.entries(planes)) {
      // Every type the node subscribed is ACKed at the version sent (ACKs arrive asynchronously).
      const acked = (): boolean => {
        const node = plane.status().xds.nodes.find((n) => n.node === `${peer}/pod-1`);
        return node !== undefined && Object.keys(node.types).length >= 2 && Object.values(node.types).every((t) => t.sentVersion !== null && t.ackedVersion === t.sentVersion);
      };
      expect(await waitFor(acked, 5000), peer).toBe(true);
    }
    expect(await echoThrough({ host: EGRESS.east!, port: 5201, localAddress: '127.0.114.1', bytes: 256 * 1024 })).toBe('ok');
    expect(await echoThrough({ host: EGRESS.east!, port: 8080, localAddress: '127.0.114.3', bytes: 4096 })).toBe('ok');
    // A client the egress policy does not allow is refused (decided by the control plane's ext_authz).
    expect(await echoThrough({ host: EGRESS.east!, port: 5201, localAddress: '127.0.114.9', bytes: 16 })).toBe('refused');
  });

  it('a policy commit closes the tunnel it revokes; reverting reopens the path', async () => {
    const conn = await openEchoConnection({ host: EGRESS.east!, port: 8080, localAddress: '127.0.114.3' });
    const rev = planes.west!.status().applied!.revision;
    await writeFile(
      join(dir, 'peers/west/policies/deny-east-web.yaml'),
      DENY_EAST_WEB,
    );
    expect(await waitFor(() => planes.west!.status().applied!.revision !== rev, 5000)).toBe(true);
    // West's data plane re-checks open tunnels with west's ext_authz when its config changes.
    expect(await waitFor(() => conn.socket.destroyed, 5000)).toBe(true);
    expect(await echoThrough({ host: EGRESS.east!, port: 8080, localAddress: '127.0.114.3', bytes: 64 })).toBe('refused');
    await rm(join(dir, 'peers/west/policies/deny-east-web.yaml'));
    expect(await waitFor(async () => (await echoThrough({ host: EGRESS.east!, port: 8080, localAddress: '127.0.114.3', bytes: 64 })) === 'ok', 5000)).toBe(true);
  });

  it('re-checks open tunnels only when authorization inputs change, not when only a port moved', async () => {
    const conn = await openEchoConnection({ host: EGRESS.east!, port: 8080, localAddress: '127.0.114.3' });
    const east = (): { version: string; revalidations: number } => {
      const st = dataplanes.east!.status().dataplane!;
      return { version: st.version, revalidations: st.revalidations };
    };
    const before = east();
    const importPath = join(dir, 'peers/east/imports/iperf3.yaml');
    const original = Buffer.from(fresh.files.get('peers/east/imports/iperf3.yaml')!).toString('utf8');
    // East's perf import moves from :5201 to :5202: a new listener, the same rights.
    await writeFile(importPath, original.replace('port: 5201', 'port: 5202'));
    try {
      expect(await waitFor(() => east().version !== before.version, 5000)).toBe(true);
      expect(await waitFor(async () => (await echoThrough({ host: EGRESS.east!, port: 5202, localAddress: '127.0.114.1', bytes: 64 })) === 'ok', 5000)).toBe(true);
      expect(east().revalidations).toBe(before.revalidations);
      expect(conn.socket.destroyed).toBe(false);
      // Dropping edge from the import's exporters changes a right: east re-checks (its web tunnel to west stays).
      const mid = east();
      await writeFile(importPath, original.replace(/\n\s*- peer: edge\n\s*exportName: iperf3\n\s*exportNamespace: perf\n?/, '\n'));
      expect(await waitFor(() => east().revalidations > mid.revalidations, 5000)).toBe(true);
      expect(conn.socket.destroyed).toBe(false);
    } finally {
      await writeFile(importPath, original);
      conn.socket.destroy();
    }
    expect(await waitFor(async () => (await echoThrough({ host: EGRESS.east!, port: 5201, localAddress: '127.0.114.1', bytes: 64 })) === 'ok', 5000)).toBe(true);
  });

  it('keeps open tunnels flowing while the control plane is away, and resumes when it returns', async () => {
    const conn = await openEchoConnection({ host: EGRESS.east!, port: 5201, localAddress: '127.0.114.1' });
    const port = planes.east!.xdsAddress.port;
    const authzPort = Number(planes.east!.authzAddress.split(':').pop());
    await planes.east!.close();
    // Bytes keep flowing on the established tunnel with east's control plane gone.
    expect(await conn.roundTrip(Buffer.alloc(32 * 1024, 7))).toBe(true);
    expect(dataplanes.east!.status().dataplane?.egress).toBeDefined();
    // New connections need an authorization decision: they fail closed while it is away.
    expect(await echoThrough({ host: EGRESS.east!, port: 5201, localAddress: '127.0.114.1', bytes: 16 })).toBe('refused');
    planes.east = await startPlane('east', port, authzPort);
    expect(await waitFor(async () => (await echoThrough({ host: EGRESS.east!, port: 5201, localAddress: '127.0.114.1', bytes: 1024 })) === 'ok', 10_000)).toBe(true);
    expect(await conn.roundTrip(Buffer.alloc(1024, 9))).toBe(true);
    conn.socket.destroy();
  });
});
