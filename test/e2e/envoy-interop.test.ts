// Interop both ways between the two data planes, each configured only over xDS by its peer's
// control plane (startControlPlane, `clgo run` without --kube): an Envoy importer (east) tunnels
// to a Node data-plane gateway (west, startXdsDataplane as `clgo dataplane` runs it), then a Node
// importer to an Envoy gateway. The control planes stay up; only the data planes are swapped.
//
// Loopback range of this file: 127.0.167.x (gateways .1-.3, services .22/.23, egress .41-.43,
// clients .6x), 127.0.168.x (control planes .1/.2, Envoy admin/health .11/.12).
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startXdsDataplane, type XdsDataplane } from '../../dataplane/xds-dataplane.ts';
import type { FreshFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { startControlPlane, type ControlPlane } from '../../reconciler/runtime/control-plane.ts';
import { clientLookup } from '../../reconciler/runtime/local-clients.ts';
import { createDirectorySource } from '../../reconciler/source/directory-source.ts';
import { blockRange, clientsOf, freshFabric } from '../faults/harness.ts';
import { startEnvoy, type EnvoyProcess } from '../fixtures/envoy.ts';
import { writePeerSecret, type PeerSecretFiles } from '../fixtures/peer-secret.ts';
import { echoThrough, openEchoConnection, startEchoServer, waitFor } from '../fixtures/servers.ts';

const R = blockRange(167);
type Side = 'east' | 'west';
const CP: Record<Side, string> = { east: '127.0.168.1', west: '127.0.168.2' };
const ENVOY: Record<Side, string> = { east: '127.0.168.11', west: '127.0.168.12' };
const web = { host: R.egress.east, port: 8080, localAddress: R.client.web };

let dir: string;
let fresh: FreshFabric;
const planes = {} as Record<Side, ControlPlane>;
/** Each peer's Secret as its pods mount it: both data planes authenticate with it and read the identity from it. */
const secrets = {} as Record<Side, PeerSecretFiles>;
const running: Array<{ stop(): Promise<void> }> = [];
let westWeb: Awaited<ReturnType<typeof startEchoServer>>;

function envoyFor(peer: Side): Promise<EnvoyProcess> {
  return startEnvoy({ peer, addresses: { xds: { host: CP[peer], port: 18000 }, admin: { host: ENVOY[peer], port: 9901 }, health: { host: ENVOY[peer], port: 9902 } }, mountDirs: { '/var/run/clgo/peer': secrets[peer].dir } });
}

async function nodeFor(peer: Side): Promise<XdsDataplane> {
  const dp = startXdsDataplane({ xds: `${CP[peer]}:18000`, authz: `${CP[peer]}:18001`, nodeId: `${peer}/node`, tls: secrets[peer] });
  if (!(await dp.waitForConfig(undefined, 15_000))) {
    await dp.close();
    throw new Error(`the Node data plane of ${peer} got no config: ${dp.status().lastError ?? ''}`);
  }
  return dp;
}

async function stopAll(): Promise<void> {
  await Promise.all(running.splice(0).map((r) => r.stop()));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clgo-envoy-interop-'));
  fresh = await freshFabric(R);
  for (const [path, bytes] of fresh.files) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), bytes);
  }
  westWeb = await startEchoServer(R.service(2), 8080);
  for (const peer of ['east', 'west'] as const) {
    secrets[peer] = await writePeerSecret(join(dir, '..', `${dir.split('/').pop()}-${peer}-secret`), fresh.peers[peer]!, fresh.ca.certificatePem);
    planes[peer] = await startControlPlane({
      peer,
      source: createDirectorySource({ dir, debounceMs: 30 }),
      identity: fresh.peers[peer]!,
      identityFiles: secrets[peer],
      xds: { host: CP[peer], port: 18000 },
      authz: { host: CP[peer], port: 18001 },
      egressAddress: R.egress[peer],
      clientAttributes: clientLookup({ clients: clientsOf(R)[peer] }),
    });
  }
  expect(await waitFor(() => planes.east.status().ready && planes.west.status().ready, 15_000, 20)).toBe(true);
}, 60_000);

afterAll(async () => {
  await stopAll();
  await Promise.all(Object.values(planes).map((p) => p.close()));
  await westWeb?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  for (const s of Object.values(secrets)) await rm(s.dir, { recursive: true, force: true });
});

describe('interop: Envoy and the Node data plane, both ways', () => {
  afterEach(stopAll);

  it("an Envoy importer tunnels to a Node data-plane gateway: bytes echoed, west's ingress check allowed each CONNECT", async () => {
    const westNode = await nodeFor('west');
    running.push({ stop: () => westNode.close() });
    const eastEnvoy = await envoyFor('east');
    running.push(eastEnvoy);
    const before = westNode.status().dataplane!.ingress;
    const ingressAllowed = (): number => planes.west.authzCounts().filter((c) => c.direction === 'ingress' && c.result === 'allowed').reduce((n, c) => n + c.count, 0);
    const allowedBefore = ingressAllowed();
    expect(await echoThrough({ ...web, bytes: 256 * 1024 }), eastEnvoy.logTail()).toBe('ok');
    const tunnel = await openEchoConnection(web);
    expect(await tunnel.roundTrip(randomBytes(64 * 1024))).toBe(true);
    const after = westNode.status().dataplane!.ingress;
    expect(after.requests - before.requests).toBe(2);
    expect(after.denied).toBe(before.denied);
    expect(ingressAllowed() - allowedBefore).toBe(2);
    tunnel.socket.destroy();
    // An untrusted client is refused at east's Envoy (perf import): nothing reaches west's gateway.
    expect(await echoThrough({ host: R.egress.east, port: 5201, localAddress: R.client.untrusted, bytes: 1024 })).toBe('refused');
    expect(westNode.status().dataplane!.ingress.requests).toBe(after.requests);
  });

  it('a Node importer tunnels to an Envoy gateway: bytes echoed, the gateway counted the CONNECTs', async () => {
    const westEnvoy = await envoyFor('west');
    running.push(westEnvoy);
    const eastNode = await nodeFor('east');
    running.push({ stop: () => eastNode.close() });
    const requests = async (): Promise<number> => Number(/: (\d+)/.exec(await westEnvoy.admin('/stats?filter=^http\\.clusterlink_ingress\\.downstream_rq_total$'))?.[1] ?? 0);
    const before = await requests();
    expect(await echoThrough({ ...web, bytes: 256 * 1024 }), westEnvoy.logTail()).toBe('ok');
    const tunnel = await openEchoConnection(web);
    expect(await tunnel.roundTrip(randomBytes(64 * 1024))).toBe(true);
    tunnel.socket.destroy();
    expect((await requests()) - before).toBe(2);
    expect(eastNode.status().dataplane!.egress['web/http']).toMatchObject({ connections: 2, denied: 0, failed: 0 });
  });
});
