// A NACK from the real Envoy, started as deploy/ starts the tunnel pod (test/fixtures/envoy.ts),
// authenticated to the control plane with the peer Secret. A user commits an import on a port that
// another process already holds on the import address: Envoy cannot bind the listener and rejects
// the update. The control plane reports it — status condition xdsAccepted with Envoy's own reason,
// clgo_xds_nacks_total, a log line — does not re-send it in a loop, and Envoy keeps serving its
// last accepted listeners. A fixing commit (a free port) is accepted and clears the condition.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshExampleFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { createControlPlaneMetrics } from '../../reconciler/runtime/control-plane-metrics.ts';
import { startControlPlane, type ControlPlane } from '../../reconciler/runtime/control-plane.ts';
import { createDirectorySource } from '../../reconciler/source/directory-source.ts';
import { TYPE_URL } from '../../protocol/envoy-protos.ts';
import { activeListeners, startEnvoy, type EnvoyProcess } from '../fixtures/envoy.ts';
import { writePeerSecret } from '../fixtures/peer-secret.ts';
import { waitFor } from '../fixtures/servers.ts';

// This file's loopback range: 127.0.161.x (control plane .1, Envoy admin/health .10, import listeners .5).
const CP = '127.0.161.1';
const ENVOY_AT = '127.0.161.10';
const EGRESS = '127.0.161.5';
const BUSY_PORT = 9999;
const rewrite = (t: string): string => t.replaceAll('127.0.10.', '127.0.162.').replaceAll('127.0.20.', '127.0.163.');
const BLOCKED_IMPORT = `apiVersion: clusterlink.net/v1alpha1
kind: Import
metadata:
  name: blocked
  namespace: web
spec:
  port: ${BUSY_PORT}
  sources:
    - peer: west
      exportName: http
      exportNamespace: web
`;

let dir: string;
let plane: ControlPlane;
let envoy: EnvoyProcess;
let squatter: net.Server;
const logLines: string[] = [];

const listenerStatus = () => plane.status().xds.nodes.find((n) => n.node === 'east/pod-0')?.types[TYPE_URL.listener];
const connects = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = net.connect({ host: EGRESS, port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
    s.setTimeout(2000, () => {
      s.destroy();
      resolve(false);
    });
  });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clgo-envoy-nack-'));
  const fresh = await freshExampleFabric({ rewrite });
  for (const [path, bytes] of fresh.files) {
    await mkdir(dirname(join(dir, 'fabric', path)), { recursive: true });
    await writeFile(join(dir, 'fabric', path), bytes);
  }
  const secret = await writePeerSecret(join(dir, 'east-secret'), fresh.peers.east!, fresh.ca.certificatePem);
  const logger = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _e, cb) => (logLines.push(chunk.toString()), cb()) }));
  plane = await startControlPlane({
    peer: 'east',
    source: createDirectorySource({ dir: join(dir, 'fabric'), debounceMs: 50 }),
    identity: fresh.peers.east!,
    identityFiles: secret,
    xds: { host: CP, port: 0 },
    authz: { host: CP, port: 0 },
    egressAddress: EGRESS,
    clientAttributes: () => null,
    logger,
  });
  // A process of the user's already listens on the port the next commit gives an import.
  squatter = net.createServer((s) => s.destroy());
  await new Promise<void>((resolve) => squatter.listen(BUSY_PORT, EGRESS, resolve));
  envoy = await startEnvoy({
    peer: 'east',
    pod: 'pod-0',
    addresses: { xds: { host: CP, port: plane.xdsAddress.port }, admin: { host: ENVOY_AT, port: 9901 }, health: { host: ENVOY_AT, port: 9902 } },
    mountDirs: { '/var/run/clgo/peer': secret.dir },
    extraArgs: ['--concurrency', '1'],
    readyTimeoutMs: 60_000,
  });
}, 120_000);

afterAll(async () => {
  await envoy?.stop();
  await plane?.close();
  await new Promise<void>((r) => (squatter ? squatter.close(() => r()) : r()));
  await rm(dir, { recursive: true, force: true });
});

describe('a configuration the real Envoy rejects', () => {
  it('Envoy authenticates, ACKs the first revision and serves the import listeners', async () => {
    expect(await waitFor(() => listenerStatus()?.ackedVersion != null && listenerStatus()?.ackedVersion === listenerStatus()?.sentVersion, 20_000), envoy.logTail()).toBe(true);
    expect(activeListeners(await envoy.configDump())).toEqual(['clusterlink/egress/perf/iperf3', 'clusterlink/egress/web/http']);
    expect(plane.status().xdsAccepted.status).toBe('True');
    expect(await connects(8080)).toBe(true);
  });

  it('is NACKed with Envoy\'s reason, reported in status, metric and log, not re-sent, and the last accepted listeners keep serving', async () => {
    const before = listenerStatus()!;
    await writeFile(join(dir, 'fabric', 'peers', 'east', 'imports', 'blocked.yaml'), BLOCKED_IMPORT);
    expect(await waitFor(() => listenerStatus()?.nack != null, 20_000), envoy.logTail()).toBe(true);
    const st = listenerStatus()!;
    expect(st.nack!.message).toMatch(/Address already in use/);
    expect(st.nack!.message).toContain(`${EGRESS}:${BUSY_PORT}`);
    expect(st.ackedVersion).toBe(before.ackedVersion);
    const condition = plane.status().xdsAccepted;
    expect(condition).toMatchObject({ status: 'False', reason: 'Rejected' });
    expect(condition.message).toMatch(/east\/pod-0 rejected Listener version \d+ .*Address already in use/);
    const metrics = await createControlPlaneMetrics(plane, { processMetrics: false }).render();
    expect(metrics).toMatch(/^clgo_xds_nacks_total\{node="east\/pod-0",type="Listener"\} [1-9]/m);
    expect(metrics).toMatch(/^clgo_xds_node_synced\{node="east\/pod-0"\} 0$/m);
    expect(logLines.some((l) => l.includes('NACK') && l.includes('Address already in use'))).toBe(true);
    // No re-send loop: the rejected version is not pushed again while nothing changes.
    const pushes = st.pushes;
    await new Promise((r) => setTimeout(r, 2000));
    expect(listenerStatus()!.pushes).toBe(pushes);
    // Envoy keeps its accepted listeners; the import that could not bind is not there.
    expect(activeListeners(await envoy.configDump())).toEqual(['clusterlink/egress/perf/iperf3', 'clusterlink/egress/web/http']);
    expect(await connects(8080)).toBe(true);
  });

  it('a commit moving the import to a free port is accepted and the condition clears', async () => {
    await writeFile(join(dir, 'fabric', 'peers', 'east', 'imports', 'blocked.yaml'), BLOCKED_IMPORT.replace(`port: ${BUSY_PORT}`, `port: ${BUSY_PORT - 1}`));
    expect(await waitFor(() => plane.status().xdsAccepted.status === 'True', 20_000), JSON.stringify(plane.status().xdsAccepted)).toBe(true);
    expect(activeListeners(await envoy.configDump())).toContain('clusterlink/egress/web/blocked');
    expect(await connects(BUSY_PORT - 1)).toBe(true);
  });
});
