// xDS push latency: from a changed Slice to every affected resource pushed by the ADS server and
// received by the clients.
//  - 1 and 100 connected clients: the Node data plane's own xDS client (SotW), all of one peer
//    (node ids `east/<i>`); the clock stops when every client has handed the data plane a config
//    with the change (decode + consistency check included). The change alternates a gateway port of
//    one upstream peer: slice → buildResources → setSnapshot → EDS push → ACK.
//  - a fabric of 1,000 peers (test/fixtures/generate-fabric.ts: 20,000 exports, 50,000 imports):
//    one raw SotW ADS stream per peer, subscribed to all its clusters and endpoints and ACKing; one
//    exporting peer's gateway changes; the clock runs from the changed slices of the affected
//    importers (slicing is slice-policy.bench's) through buildResources + setSnapshot of each, to
//    the last affected stream having received its new ClusterLoadAssignment.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { startXdsClient, type XdsClient } from '../../dataplane/xds-client/client.ts';
import { decodeAny, TYPE_URL } from '../../protocol/envoy-protos.ts';
import { readFabricDir } from '../../schema/read-dir.ts';
import { EXAMPLE_DIR } from '../../reconciler/demo/fresh-fabric.ts';
import { sliceAll, slice as sliceOf } from '../../reconciler/slice/slice.ts';
import type { Slice } from '../../reconciler/slice/types.ts';
import { startAdsServer } from '../../reconciler/xds/ads-server.ts';
import { buildResources, XDS_NAMES, type ResourceOptions } from '../../reconciler/xds/resources.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import { generateFabricFiles } from '../fixtures/generate-fabric.ts';
import { rawAdsClient, type RawAdsStream, type SotwResponse } from '../xds/raw-ads.ts';
import { percentile, row, type Benchmark, type BenchResult } from './harness.ts';

const PLACEHOLDER_KEY = '-----BEGIN PRIVATE KEY-----\nplaceholder\n-----END PRIVATE KEY-----\n';
/** The identity secret names files the data planes read (the Node clients below read these). */
const SECRET_DIR = mkdtempSync(join(tmpdir(), 'clgo-xds-bench-'));
const OPTS: ResourceOptions = {
  egressAddress: '127.0.0.1',
  authz: { host: '127.0.0.1', port: 9191 },
  identityFiles: { certificateFile: join(SECRET_DIR, 'tls.crt'), privateKeyFile: join(SECRET_DIR, 'tls.key') },
};
const TIMEOUT_MS = 10_000;

/** Resolves when check() holds (checked on every notify() and every 5 ms), or rejects after timeoutMs. */
function until(check: () => boolean, timeoutMs = TIMEOUT_MS): Promise<void> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const tick = (): void => {
      if (check()) return resolve();
      if (performance.now() - t0 > timeoutMs) return reject(new Error(`not converged within ${timeoutMs} ms`));
      setImmediate(tick);
    };
    tick();
  });
}

/** A copy of the slice with `peer`'s first gateway on `port`. */
function withGatewayPort(s: Slice, peer: string, port: number): Slice {
  return { ...s, members: s.members.map((m) => (m.name === peer ? { ...m, gateways: m.gateways.map((g, i) => (i === 0 ? { ...g, port } : g)) } : m)) };
}

async function connectedClients(count: number, rounds: number): Promise<{ samples: number[]; note: string }> {
  const r = loadFabricFiles(await readFabricDir(EXAMPLE_DIR));
  if (!r.ok) throw new Error('fabric-example invalid');
  const base = sliceOf(r.fabric, 'east');
  const upstream = base.members.find((m) => m.gateways.length > 0)!.name;
  const ads = await startAdsServer();
  writeFileSync(OPTS.identityFiles.certificateFile, base.self.certificatePem!);
  writeFileSync(OPTS.identityFiles.privateKeyFile, PLACEHOLDER_KEY, { mode: 0o600 });
  ads.setSnapshot('east', buildResources(base, OPTS));
  // Port seen by each client for the changing upstream.
  const seen = new Array<number>(count).fill(0);
  const clients: XdsClient[] = [];
  try {
    for (let i = 0; i < count; i++) {
      clients.push(
        startXdsClient({
          server: `127.0.0.1:${ads.address.port}`,
          nodeId: `east/${i}`,
          logger: pino({ level: 'silent' }),
          onConfig: (c) => {
            seen[i] = c.upstreams.find((u) => u.peer === upstream)?.endpoints[0]?.port ?? 0;
          },
        }),
      );
    }
    const first = base.members.find((m) => m.name === upstream)!.gateways[0]!.port;
    await until(() => seen.every((p) => p === first), 20_000);
    const samples: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const port = 20_000 + round;
      const changed = withGatewayPort(base, upstream, port);
      const t0 = performance.now();
      ads.setSnapshot('east', buildResources(changed, OPTS));
      await until(() => seen.every((p) => p === port));
      samples.push(performance.now() - t0);
    }
    return { samples, note: `${count} Node data-plane xDS clients (SotW) of one peer; change = one upstream gateway port; until every client's onConfig saw it` };
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    await ads.close();
  }
}

interface Subscriber {
  peer: string;
  stream: RawAdsStream<SotwResponse>;
  /** Port of each CLA last received. */
  ports: Map<string, number>;
}

