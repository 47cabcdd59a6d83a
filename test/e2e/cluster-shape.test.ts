// The cluster shape as real processes, as deploy/ runs them: per peer `clgo run` (control plane:
// ADS + ext_authz, no --local) and `clgo dataplane` (the Node data plane, configured only over
// xDS). East imports web/http from west; bytes go client → east data plane → west gateway → service.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshExampleFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { echoThrough, startEchoServer, waitFor } from '../fixtures/servers.ts';
import { writePeerSecret } from '../fixtures/peer-secret.ts';
import { Writable } from 'node:stream';
import { main } from '../../reconciler/cli.ts';
import { TYPE_URL } from '../../protocol/envoy-protos.ts';
import { rawAdsClient } from '../xds/raw-ads.ts';

// This file's loopback range: gateways 127.0.121.x, services 127.0.122.x, egress 127.0.123.x, control planes 127.0.125.x.
const rewrite = (t: string): string => t.replaceAll('127.0.10.', '127.0.121.').replaceAll('127.0.20.', '127.0.122.');
const ROOT = join(import.meta.dirname, '../..');
const PEERS = { west: { cp: '127.0.125.2', egress: '127.0.123.2' }, east: { cp: '127.0.125.1', egress: '127.0.123.1' } } as const;
let dir: string;
const children: Array<{ name: string; child: ChildProcess; log: () => string }> = [];
const services: Array<{ close(): Promise<void> }> = [];

function start(name: string, args: string[]): { child: ChildProcess; log: () => string } {
  let log = '';
  const child = spawn(process.execPath, ['bin/clgo.mjs', ...args], { cwd: ROOT });
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  const entry = { name, child, log: () => log };
  children.push(entry);
  return entry;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clgo-cluster-'));
  const fresh = await freshExampleFabric({ rewrite });
  for (const [path, bytes] of fresh.files) {
    await mkdir(dirname(join(dir, 'fabric', path)), { recursive: true });
    await writeFile(join(dir, 'fabric', path), bytes);
  }
  // Only east's client in web (127.0.124.3) is known: clients come from a file in this shape too.
  await writeFile(join(dir, 'clients.yaml'), 'clients:\n  - address: 127.0.124.3\n    namespace: web\n    labels: { app: browser }\n');
  services.push(await startEchoServer('127.0.122.2', 8080));
  for (const [peer, a] of Object.entries(PEERS)) {
    // The peer Secret as both pods mount it: the control plane presents it, the data plane authenticates with it.
    const secret = await writePeerSecret(join(dir, `${peer}-secret`), fresh.peers[peer]!, fresh.ca.certificatePem);
    start(`${peer}-cp`, ['run', '--peer', peer, '--fabric', join(dir, 'fabric'), '--key', secret.privateKeyFile, '--cert', secret.certificateFile, '--xds', `${a.cp}:18000`, '--authz', `${a.cp}:18001`, '--egress-address', a.egress, '--clients', join(dir, 'clients.yaml'), '--admin', `${a.cp}:9090`, '--log-level', 'info']);
    start(`${peer}-dp`, ['dataplane', '--xds', `${a.cp}:18000`, '--node', `${peer}/pod-a`, '--cert', secret.certificateFile, '--key', secret.privateKeyFile, '--ca', secret.caFile, '--health', `${a.cp}:9902`, '--log-level', 'info']);
  }
  const ready = async (url: string): Promise<boolean> => (await fetch(url).catch(() => null))?.status === 200;
  for (const a of Object.values(PEERS)) {
    expect(await waitFor(() => ready(`http://${a.cp}:9090/readyz`), 30_000, 100), children.map((c) => `${c.name}: ${c.log()}`).join('\n')).toBe(true);
    expect(await waitFor(() => ready(`http://${a.cp}:9902/readyz`), 30_000, 100), children.map((c) => `${c.name}: ${c.log()}`).join('\n')).toBe(true);
  }
}, 90_000);

