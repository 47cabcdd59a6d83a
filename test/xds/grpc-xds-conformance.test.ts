// Conformance of the reconciler's ADS server with a real third-party xDS client: @grpc/grpc-js-xds
// (gRPC's own xDS implementation) resolves `xds:///echo` through our server — Listener (api_listener
// with an HttpConnectionManager using RDS) → RouteConfiguration → Cluster (EDS) →
// ClusterLoadAssignment — and its RPCs reach a gRPC server on loopback. It ACKs, follows an
// endpoint change, and NACKs an invalid Cluster; our server records the NACK with the client's
// error detail and the client keeps working on the last good config.
//
// grpc-js-xds speaks State of the World only (its XdsClient opens StreamAggregatedResources and
// never DeltaAggregatedResources), so Delta is exercised with a raw @grpc/grpc-js ADS client whose
// every resource is decoded with Envoy's protos. The raw client also pins two protocol corner cases
// of the server: a subscription change carried by a stale-nonce request, and removals after a NACK.
import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeAny, encodeAny, TYPE_URL } from '../../protocol/envoy-protos.ts';
import { startAdsServer, type AdsServer } from '../../reconciler/xds/ads-server.ts';
import { buildResources, type AnyResource, type XdsResources } from '../../reconciler/xds/resources.ts';
import { slice } from '../../reconciler/slice/slice.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import { readFabricDir } from '../../schema/read-dir.ts';
import { EXAMPLE_DIR } from '../../reconciler/demo/fresh-fabric.ts';
import { waitFor } from '../fixtures/servers.ts';
import { rawAdsClient, type DeltaResponse } from './raw-ads.ts';

const ROUTE = 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration';
const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
const ads3 = { ads: {}, resource_api_version: 'V3' };

// --- a tiny unary gRPC service with Buffer (de)serialisation: no .proto needed -------------------
const id = (b: Buffer): Buffer => b;
const ECHO: grpc.ServiceDefinition = {
  Who: { path: '/clgo.test.Echo/Who', requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id },
};
type EchoClient = grpc.Client & { Who(req: Buffer, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Buffer) => void): void };
const EchoClient = grpc.makeGenericClientConstructor(ECHO, 'Echo') as unknown as new (target: string, creds: grpc.ChannelCredentials, opts?: grpc.ChannelOptions) => EchoClient;

async function backend(name: string): Promise<{ port: number; close(): Promise<void> }> {
  const server = new grpc.Server();
  server.addService(ECHO, { Who: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(name)) });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return { port, close: () => new Promise((resolve) => server.tryShutdown(() => resolve())) };
}

const who = (client: EchoClient, timeoutMs = 2000): Promise<string> =>
  new Promise((resolve, reject) => client.Who(Buffer.from('?'), { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res!.toString()))));

// --- the gRPC-flavoured xDS resources (what a proxyless gRPC client needs) ------------------------
const echoListener = (name: string, routeName: string): AnyResource =>
  encodeAny(TYPE_URL.listener, {
    name,
    api_listener: { api_listener: encodeAny(HCM, { stat_prefix: 'echo', rds: { config_source: ads3, route_config_name: routeName }, http_filters: [{ name: 'envoy.filters.http.router', typed_config: encodeAny(ROUTER, {}) }] }) },
  });
const echoRoute = (name: string, cluster: string): AnyResource =>
  encodeAny(ROUTE, { name, virtual_hosts: [{ name: 'echo', domains: ['*'], routes: [{ match: { prefix: '' }, route: { cluster } }] }] });
const edsCluster = (name: string, lbPolicy = 'ROUND_ROBIN'): AnyResource => encodeAny(TYPE_URL.cluster, { name, type: 'EDS', eds_cluster_config: { eds_config: ads3 }, lb_policy: lbPolicy, connect_timeout: { seconds: '2' } });
const cla = (cluster: string, port: number): AnyResource =>
  encodeAny(TYPE_URL.endpoint, {
    cluster_name: cluster,
    // gRPC requires a locality with a weight (Envoy does not).
    endpoints: [{ locality: { region: 'loopback' }, load_balancing_weight: { value: 1 }, lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }],
  });