/** A raw SotW subscriber that ACKs everything and records the first endpoint port of each CLA. */
function subscribe(stream: RawAdsStream<SotwResponse>, peer: string, clusterNames: string[]): Subscriber {
  const sub: Subscriber = { peer, stream, ports: new Map() };
  const pump = async (): Promise<void> => {
    for (;;) {
      let res: SotwResponse;
      try {
        res = await stream.next(undefined, 3_600_000);
      } catch {
        return;
      }
      if (res.type_url === TYPE_URL.endpoint) {
        for (const any of res.resources) {
          const cla = decodeAny(any.type_url, any.value) as { cluster_name: string; endpoints?: Array<{ lb_endpoints?: Array<{ endpoint?: { address?: { socket_address?: { port_value?: number } } } }> }> };
          sub.ports.set(cla.cluster_name, cla.endpoints?.[0]?.lb_endpoints?.[0]?.endpoint?.address?.socket_address?.port_value ?? 0);
        }
      }
      stream.write({ type_url: res.type_url, response_nonce: res.nonce, version_info: res.version_info, resource_names: res.type_url === TYPE_URL.endpoint ? clusterNames : [] });
    }
  };
  stream.write({ node: { id: peer }, type_url: TYPE_URL.cluster, resource_names: [] });
  stream.write({ type_url: TYPE_URL.endpoint, resource_names: clusterNames });
  void pump();
  return sub;
}

async function largeFabric(rounds: number): Promise<{ samples: number[]; onePeer: number[]; affected: number; note: string }> {
  const files = generateFabricFiles({ peers: 1000, exports: 20_000, imports: 50_000, policies: 5000 });
  const r = loadFabricFiles(files);
  if (!r.ok) throw new Error('generated fabric invalid');
  const slices = sliceAll(r.fabric);
  // The exporter imported by the most peers.
  const importers = new Map<string, string[]>();
  for (const [peer, s] of slices) for (const m of s.members) if (m.gateways.length > 0) importers.set(m.name, [...(importers.get(m.name) ?? []), peer]);
  const [exporter, affected] = [...importers].sort((a, b) => b[1].length - a[1].length)[0]!;
  const ads = await startAdsServer();
  const raw = rawAdsClient(`127.0.0.1:${ads.address.port}`);
  const subs: Subscriber[] = [];
  try {
    for (const [peer, s] of slices) ads.setSnapshot(peer, buildResources(s, OPTS));
    for (const [peer, s] of slices) subs.push(subscribe(raw.sotw(), peer, s.members.filter((m) => m.gateways.length > 0).map((m) => XDS_NAMES.peer(m.name))));
    const cluster = XDS_NAMES.peer(exporter);
    const affectedSubs = subs.filter((x) => affected.includes(x.peer));
    await until(() => affectedSubs.every((x) => x.ports.get(cluster) === 443), 60_000);
    const samples: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const port = 30_000 + round;
      const changed = affected.map((p) => [p, withGatewayPort(slices.get(p)!, exporter, port)] as const);
      const t0 = performance.now();
      for (const [p, s] of changed) ads.setSnapshot(p, buildResources(s, OPTS));
      await until(() => affectedSubs.every((x) => x.ports.get(cluster) === port));
      samples.push(performance.now() - t0);
    }
    // One reconciler's view (each peer runs its own): the largest affected slice alone.
    const [big] = affected.map((p) => [p, slices.get(p)!] as const).sort((a, b) => b[1].members.length + b[1].imports.length - (a[1].members.length + a[1].imports.length));
    const bigSub = affectedSubs.find((x) => x.peer === big![0])!;
    const onePeer: number[] = [];
    for (let round = 0; round < rounds * 4; round++) {
      const port = 40_000 + round;
      const changed = withGatewayPort(big![1], exporter, port);
      const t0 = performance.now();
      ads.setSnapshot(big![0], buildResources(changed, OPTS));
      await until(() => bigSub.ports.get(cluster) === port);
      onePeer.push(performance.now() - t0);
    }
    return { samples, onePeer, affected: affected.length, note: `1,000 peers / 20,000 exports / 50,000 imports, ${slices.size} ADS streams; one exporter's gateway changes → ${affected.length} importers rebuilt + pushed + received` };
  } finally {
    for (const x of subs) x.stream.close();
    raw.close();
    await ads.close();
  }
}

async function run(): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const one = await connectedClients(1, 60);
  const p50 = percentile(one.samples, 50);
  out.push(row('xds.push.1-client.p50', p50, 'ms', '< 100 ms', p50 < 100, one.note), row('xds.push.1-client.p99', percentile(one.samples, 99), 'ms', '', null));
  const hundred = await connectedClients(100, 30);
  out.push(row('xds.push.100-clients.p50', percentile(hundred.samples, 50), 'ms', '', null, hundred.note), row('xds.push.100-clients.p99', percentile(hundred.samples, 99), 'ms', '', null));
  const large = await largeFabric(10);
  const onePeer50 = percentile(large.onePeer, 50);
  out.push(
    row('xds.push.1000-peers.one-peer.p50', onePeer50, 'ms', '< 100 ms', onePeer50 < 100, 'one reconciler of a 1,000-peer fabric: its (largest affected) slice changes → build + push + received by its data plane'),
    row('xds.push.1000-peers.one-peer.p99', percentile(large.onePeer, 99), 'ms', '', null),
    row('xds.push.1000-peers.all-affected.p50', percentile(large.samples, 50), 'ms', '', null, large.note + ' (all in one process: the work of that many reconcilers, serially)'),
    row('xds.push.1000-peers.all-affected.p99', percentile(large.samples, 99), 'ms', '', null),
  );
  return out;
}

export const benchmarks: Benchmark[] = [
  {
    name: 'xds',
    description: 'changed slice → resources pushed by the ADS server and received: 1 client, 100 clients, a 1,000-peer fabric',
    run,
  },
];