afterAll(async () => {
  for (const { child } of children) if (child.exitCode === null) child.kill('SIGKILL');
  await Promise.all(services.map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
});

describe('cluster shape: clgo run (control plane) + clgo dataplane as processes', () => {
  it('carries allowed traffic end to end and refuses an unknown client', async () => {
    expect(await echoThrough({ host: PEERS.east.egress, port: 8080, localAddress: '127.0.124.3', bytes: 64 * 1024 })).toBe('ok');
    // perf/iperf3 needs a client labelled app=iperf-client: an unknown one is refused at egress.
    expect(await echoThrough({ host: PEERS.east.egress, port: 5201, localAddress: '127.0.124.9', bytes: 16 })).toBe('refused');
    const status = (await (await fetch(`http://${PEERS.west.cp}:9902/status.json`)).json()) as { dataplane: { ingress: { connections: number } } };
    expect(status.dataplane.ingress.connections).toBeGreaterThanOrEqual(1);
  });

  it('the control plane reports the data plane node ACKing its resources, and the key never reaches the logs', async () => {
    const status = (await (await fetch(`http://${PEERS.east.cp}:9090/status.json`)).json()) as { peers: Array<{ xds: { nodes: Array<{ node: string; types: Record<string, { ackedVersion: string | null; sentVersion: string | null }> }> } }> };
    const node = status.peers[0]!.xds.nodes.find((n) => n.node === 'east/pod-a');
    expect(node).toBeDefined();
    expect(Object.values(node!.types).every((t) => t.ackedVersion !== null && t.ackedVersion === t.sentVersion)).toBe(true);
    for (const c of children) expect(c.log()).not.toMatch(/PRIVATE KEY/);
  });

  it("the control plane's /metrics shows its xDS nodes in sync and the decisions it made", async () => {
    const text = await (await fetch(`http://${PEERS.east.cp}:9090/metrics`)).text();
    expect(text).toMatch(/^clgo_xds_node_synced\{node="east\/pod-a"\} 1$/m);
    expect(text).toMatch(/^clgo_xds_acks_total\{node="east\/pod-a",type="Listener"\} [1-9]/m);
    // The first test made one allowed and one refused egress decision on east.
    expect(text).toMatch(/^clgo_authz_decisions_total\{direction="egress",result="allowed",tier="unknown"\} [1-9]/m);
    expect(text).toMatch(/^clgo_authz_decisions_total\{direction="egress",result="denied",tier="default"\} [1-9]/m);
    expect(text).toMatch(/^clgo_fabric_last_good 1$/m);
  });

  it('a client without the peer certificate gets nothing; clgo status shows the data plane in sync and the refusal', async () => {
    const client = rawAdsClient(`${PEERS.east.cp}:18000`);
    const stream = client.sotw();
    stream.write({ node: { id: 'east/intruder' }, type_url: TYPE_URL.secret, resource_names: ['clusterlink/identity'] });
    await expect(stream.next(undefined, 2000)).rejects.toThrow();
    stream.close();
    client.close();
    // The server counts the refusal when the failed handshake is reported (asynchronously).
    const refusedNow = async (): Promise<boolean> => {
      const st = (await (await fetch(`http://${PEERS.east.cp}:9090/status.json`)).json()) as { peers: Array<{ refusedClients: Array<{ reason: string; count: number }> }> };
      return st.peers[0]!.refusedClients.some((r) => r.reason === 'tls-handshake' && r.count > 0);
    };
    expect(await waitFor(refusedNow, 5000, 50)).toBe(true);
    let out = '';
    const stdout = new Writable({ write: (c: Buffer, _e, cb) => ((out += c.toString()), cb()) });
    expect(await main(['node', 'clgo', 'status', '--admin', `http://${PEERS.east.cp}:9090`], { stdout, stderr: stdout }), out).toBe(0);
    expect(out).toMatch(/peer east: ready/);
    expect(out).toMatch(/xds node {4}east\/pod-a: 1 stream\(s\), in sync/);
    // (The data plane may also have been turned away once before the first revision: no-revision.)
    expect(out).toMatch(/refused {5}.*xds\/tls-handshake ×[1-9]/);
    const text = await (await fetch(`http://${PEERS.east.cp}:9090/metrics`)).text();
    expect(text).toMatch(/^clgo_dataplane_auth_refusals_total\{server="xds",reason="tls-handshake"\} [1-9]/m);
  });

  it('every process stops on SIGTERM with exit code 0', async () => {
    for (const { child } of children) child.kill('SIGTERM');
    const codes = await Promise.all(children.map(({ child }) => new Promise<number | null>((r) => (child.exitCode !== null ? r(child.exitCode) : child.on('exit', (c) => r(c))))));
    expect(codes).toEqual(children.map(() => 0));
  });
});
