// Envoy checks the control plane too: deploy's bootstrap accepts the xDS server only with a
// certificate from the fabric CA that names this peer (the static secret the pod's --config-yaml
// adds with $(PEER_NAME)). A control plane presenting another peer's valid certificate — say a
// neighbour of the fabric that got between the tunnel pod and its reconciler — configures nothing.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshExampleFabric, type FreshFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { startControlPlane, type ControlPlane } from '../../reconciler/runtime/control-plane.ts';
import { createDirectorySource } from '../../reconciler/source/directory-source.ts';
import { envoyBinary, hostEnvoy, type HostEnvoy } from '../fixtures/envoy.ts';
import { writePeerSecret, type PeerSecretFiles } from '../fixtures/peer-secret.ts';
import { waitFor } from '../fixtures/servers.ts';

// This file's loopback range: 127.0.164.10-.19.
const CP = '127.0.164.10';
const ENVOY_AT = '127.0.164.11';

let dir: string;
let fresh: FreshFabric;
let secret: PeerSecretFiles;
let plane: ControlPlane | null = null;
let envoy: { child: ChildProcess; host: HostEnvoy } | null = null;

async function stat(name: string): Promise<number> {
  const text = await (await fetch(`http://${ENVOY_AT}:9901/stats?filter=${encodeURIComponent(`^${name.replaceAll('.', '\\.')}$`)}`)).text();
  return Number(/: (\d+)/.exec(text)?.[1] ?? 0);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clgo-envoy-cp-identity-'));
  fresh = await freshExampleFabric();
  for (const [path, bytes] of fresh.files) {
    await mkdir(dirname(join(dir, 'fabric', path)), { recursive: true });
    await writeFile(join(dir, 'fabric', path), bytes);
  }
  secret = await writePeerSecret(join(dir, 'east-secret'), fresh.peers.east!, fresh.ca.certificatePem);
  // East's control plane, but presenting west's (valid, same CA) certificate. It would admit east's
  // Envoy: the committed east certificate is pinned.
  plane = await startControlPlane({
    peer: 'east',
    source: createDirectorySource({ dir: join(dir, 'fabric'), debounceMs: 50 }),
    identity: fresh.peers.west!,
    identityFiles: secret,
    xds: { host: CP, port: 0 },
    authz: { host: CP, port: 0 },
    egressAddress: CP,
    clientAttributes: () => null,
  });
  expect(await waitFor(() => plane!.status().ready, 10_000)).toBe(true);
  const host = hostEnvoy({ peer: 'east', pod: 'pod-0', addresses: { xds: { host: CP, port: plane.xdsAddress.port }, admin: { host: ENVOY_AT, port: 9901 }, health: { host: ENVOY_AT, port: 9902 } }, mountDirs: { '/var/run/clgo/peer': secret.dir }, extraArgs: ['--concurrency', '1'] });
  const child = spawn(envoyBinary(), host.argv.slice(1), { stdio: 'ignore' });
  envoy = { child, host };
}, 60_000);

afterAll(async () => {
  if (envoy) {
    envoy.child.kill('SIGKILL');
    rmSync(envoy.host.dir, { recursive: true, force: true });
  }
  await plane?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("Envoy (deploy's bootstrap) and a control plane with another peer's certificate", () => {
  it('refuses it at the TLS handshake (SAN is not this peer) and gets no configuration', async () => {
    expect(await waitFor(async () => (await stat('cluster.xds_cluster.ssl.fail_verify_san').catch(() => 0)) > 0, 30_000, 200)).toBe(true);
    expect(plane!.status().xds.nodes).toEqual([]);
    expect(await stat('listener_manager.total_listeners_active')).toBe(1); // only deploy's static health listener
  });
});