let ads: AdsServer;
let slicedEast: XdsResources;

beforeAll(async () => {
  ads = await startAdsServer();
  const r = loadFabricFiles(await readFabricDir(EXAMPLE_DIR));
  if (!r.ok) throw new Error('fabric-example invalid');
  slicedEast = buildResources(slice(r.fabric, 'east'), { egressAddress: '127.0.0.1', authz: { host: '127.0.0.1', port: 9191 }, identityFiles: { certificateFile: '/var/run/clgo/peer/tls.crt', privateKeyFile: '/var/run/clgo/peer/tls.key' } });
});
afterAll(async () => ads?.close());

/** The node's snapshot: east's slice resources plus the echo service's (a client gets only what it names). */
function serveEcho(node: string, opts: { port: number; lbPolicy?: string }): void {
  ads.setSnapshot(node, {
    listeners: new Map([...slicedEast.listeners, ['echo', echoListener('echo', 'echo-route')]]),
    clusters: new Map([...slicedEast.clusters, ['echo-cluster', edsCluster('echo-cluster', opts.lbPolicy)]]),
    endpoints: new Map([...slicedEast.endpoints, ['echo-cluster', cla('echo-cluster', opts.port)]]),
    secrets: slicedEast.secrets,
  });
  ads.setResources(node, ROUTE, new Map([['echo-route', echoRoute('echo-route', 'echo-cluster')]]));
}

const typeStatus = (node: string, type: string) => ads.status().nodes.find((n) => n.node === node)?.types[type];

