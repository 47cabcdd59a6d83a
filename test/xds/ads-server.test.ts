// The reconciler's ADS server with the Node data plane's real xDS client (gRPC on loopback), for
// every peer of the example fabric, over State of the World and Delta: the configuration the
// client assembles from the Envoy resources equals dataplaneConfigFromSlice (one configuration for
// Envoy and the Node data plane); changes are pushed; a NACK is recorded and the client keeps its
// last good config; versions only grow.
import { isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DataplaneConfig } from '../../protocol/contracts.ts';
import { startXdsClient } from '../../dataplane/xds-client/client.ts';
import { decodeAny, encodeAny, TYPE_URL } from '../../protocol/envoy-protos.ts';
import { freshExampleFabric, type FreshFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { slice } from '../../reconciler/slice/slice.ts';
import { startAdsServer, type AdsServer } from '../../reconciler/xds/ads-server.ts';
import { dataplaneConfigFromSlice } from '../../reconciler/xds/config.ts';
import { buildResources, ROUTE_TYPE_URL, XDS_NAMES } from '../../reconciler/xds/resources.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import type { FabricModel } from '../../schema/model.ts';
import { waitFor } from '../fixtures/servers.ts';
import { writePeerSecret, type PeerSecretFiles } from '../fixtures/peer-secret.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let fresh: FreshFabric;
let fabric: FabricModel;
let ads: AdsServer;
const AUTHZ = { host: '127.0.0.1', port: 9191 };
const EGRESS = '127.0.0.1';
let secretsDir: string;
const secrets: Record<string, PeerSecretFiles> = {};

beforeAll(async () => {
  fresh = await freshExampleFabric();
  const r = loadFabricFiles(fresh.files);
  if (!r.ok) throw new Error('example invalid');
  fabric = r.fabric;
  secretsDir = await mkdtemp(join(tmpdir(), 'clgo-ads-'));
  for (const peer of ['east', 'west', 'edge']) secrets[peer] = await writePeerSecret(join(secretsDir, peer), fresh.peers[peer]!, fresh.ca.certificatePem);
  ads = await startAdsServer();
});
afterAll(async () => {
  await ads.close();
  await rm(secretsDir, { recursive: true, force: true });
});

// The identity secret names the peer's mounted files; the client reads them (no key on the wire).
const resourcesFor = (peer: string, f = fabric) => buildResources(slice(f, peer), { egressAddress: EGRESS, authz: AUTHZ, identityFiles: secrets[peer]! });
const expected = (peer: string, f = fabric): Omit<DataplaneConfig, 'version'> => {
  const { version: _v, ...rest } = dataplaneConfigFromSlice(slice(f, peer), fresh.peers[peer]!, { egressAddress: EGRESS }, '0');
  return rest;
};
const strip = (c: DataplaneConfig): Omit<DataplaneConfig, 'version'> => {
  const { version: _v, ...rest } = c;
  return rest;
};

describe('Envoy resources from a slice', () => {
  it('encode and decode against the Envoy protos, for every peer', () => {
    for (const peer of ['east', 'west', 'edge']) {
      const r = resourcesFor(peer);
      for (const [type, map] of [[TYPE_URL.listener, r.listeners], [TYPE_URL.cluster, r.clusters], [TYPE_URL.endpoint, r.endpoints], [TYPE_URL.secret, r.secrets]] as const) {
        for (const [name, any] of map) {
          expect(any.type_url).toBe(type);
          const msg = decodeAny(any.type_url, any.value);
          expect((msg.name ?? msg.cluster_name) as string).toBe(name);
          // Re-encoding the decoded message gives the same bytes: nothing was lost or unknown.
          expect(encodeAny(type, msg).value.equals(any.value)).toBe(true);
        }
      }
    }
  });

  it('map the slice as docs/xds.md says (east: two import listeners, peer clusters with SNI; west: a gateway and export clusters)', () => {
    const east = resourcesFor('east');
    expect([...east.listeners.keys()].sort()).toEqual([XDS_NAMES.egress('perf', 'iperf3'), XDS_NAMES.egress('web', 'http')]);
    expect([...east.clusters.keys()].sort()).toEqual([XDS_NAMES.authz, XDS_NAMES.import('perf', 'iperf3'), XDS_NAMES.import('web', 'http'), XDS_NAMES.peer('edge'), XDS_NAMES.peer('west')]);
    const west = resourcesFor('west');
    expect([...west.listeners.keys()]).toEqual([XDS_NAMES.ingress]);
    expect([...west.clusters.keys()].sort()).toEqual([XDS_NAMES.authz, XDS_NAMES.export('perf', 'iperf3'), XDS_NAMES.export('web', 'http')]);
    const ingress = decodeAny(TYPE_URL.listener, west.listeners.get(XDS_NAMES.ingress)!.value) as { filter_chains: Array<{ filters: Array<{ typed_config: { type_url: string; value: Uint8Array } }> }> };
    const hcm = decodeAny(ingress.filter_chains[0]!.filters[0]!.typed_config.type_url, ingress.filter_chains[0]!.filters[0]!.typed_config.value) as { rds: { route_config_name: string }; http_filters: Array<{ typed_config: { type_url: string; value: Uint8Array } }> };
    expect(hcm.rds.route_config_name).toBe(XDS_NAMES.ingress);
    const routes = decodeAny(ROUTE_TYPE_URL, west.routes!.get(XDS_NAMES.ingress)!.value) as { virtual_hosts: Array<{ domains: string[] }> };
    expect(routes.virtual_hosts.flatMap((v) => v.domains).sort()).toEqual(['http.web:443', 'iperf3.perf:443']);
    const authz = decodeAny(hcm.http_filters[0]!.typed_config.type_url, hcm.http_filters[0]!.typed_config.value);
    expect(authz.include_peer_certificate).toBe(true);
    // The identity secret names the files; no private key is in any resource.
    const identity = decodeAny(TYPE_URL.secret, west.secrets.get(XDS_NAMES.identity)!.value) as { tls_certificate: { certificate_chain: { filename: string }; private_key: { filename: string }; watched_directory: { path: string } } };
    expect(identity.tls_certificate.private_key.filename).toBe(secrets.west!.privateKeyFile);
    expect(identity.tls_certificate.certificate_chain.filename).toBe(secrets.west!.certificateFile);
    expect(identity.tls_certificate.watched_directory.path).toBe(secrets.west!.dir);
    for (const map of [west.listeners, west.clusters, west.endpoints, west.secrets]) for (const r of map.values()) expect(Buffer.from(r.value).toString('latin1')).not.toMatch(/PRIVATE KEY/);
  });
});

describe('ADS server with the Node data plane xDS client', () => {
  for (const protocol of ['sotw', 'delta'] as const) {
    it(`${protocol}: every peer assembles exactly dataplaneConfigFromSlice, and follows a change`, async () => {
      const configs: Record<string, DataplaneConfig[]> = {};
      const clients = [];
      for (const peer of ['east', 'west', 'edge']) {
        const node = `${peer}/${protocol}`;
        ads.setSnapshot(node, resourcesFor(peer));
        configs[peer] = [];
        clients.push(startXdsClient({ server: `127.0.0.1:${ads.address.port}`, nodeId: node, protocol, onConfig: (c) => void configs[peer]!.push(c) }));
      }
      try {
        for (const peer of ['east', 'west', 'edge']) {
          // Intermediate configs may appear while types arrive one by one; the last must be exact.
          await waitFor(() => configs[peer]!.length > 0 && isDeepStrictEqual(strip(configs[peer]!.at(-1)!), expected(peer)), 5000);
          expect(strip(configs[peer]!.at(-1)!)).toEqual(expected(peer));
          expect(await ads.waitForAck(`${peer}/${protocol}`)).toBe(true);
        }
        // A change: edge stops exporting iperf3 → east loses the edge upstream.
        const files = new Map(fresh.files);
        files.delete('peers/edge/exports/iperf3.yaml');
        files.set('peers/east/imports/iperf3.yaml', Buffer.from(Buffer.from(files.get('peers/east/imports/iperf3.yaml')!).toString().replace(/\n {4}- peer: edge\n {6}exportName: iperf3\n {6}exportNamespace: perf/, '')));
        const r = loadFabricFiles(files);
        if (!r.ok) throw new Error(JSON.stringify(r.errors[0]));
        const before = configs.east!.length;
        ads.setSnapshot(`east/${protocol}`, resourcesFor('east', r.fabric));
        expect(await waitFor(() => configs.east!.length > before && configs.east!.at(-1)!.upstreams.length === 1, 5000)).toBe(true);
        expect(strip(configs.east!.at(-1)!)).toEqual(expected('east', r.fabric));
        // The config is applied before its ACK reaches the server: wait (bounded) for the ACK.
        const clustersAcked = (): number => Number(ads.status().nodes.find((n) => n.node === `east/${protocol}`)!.types[TYPE_URL.cluster]!.ackedVersion);
        await waitFor(() => clustersAcked() >= 2, 5000);
        expect(clustersAcked()).toBeGreaterThanOrEqual(2);
      } finally {
        await Promise.all(clients.map((c) => c.stop()));
      }
    });
  }

  it('records a NACK with the client\'s error while the client keeps its last good config', async () => {
    const node = 'east/nack';
    ads.setSnapshot(node, resourcesFor('east'));
    const configs: DataplaneConfig[] = [];
    const client = startXdsClient({ server: `127.0.0.1:${ads.address.port}`, nodeId: node, onConfig: (c) => void configs.push(c) });
    try {
      await waitFor(() => configs.length > 0 && configs.at(-1)!.egress.length === 2, 5000);
      expect(await ads.waitForAck(node)).toBe(true);
      const good = configs.at(-1)!;
      const bad = resourcesFor('east');
      // An egress listener whose metadata lacks the import: the client must refuse it.
      bad.listeners.set(XDS_NAMES.egress('perf', 'iperf3'), encodeAny(TYPE_URL.listener, { name: XDS_NAMES.egress('perf', 'iperf3'), address: { socket_address: { address: '127.0.0.1', port_value: 5201 } }, metadata: { filter_metadata: { 'clusterlink.net': { fields: { kind: { stringValue: 'egress' } } } } } }));
      ads.setSnapshot(node, bad);
      expect(await waitFor(() => ads.status().nodes.find((n) => n.node === node)?.types[TYPE_URL.listener]?.nack !== null && ads.status().nodes.find((n) => n.node === node)?.types[TYPE_URL.listener]?.nack !== undefined, 5000)).toBe(true);
      const st = ads.status().nodes.find((n) => n.node === node)!.types[TYPE_URL.listener]!;
      expect(st.nack!.message).toMatch(/importNamespace/);
      expect(st.ackedVersion).not.toBe(st.nack!.version);
      expect(configs.at(-1)).toEqual(good);
      expect(client.status().nacks).toBeGreaterThanOrEqual(1);
      // The next good snapshot is accepted and clears the NACK.
      ads.setSnapshot(node, resourcesFor('east'));
      expect(await waitFor(() => ads.status().nodes.find((n) => n.node === node)!.types[TYPE_URL.listener]!.nack === null, 5000)).toBe(true);
    } finally {
      await client.stop();
    }
  });
});
