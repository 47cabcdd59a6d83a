// The cluster shape with real Envoy: three peers of the example fabric (east imports perf/iperf3
// from west and edge, and web/http from west), each with its reconciler as a control plane
// (startControlPlane, what `clgo run` without --kube runs) following the fabric repository over
// smart HTTP (a real `git http-backend`), and a real Envoy started as deploy/ starts the tunnel pod
// (test/fixtures/envoy.ts). Every case moves bytes and checks them at the far end.
//
// Loopback range of this file: 127.0.165.x (gateways .1-.3, services .22/.23, egress .41-.43,
// clients .6x), 127.0.166.x (control planes .1-.3, Envoy admin/health .11-.13, Git server .100).
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TUNNEL } from '../../protocol/contracts.ts';
import { createFabricRepo, type FabricRepo } from '../../reconciler/demo/git-repo.ts';
import { startGitHttpServer, type GitHttpServer } from '../../reconciler/demo/git-http-server.ts';
import type { FreshFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { fingerprintSha256 } from '../../reconciler/pki/index.ts';
import { startControlPlane, type ControlPlane } from '../../reconciler/runtime/control-plane.ts';
import { clientLookup } from '../../reconciler/runtime/local-clients.ts';
import { createGitSource } from '../../reconciler/source/git-source.ts';
import { blockRange, clientsOf, freshFabric, PEERS, type PeerName } from '../faults/harness.ts';
import { dynamicConfig, startEnvoy, type EnvoyProcess } from '../fixtures/envoy.ts';
import { writePeerSecret, type PeerSecretFiles } from '../fixtures/peer-secret.ts';
import { echoOn, echoThrough, openEchoConnection, rawConnect, startEchoServer, waitFor, type EchoConnection } from '../fixtures/servers.ts';
import { EAST_HTTP_IMPORT, EAST_IPERF_IMPORT, WEST_DENY_FILE, WEST_DENY_UNTRUSTED } from '../fixtures/policies.ts';

const R = blockRange(165);
const CP: Record<PeerName, string> = { east: '127.0.166.1', west: '127.0.166.2', edge: '127.0.166.3' };
const ENVOY: Record<PeerName, string> = { east: '127.0.166.11', west: '127.0.166.12', edge: '127.0.166.13' };
const GIT_HOST = '127.0.166.100';
const GATEWAY_PORT = 4443;
const POLL_MS = 150;
/** deploy/base/tunnel.yaml's --drain-time-s. */
const DRAIN_S = 5;


let root: string;
let fresh: FreshFabric;
let repo: FabricRepo;
let git: GitHttpServer;
const planes = {} as Record<PeerName, ControlPlane>;
const secrets = {} as Record<PeerName, PeerSecretFiles>;
const envoys = {} as Record<PeerName, EnvoyProcess>;
const toClose: Array<() => Promise<void>> = [];
const timings: Record<string, number> = {};
type Echo = Awaited<ReturnType<typeof startEchoServer>>;
let westPerf: Echo;
let edgePerf: Echo;
let westWeb: Echo;

const perf = { host: R.egress.east, port: 5201, localAddress: R.client.perf };
const web = { host: R.egress.east, port: 8080, localAddress: R.client.web };
const text = (b: Uint8Array | undefined): string => Buffer.from(b ?? new Uint8Array()).toString('utf8');
const applied = (p: PeerName): string | undefined => planes[p].status().applied?.revision;

function startPlane(peer: PeerName): Promise<ControlPlane> {
  const source = createGitSource({ url: git.repoUrl('fabric.git'), ref: { branch: 'main' }, cacheDir: join(root, `cache-${peer}`), pollIntervalMs: POLL_MS, timeoutMs: 3000, maxBackoffMs: 500 });
  return startControlPlane({
    peer,
    source,
    identity: fresh.peers[peer]!,
    // The peer Secret as the tunnel pod mounts it: named over SDS, read by Envoy, used for the xDS mutual TLS.
    identityFiles: secrets[peer],
    xds: { host: CP[peer], port: 18000 },
    authz: { host: CP[peer], port: 18001 },
    egressAddress: R.egress[peer],
    clientAttributes: clientLookup({ clients: clientsOf(R)[peer] }),
  });
}

function startPeerEnvoy(peer: PeerName): Promise<EnvoyProcess> {
  return startEnvoy({ peer, addresses: { xds: { host: CP[peer], port: 18000 }, admin: { host: ENVOY[peer], port: 9901 }, health: { host: ENVOY[peer], port: 9902 } }, mountDirs: { '/var/run/clgo/peer': secrets[peer].dir } });
}

/** Every node of `peer` has ACKed what its control plane sent (bounded). */
async function synced(peer: PeerName, timeoutMs = 10_000): Promise<boolean> {
  return waitFor(() => {
    const nodes = planes[peer].status().xds.nodes;
    return nodes.length > 0 && nodes.every((n) => Object.values(n.types).every((t) => t.sentVersion !== null && t.ackedVersion === t.sentVersion));
  }, timeoutMs, 50);
}

/** Commits, waits (bounded) until every listed peer's control plane served it and its Envoy ACKed it. */
async function commitAndSync(changes: ReadonlyMap<string, string | null>, message: string, peers: readonly PeerName[] = PEERS): Promise<string> {
  const rev = await repo.commit(changes, message);
  expect(await waitFor(() => peers.every((p) => applied(p) === rev), 10_000, 20), `${message}: not applied by ${peers.filter((p) => applied(p) !== rev).join(', ')}`).toBe(true);
  for (const p of peers) expect(await synced(p), `${p}'s Envoy did not ACK ${message}\n${envoys[p].logTail()}`).toBe(true);
  return rev;
}

/** Sequential echo round trips through east's perf import: how many came back byte for byte, and where they went. */
async function perfRoundTrips(n: number, from = R.client.perf): Promise<{ ok: number; west: number; edge: number }> {
  const before = { west: westPerf.connections(), edge: edgePerf.connections() };
  let ok = 0;
  for (let i = 0; i < n; i++) if ((await echoThrough({ ...perf, localAddress: from, bytes: 32 * 1024, timeoutMs: 5000 })) === 'ok') ok++;
  return { ok, west: westPerf.connections() - before.west, edge: edgePerf.connections() - before.edge };
}

/** Opens echo connections through east's perf import until one lands on `peer`'s service (bounded). */
async function tunnelVia(peer: 'west' | 'edge'): Promise<EchoConnection> {
  const echo = peer === 'west' ? westPerf : edgePerf;
  for (let i = 0; i < 6; i++) {
    const before = echo.connections();
    const conn = await openEchoConnection(perf);
    if (echo.connections() > before) return conn;
    conn.socket.destroy();
  }
  throw new Error(`no tunnel through east's perf import landed on ${peer} in 6 connections`);
}

const stat = async (peer: PeerName, name: string): Promise<number> => {
  const text = await envoys[peer].admin(`/stats?filter=^${name.replaceAll('.', '\\.')}$`);
  return Number(/: (\d+)/.exec(text)?.[1] ?? 0);
};

const peerTls = (peer: PeerName) => ({ cert: fresh.peers[peer]!.certificatePem, key: fresh.peers[peer]!.privateKeyPem, ca: [fresh.ca.certificatePem] });

beforeAll(async () => {
  const t0 = performance.now();
  root = await mkdtemp(join(tmpdir(), 'clgo-envoy-e2e-'));
  fresh = await freshFabric(R);
  const files = new Map<string, Uint8Array | string>(fresh.files);
  files.set(WEST_DENY_FILE, WEST_DENY_UNTRUSTED);
  repo = await createFabricRepo({ root, name: 'fabric', files, message: 'fabric: the example on 127.0.165.x' });
  for (const p of PEERS) secrets[p] = await writePeerSecret(join(root, `${p}-secret`), fresh.peers[p]!, fresh.ca.certificatePem);
  git = await startGitHttpServer({ root, host: GIT_HOST });
  toClose.push(() => git.stop());
  westPerf = await startEchoServer(R.service(2), 5201);
  edgePerf = await startEchoServer(R.service(3), 5201);
  westWeb = await startEchoServer(R.service(2), 8080);
  toClose.push(() => westPerf.close(), () => edgePerf.close(), () => westWeb.close());
  for (const peer of PEERS) planes[peer] = await startPlane(peer);
  const head = await repo.head();
  expect(await waitFor(() => PEERS.every((p) => applied(p) === head), 15_000, 20)).toBe(true);
  for (const peer of PEERS) envoys[peer] = await startPeerEnvoy(peer);
  for (const peer of PEERS) expect(await synced(peer), envoys[peer].logTail()).toBe(true);
  timings.setupMs = performance.now() - t0;
}, 90_000);

afterAll(async () => {
  await Promise.all(Object.values(envoys).map((e) => e.stop()));
  await Promise.all(Object.values(planes).map((p) => p.close()));
  for (const close of toClose.reverse()) await close().catch(() => undefined);
  if (root) await rm(root, { recursive: true, force: true });
  console.log(`envoy e2e timings (ms): ${JSON.stringify(Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v)])))}`);
});

describe('real Envoy end to end: three peers, control planes following Git', () => {
  it('1. round-robin: east’s Envoy balances its perf import over west’s and edge’s Envoy gateways, every byte echoed', async () => {
    const r = await perfRoundTrips(6);
    expect(r.ok).toBe(6);
    expect(r.west).toBeGreaterThan(0);
    expect(r.edge).toBeGreaterThan(0);
    expect(r.west + r.edge).toBe(6);
    expect(await echoThrough({ ...web, bytes: 256 * 1024 })).toBe('ok');
  });

  it('2. denied at egress: an untrusted client is refused by east’s Envoy; nothing reaches an exporter', async () => {
    const before = { west: westPerf.connections(), edge: edgePerf.connections() };
    const gateways = (await stat('west', 'http.clusterlink_ingress.downstream_rq_total')) + (await stat('edge', 'http.clusterlink_ingress.downstream_rq_total'));
    expect(await echoThrough({ ...perf, localAddress: R.client.untrusted, bytes: 1024 })).toBe('refused');
    expect({ west: westPerf.connections(), edge: edgePerf.connections() }).toEqual(before);
    expect((await stat('west', 'http.clusterlink_ingress.downstream_rq_total')) + (await stat('edge', 'http.clusterlink_ingress.downstream_rq_total'))).toBe(gateways);
    expect(await stat('east', 'ext_authz.clusterlink_egress.denied')).toBeGreaterThanOrEqual(1);
    const denied = planes.east.authzCounts().filter((c) => c.direction === 'egress' && c.result === 'denied');
    expect(denied.reduce((n, c) => n + c.count, 0)).toBeGreaterThanOrEqual(1);
  });

  it('3. denied at ingress with egress bypassed: a raw mTLS CONNECT with east’s own certificate to west’s Envoy gateway gets 403 from west’s policy; the same CONNECT without the label is a working tunnel', async () => {
    const before = westPerf.connections();
    const authority = TUNNEL.authority('iperf3', 'perf');
    const denied = await rawConnect({ host: R.gateway(2), port: GATEWAY_PORT, servername: 'west', ...peerTls('east'), authority, headers: { [TUNNEL.headers.clientNamespace]: 'perf', [TUNNEL.headers.clientLabels]: 'app=iperf-client&trust=untrusted' } });
    expect(denied.status).toBe(403);
    expect(denied.headers.get(TUNNEL.headers.denyReason) ?? '').toContain('deny-untrusted-ingress');
    denied.socket.destroy();
    expect(westPerf.connections()).toBe(before);

    const ok = await rawConnect({ host: R.gateway(2), port: GATEWAY_PORT, servername: 'west', ...peerTls('east'), authority, headers: { [TUNNEL.headers.clientNamespace]: 'perf', [TUNNEL.headers.clientLabels]: 'app=iperf-client' } });
    expect(ok.status).toBe(200);
    expect(await echoOn(ok.socket, 64 * 1024)).toBe(true);
    ok.socket.destroy();
    expect(westPerf.connections()).toBe(before + 1);

    // edge is refused http by west's deny-edge-web, whatever its own egress says.
    const edgeAsk = await rawConnect({ host: R.gateway(2), port: GATEWAY_PORT, servername: 'west', ...peerTls('edge'), authority: TUNNEL.authority('http', 'web') });
    expect(edgeAsk.status).toBe(403);
    expect(edgeAsk.headers.get(TUNNEL.headers.denyReason) ?? '').toContain('deny-edge-web');
    edgeAsk.socket.destroy();
  });

  it('4. static failover: with lbScheme static every connection goes to west; when west’s Envoy stops they go to edge; restarted, west’s Envoy comes back to the same config', async () => {
    const imp = text(fresh.files.get(EAST_IPERF_IMPORT));
    const staticImport = imp.replace('lbScheme: round-robin', 'lbScheme: static');
    expect(staticImport).not.toBe(imp);
    await commitAndSync(new Map([[EAST_IPERF_IMPORT, staticImport]]), 'east: perf import static', ['east']);
    expect(await perfRoundTrips(4)).toEqual({ ok: 4, west: 4, edge: 0 });

    const westConfig = dynamicConfig(await envoys.west.configDump());
    await envoys.west.stop();
    // The first connection after the stop may fail: its refused attempt ejects west's gateway
    // (outlier detection, one local-origin failure), but the ejection reaches the workers after
    // that connection's retry was placed. Every later connection goes to edge.
    const t0 = performance.now();
    const first = await perfRoundTrips(1);
    expect(first.west).toBe(0);
    expect(await perfRoundTrips(4)).toEqual({ ok: 4, west: 0, edge: 4 });
    timings.staticFailoverMs = performance.now() - t0;
    timings.staticFailoverFirstConnectionOk = first.ok;

    const t1 = performance.now();
    envoys.west = await startPeerEnvoy('west');
    expect(await synced('west')).toBe(true);
    timings.westEnvoyRestartToSyncedMs = performance.now() - t1;
    expect(dynamicConfig(await envoys.west.configDump())).toEqual(westConfig);
    // West is back: a raw tunnel through the restarted gateway carries bytes.
    const ok = await rawConnect({ host: R.gateway(2), port: GATEWAY_PORT, servername: 'west', ...peerTls('east'), authority: TUNNEL.authority('iperf3', 'perf'), headers: { [TUNNEL.headers.clientNamespace]: 'perf', [TUNNEL.headers.clientLabels]: 'app=iperf-client' } });
    expect(ok.status).toBe(200);
    expect(await echoOn(ok.socket)).toBe(true);
    ok.socket.destroy();
  });

  it('5. a commit failing validation changes nothing: every Envoy keeps an identical config, the open tunnel echoes', async () => {
    const tunnel = await openEchoConnection(web);
    const dumps = Object.fromEntries(await Promise.all(PEERS.map(async (p) => [p, dynamicConfig(await envoys[p].configDump())] as const)));
    const kept = Object.fromEntries(PEERS.map((p) => [p, applied(p)]));
    const typo = text(fresh.files.get(EAST_HTTP_IMPORT)).replace('exportName: http', 'exportName: htpp');
    const bad = await repo.commit(new Map([[EAST_HTTP_IMPORT, typo]]), 'east: a typo in the http import');
    expect(await waitFor(() => PEERS.every((p) => planes[p].status().lastApplyError?.revision === bad || planes[p].status().source.lastError !== null), 10_000, 20)).toBe(true);
    for (const p of PEERS) expect(applied(p)).toBe(kept[p]);
    for (const p of PEERS) expect(dynamicConfig(await envoys[p].configDump())).toEqual(dumps[p]);
    expect(await tunnel.roundTrip(randomBytes(32 * 1024))).toBe(true);
    // Fix it again for the cases below.
    await commitAndSync(new Map([[EAST_HTTP_IMPORT, text(fresh.files.get(EAST_HTTP_IMPORT))]]), 'east: fix the typo');
    expect(await tunnel.roundTrip(randomBytes(4096))).toBe(true);
    tunnel.socket.destroy();
  });

  it('6. a reconciler restart drops no open tunnel: Envoys reconnect, get the same config, change no listener', async () => {
    const tunnel = await openEchoConnection(web);
    const dumps = Object.fromEntries(await Promise.all(PEERS.map(async (p) => [p, dynamicConfig(await envoys[p].configDump())] as const)));
    const modified = Object.fromEntries(await Promise.all(PEERS.map(async (p) => [p, (await stat(p, 'listener_manager.listener_modified')) + (await stat(p, 'cluster_manager.cluster_modified'))] as const)));
    const t0 = performance.now();
    for (const p of ['east', 'west'] as const) {
      await planes[p].close();
      planes[p] = await startPlane(p);
    }
    expect(await waitFor(() => applied('east') !== undefined && applied('west') !== undefined, 10_000, 20)).toBe(true);
    for (const p of ['east', 'west'] as const) expect(await synced(p, 30_000), envoys[p].logTail()).toBe(true);
    timings.reconcilerRestartToSyncedMs = performance.now() - t0;
    for (const p of PEERS) expect(dynamicConfig(await envoys[p].configDump())).toEqual(dumps[p]);
    for (const p of PEERS) expect((await stat(p, 'listener_manager.listener_modified')) + (await stat(p, 'cluster_manager.cluster_modified'))).toBe(modified[p]);
    expect(await tunnel.roundTrip(randomBytes(32 * 1024))).toBe(true);
    expect(await echoThrough({ ...web, bytes: 8192 })).toBe('ok');
    tunnel.socket.destroy();
  });

  it('7. a new export reaches west’s gateway by RDS: its filter chain, and so its open tunnels, stay', async () => {
    const tunnel = await openEchoConnection(web);
    const listenerChanges = async (): Promise<number> => (await stat('west', 'listener_manager.listener_modified')) + (await stat('west', 'listener_manager.listener_in_place_updated'));
    const before = await listenerChanges();
    const exportYaml = `apiVersion: clusterlink.net/v1alpha1\nkind: Export\nmetadata:\n  name: echo\n  namespace: web\nspec:\n  host: ${R.service(2)}\n  port: 8080\n`;
    await commitAndSync(new Map([['peers/west/exports/echo.yaml', exportYaml]]), 'west: export web/echo', ['west']);
    const dump = await envoys.west.configDump();
    const routes = dump.configs.find((c) => c['@type'] === 'type.googleapis.com/envoy.admin.v3.RoutesConfigDump') as { dynamic_route_configs?: Array<{ route_config: { virtual_hosts: Array<{ domains: string[] }> } }> } | undefined;
    expect(routes?.dynamic_route_configs?.flatMap((r) => r.route_config.virtual_hosts.flatMap((v) => v.domains)).sort()).toEqual(['echo.web:443', 'http.web:443', 'iperf3.perf:443']);
    expect(await listenerChanges()).toBe(before);
    expect(await tunnel.roundTrip(randomBytes(32 * 1024))).toBe(true);
    tunnel.socket.destroy();
  });

  it('8. revoking an exporter (edge) drains east’s perf egress filter chain: its open tunnels close within one reconcile plus the drain time; new ones go to west', async () => {
    // Back to round-robin over both exporters, then tunnels from east via west and via edge.
    await commitAndSync(new Map([[EAST_IPERF_IMPORT, text(fresh.files.get(EAST_IPERF_IMPORT))]]), 'east: perf import round-robin again', ['east']);
    const viaWest = await tunnelVia('west');
    const viaEdge = await tunnelVia('edge');
    const closedAt: Record<string, number> = {};
    void viaWest.closed.then(() => (closedAt.west = performance.now()));
    void viaEdge.closed.then(() => (closedAt.edge = performance.now()));
    const inPlace = await stat('east', 'listener_manager.listener_in_place_updated');

    const fabric = parseDocument(text(fresh.files.get('fabric.yaml')));
    fabric.setIn(['spec', 'revoked', 'fingerprints'], [fingerprintSha256(fresh.peers.edge!.certificatePem)]);
    const t0 = performance.now();
    const rev = await repo.commit(new Map([['fabric.yaml', fabric.toString()]]), 'fabric: revoke edge');
    expect(await waitFor(() => applied('east') === rev, 10_000, 20)).toBe(true);
    const reconciledMs = performance.now() - t0;
    // The drain closes the chain's tunnels to west too (docs/xds.md: the cost of closing by filter chain).
    expect(await waitFor(() => closedAt.west !== undefined && closedAt.edge !== undefined, (DRAIN_S + 5) * 1000, 50)).toBe(true);
    timings.revokeExporterCommitToEastAppliedMs = reconciledMs;
    timings.revokeExporterCommitToTunnelsClosedMs = Math.max(closedAt.west!, closedAt.edge!) - t0;
    expect(timings.revokeExporterCommitToTunnelsClosedMs).toBeLessThan(reconciledMs + (DRAIN_S + 3) * 1000);
    expect(await stat('east', 'listener_manager.listener_in_place_updated')).toBeGreaterThan(inPlace);
    expect(await perfRoundTrips(3)).toEqual({ ok: 3, west: 3, edge: 0 });
  });

  it('9. revoking an importer (east) drains the exporters’ gateway filter chains: east’s open tunnels close within one reconcile plus the drain time; east gets no new tunnel', async () => {
    const viaWest = await openEchoConnection(web);
    let closedAt = 0;
    void viaWest.closed.then(() => (closedAt = performance.now()));
    const inPlace = await stat('west', 'listener_manager.listener_in_place_updated');

    const fabric = parseDocument(text(fresh.files.get('fabric.yaml')));
    fabric.setIn(['spec', 'revoked', 'fingerprints'], [fingerprintSha256(fresh.peers.edge!.certificatePem), fingerprintSha256(fresh.peers.east!.certificatePem)]);
    const t0 = performance.now();
    const rev = await repo.commit(new Map([['fabric.yaml', fabric.toString()]]), 'fabric: revoke east too');
    expect(await waitFor(() => applied('west') === rev, 10_000, 20)).toBe(true);
    const reconciledMs = performance.now() - t0;
    expect(await waitFor(() => closedAt > 0, (DRAIN_S + 5) * 1000, 50)).toBe(true);
    timings.revokeImporterCommitToWestAppliedMs = reconciledMs;
    timings.revokeImporterCommitToTunnelClosedMs = closedAt - t0;
    expect(timings.revokeImporterCommitToTunnelClosedMs).toBeLessThan(reconciledMs + (DRAIN_S + 3) * 1000);
    expect(await stat('west', 'listener_manager.listener_in_place_updated')).toBeGreaterThan(inPlace);
    // A new CONNECT with east's certificate fails at west's TLS (east is no importer any more).
    await expect(rawConnect({ host: R.gateway(2), port: GATEWAY_PORT, servername: 'west', ...peerTls('east'), authority: TUNNEL.authority('http', 'web') })).rejects.toThrow();
  });
});