describe('@grpc/grpc-js-xds (State of the World) against our ADS server', () => {
  it('resolves xds:///echo, ACKs every type, follows an endpoint change, NACKs an invalid cluster and keeps the last good config', async () => {
    const node = 'grpc-js-xds/conformance';
    const [a, b] = await Promise.all([backend('A'), backend('B')]);
    serveEcho(node, { port: a.port });
    process.env.GRPC_XDS_BOOTSTRAP_CONFIG = JSON.stringify({
      xds_servers: [{ server_uri: `127.0.0.1:${ads.address.port}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: node, locality: {} },
    });
    grpcXds.register();
    const client = new EchoClient('xds:///echo', grpc.credentials.createInsecure());
    try {
      expect(await who(client, 5000)).toBe('A');
      // Every type it subscribed (LDS, RDS, CDS, EDS) is ACKed at the version we sent.
      expect(await ads.waitForAck(node, 3000)).toBe(true);
      for (const type of [TYPE_URL.listener, ROUTE, TYPE_URL.cluster, TYPE_URL.endpoint]) {
        expect(typeStatus(node, type)?.ackedVersion, type).toBe('1');
        expect(typeStatus(node, type)?.nack, type).toBeNull();
      }

      // An endpoint change: only EDS moves (version 2), and RPCs follow it to B.
      serveEcho(node, { port: b.port });
      expect(await waitFor(() => typeStatus(node, TYPE_URL.endpoint)?.ackedVersion === '2', 3000)).toBe(true);
      expect(typeStatus(node, TYPE_URL.cluster)?.ackedVersion).toBe('1');
      let answer = '';
      const t0 = Date.now();
      while (Date.now() - t0 < 3000 && (answer = await who(client)) !== 'B') await new Promise((r) => setTimeout(r, 20));
      expect(answer).toBe('B');

      // An invalid Cluster (an lb_policy gRPC does not support): NACKed with the client's reason.
      serveEcho(node, { port: b.port, lbPolicy: 'MAGLEV' });
      expect(await waitFor(() => typeStatus(node, TYPE_URL.cluster)?.nack != null, 3000)).toBe(true);
      const st = typeStatus(node, TYPE_URL.cluster)!;
      expect(st.sentVersion).toBe('2');
      expect(st.nack!.version).toBe('2');
      expect(st.nack!.message).toMatch(/unsupported lb_policy: MAGLEV/);
      expect(st.ackedVersion).toBe('1');
      // The client keeps the last good cluster: RPCs keep reaching B.
      for (let i = 0; i < 5; i++) expect(await who(client)).toBe('B');
      await new Promise((r) => setTimeout(r, 200));
      expect(await who(client)).toBe('B');

      // Fixing the cluster clears the NACK.
      serveEcho(node, { port: b.port });
      expect(await waitFor(() => typeStatus(node, TYPE_URL.cluster)?.nack === null && typeStatus(node, TYPE_URL.cluster)?.ackedVersion === '3', 3000)).toBe(true);
      expect(await who(client)).toBe('B');
    } finally {
      client.close();
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe('Delta ADS with a raw gRPC client (grpc-js-xds speaks SotW only)', () => {
  const decodeAll = (r: DeltaResponse) =>
    r.resources.map((x) => {
      expect(x.resource.type_url).toBe(r.type_url);
      const msg = decodeAny(x.resource.type_url, x.resource.value);
      expect(msg.name ?? msg.cluster_name).toBe(x.name);
      return msg;
    });

  it('subscribes (wildcard and by name, also a non-slice type), ACKs, follows an update, is recorded on NACK, and still hears removals after it', async () => {
    const node = 'raw/delta';
    serveEcho(node, { port: 1111 });
    const raw = rawAdsClient(`127.0.0.1:${ads.address.port}`);
    const s = raw.delta();
    try {
      s.write({ node: { id: node }, type_url: TYPE_URL.cluster, resource_names_subscribe: [] });
      const cds = await s.next(TYPE_URL.cluster);
      expect(decodeAll(cds).map((c) => c.name).sort()).toEqual([...slicedEast.clusters.keys(), 'echo-cluster'].sort());
      s.write({ type_url: TYPE_URL.cluster, response_nonce: cds.nonce });

      s.write({ type_url: TYPE_URL.endpoint, resource_names_subscribe: ['echo-cluster'] });
      const eds = await s.next(TYPE_URL.endpoint);
      expect(eds.resources.map((x) => x.name)).toEqual(['echo-cluster']);
      expect(JSON.stringify(decodeAll(eds)[0])).toContain('"port_value":1111');
      s.write({ type_url: TYPE_URL.endpoint, response_nonce: eds.nonce });

      s.write({ type_url: ROUTE, resource_names_subscribe: ['echo-route'] });
      const rds = await s.next(ROUTE);
      expect(decodeAll(rds).map((r) => r.name)).toEqual(['echo-route']);
      s.write({ type_url: ROUTE, response_nonce: rds.nonce });
      expect(await ads.waitForAck(node, 3000)).toBe(true);

      // An update of one endpoint: only that resource is sent.
      serveEcho(node, { port: 2222 });
      const eds2 = await s.next(TYPE_URL.endpoint);
      expect(eds2.resources.map((x) => x.name)).toEqual(['echo-cluster']);
      expect(JSON.stringify(decodeAll(eds2)[0])).toContain('"port_value":2222');
      expect(eds2.system_version_info).toBe('2');
      s.write({ type_url: TYPE_URL.endpoint, response_nonce: eds2.nonce });
      expect(await waitFor(() => typeStatus(node, TYPE_URL.endpoint)?.ackedVersion === '2', 3000)).toBe(true);
      expect(s.pending().filter((r) => r.type_url === TYPE_URL.cluster)).toEqual([]);

      // A NACK of the next endpoint version: recorded with our error detail, acked version unchanged.
      serveEcho(node, { port: 3333 });
      const eds3 = await s.next(TYPE_URL.endpoint);
      s.write({ type_url: TYPE_URL.endpoint, response_nonce: eds3.nonce, error_detail: { code: 3, message: 'port 3333 refused by test' } });
      expect(await waitFor(() => typeStatus(node, TYPE_URL.endpoint)?.nack != null, 3000)).toBe(true);
      expect(typeStatus(node, TYPE_URL.endpoint)).toMatchObject({ ackedVersion: '2', sentVersion: '3', nack: { version: '3', message: 'port 3333 refused by test' } });

      // After the NACK, deleting the resource still reaches the client as a removal.
      ads.setSnapshot(node, { ...slicedEast });
      const eds4 = await s.next(TYPE_URL.endpoint);
      expect(eds4.removed_resources).toEqual(['echo-cluster']);
      const cds4 = await s.next(TYPE_URL.cluster);
      expect(cds4.removed_resources).toEqual(['echo-cluster']);
    } finally {
      s.close();
      raw.close();
    }
  });

  it('does not resend what the client already holds (initial_resource_versions echo our versions)', async () => {
    const node = 'raw/delta-resume';
    serveEcho(node, { port: 1111 });
    const raw = rawAdsClient(`127.0.0.1:${ads.address.port}`);
    try {
      const s1 = raw.delta();
      s1.write({ node: { id: node }, type_url: TYPE_URL.cluster, resource_names_subscribe: ['*'] });
      const first = await s1.next(TYPE_URL.cluster);
      s1.close();
      const held = Object.fromEntries(first.resources.map((r) => [r.name, r.version]));
      // Reconnect holding everything but one cluster, and a stale version of another.
      const [dropped, stale] = Object.keys(held).sort();
      delete held[dropped!];
      held[stale!] = 'old';
      const s2 = raw.delta();
      s2.write({ node: { id: node }, type_url: TYPE_URL.cluster, resource_names_subscribe: ['*'], initial_resource_versions: held });
      const second = await s2.next(TYPE_URL.cluster);
      expect(second.resources.map((r) => r.name).sort()).toEqual([dropped, stale].sort());
      s2.close();
    } finally {
      raw.close();
    }
  });
});

describe('SotW protocol corner case with a raw gRPC client', () => {
  it('a subscription change sent with a stale nonce is served once the client ACKs the newer response', async () => {
    const node = 'raw/sotw-stale';
    serveEcho(node, { port: 1111 });
    const raw = rawAdsClient(`127.0.0.1:${ads.address.port}`);
    const s = raw.sotw();
    try {
      s.write({ node: { id: node }, type_url: TYPE_URL.endpoint, resource_names: ['echo-cluster'] });
      const r1 = await s.next(TYPE_URL.endpoint);
      expect(r1.resources).toHaveLength(1);
      // A new version goes out (nonce 2) while the client, still answering nonce 1, adds a name.
      serveEcho(node, { port: 2222 });
      const r2 = await s.next(TYPE_URL.endpoint);
      const peer = [...slicedEast.endpoints.keys()][0]!;
      s.write({ type_url: TYPE_URL.endpoint, response_nonce: r1.nonce, version_info: r1.version_info, resource_names: ['echo-cluster', peer] });
      // The client then ACKs nonce 2 with its current names: the server must answer the new name.
      s.write({ type_url: TYPE_URL.endpoint, response_nonce: r2.nonce, version_info: r2.version_info, resource_names: ['echo-cluster', peer] });
      const r3 = await s.next(TYPE_URL.endpoint, 3000);
      expect(r3.resources.map((x) => decodeAny(x.type_url, x.value).cluster_name).sort()).toEqual(['echo-cluster', peer].sort());
    } finally {
      s.close();
      raw.close();
    }
  });
});

describe('SotW resume', () => {
  it('answers a first request that carries a nonce of an earlier stream (a reconnecting client)', async () => {
    const node = 'raw/sotw-resume';
    serveEcho(node, { port: 1111 });
    const raw = rawAdsClient(`127.0.0.1:${ads.address.port}`);
    const s = raw.sotw();
    try {
      s.write({ node: { id: node }, type_url: TYPE_URL.cluster, response_nonce: '41', version_info: '1', resource_names: [] });
      const r = await s.next(TYPE_URL.cluster, 3000);
      expect(r.resources.length).toBe(slicedEast.clusters.size + 1);
    } finally {
      s.close();
      raw.close();
    }
  });
});
