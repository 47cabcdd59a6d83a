// The control plane as an attacker meets it, over real sockets: ADS and ext_authz of peer east
// admit only east's own data planes (mutual TLS with east's certificate from the fabric CA). A
// plaintext client, a TLS client without a certificate, one with a certificate from another CA,
// one with west's valid certificate naming itself east/x, and one with a revoked east certificate
// get no resource and no decision; every refusal is counted with its reason. The legitimate data
// plane gets its configuration and decisions — and never a private key, which is not on the wire.
// Data planes check the control plane too: one presenting another peer's certificate is refused.
// Trust follows the fabric: committing a revocation closes the revoked client's open stream.
import * as grpc from '@grpc/grpc-js';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { remoteAuthorizer } from '../../dataplane/xds-client/remote-authorizer.ts';
import { TYPE_URL } from '../../protocol/envoy-protos.ts';
import { startXdsDataplane, type XdsDataplane } from '../../dataplane/xds-dataplane.ts';
import { freshExampleFabric, type FreshFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { fingerprintSha256 } from '../../reconciler/pki/encoding.ts';
import { issuePeerCertificate } from '../../reconciler/pki/issue.ts';
import { createControlPlaneMetrics } from '../../reconciler/runtime/control-plane-metrics.ts';
import { startControlPlane, type ControlPlane } from '../../reconciler/runtime/control-plane.ts';
import { createDirectorySource } from '../../reconciler/source/directory-source.ts';
import { writePeerSecret, type PeerSecretFiles } from '../fixtures/peer-secret.ts';
import { waitFor } from '../fixtures/servers.ts';
import { rawAdsClient } from './raw-ads.ts';

// This file's loopback range: 127.0.160.x.
const CP = '127.0.160.1';
const FAKE_CP = '127.0.160.2';
const EGRESS = '127.0.160.3';

let dir: string;
let fresh: FreshFabric;
let other: FreshFabric;
let plane: ControlPlane;
let east: PeerSecretFiles;
/** An older certificate of east, signed by the fabric CA: revoked below. */
let stolen: { certificatePem: string; privateKeyPem: string };
let legit: XdsDataplane;

const ca = (): Buffer => Buffer.from(fresh.ca.certificatePem);
const sslAs = (id: { certificatePem: string; privateKeyPem: string } | null, trustCa = ca()): grpc.ChannelCredentials =>
  grpc.credentials.createSsl(trustCa, id ? Buffer.from(id.privateKeyPem) : null, id ? Buffer.from(id.certificatePem) : null, { checkServerIdentity: () => undefined });

async function writeFabric(files: ReadonlyMap<string, Uint8Array | string>): Promise<void> {
  for (const [path, bytes] of files) {
    await mkdir(dirname(join(dir, 'fabric', path)), { recursive: true });
    await writeFile(join(dir, 'fabric', path), bytes);
  }
}

/** Subscribes to every type as node `nodeId`; resolves with what arrived within `ms` (nothing, for a refused client) and why the stream ended. */
async function tryAds(credentials: grpc.ChannelCredentials, nodeId: string, ms = 1500): Promise<{ resources: number; error: string | null; bytes: string }> {
  const client = rawAdsClient(`${CP}:${plane.xdsAddress.port}`, credentials, { 'grpc.ssl_target_name_override': 'east' });
  const stream = client.sotw();
  try {
    for (const type of [TYPE_URL.cluster, TYPE_URL.listener, TYPE_URL.endpoint, TYPE_URL.secret]) {
      stream.write({ node: { id: nodeId }, type_url: type, resource_names: type === TYPE_URL.secret ? ['clusterlink/identity', 'clusterlink/fabric-ca'] : type === TYPE_URL.endpoint ? ['clusterlink/peer/west', 'clusterlink/peer/edge'] : [] });
    }
    let error: string | null = null;
    try {
      await stream.next(undefined, ms);
    } catch (err) {
      error = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
    const got = stream.pending();
    return { resources: got.reduce((n, r) => n + r.resources.length, error ? 0 : 1), error, bytes: JSON.stringify(got) };
  } finally {
    stream.close();
    client.close();
  }
}

/** One egress check as a data plane would ask it; `unavailable` when no decision came back. */
async function tryAuthz(credentials: grpc.ChannelCredentials): Promise<{ decided: boolean }> {
  const authz = remoteAuthorizer(plane.authzAddress, { credentials, serverName: 'east', timeoutMs: 1500 });
  try {
    const v = await authz.egress({ importNamespace: 'perf', importName: 'iperf3', sourceAddress: '127.0.160.9', sourcePort: 40000 });
    return { decided: !('unavailable' in v && v.unavailable === true) };
  } finally {
    authz.close();
  }
}

const refused = (reason: string, server: 'xds' | 'authz'): number => plane.status().refusedClients.find((r) => r.reason === reason && r.server === server)?.count ?? 0;
const decisions = (): number => plane.authzCounts().reduce((n, d) => n + d.count, 0);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clgo-dp-auth-'));
  fresh = await freshExampleFabric();
  other = await freshExampleFabric();
  stolen = await issuePeerCertificate({ peerName: 'east', fabricName: fresh.fabricName, ca: fresh.ca });
  // The stolen certificate is revoked in fabric.yaml from the start.
  const fabricYaml = parseDocument(Buffer.from(fresh.files.get('fabric.yaml')!).toString());
  fabricYaml.setIn(['spec', 'revoked'], { fingerprints: [fingerprintSha256(stolen.certificatePem)] });
  const files = new Map(fresh.files);
  files.set('fabric.yaml', Buffer.from(fabricYaml.toString()));
  await writeFabric(files);
  east = await writePeerSecret(join(dir, 'east-secret'), fresh.peers.east!, fresh.ca.certificatePem);
  plane = await startControlPlane({
    peer: 'east',
    source: createDirectorySource({ dir: join(dir, 'fabric'), debounceMs: 50 }),
    identity: fresh.peers.east!,
    identityFiles: east,
    xds: { host: CP, port: 0 },
    authz: { host: CP, port: 0 },
    egressAddress: EGRESS,
    clientAttributes: () => null,
  });
  expect(await waitFor(() => plane.status().ready, 10_000)).toBe(true);
  legit = startXdsDataplane({ xds: `${CP}:${plane.xdsAddress.port}`, authz: plane.authzAddress, nodeId: 'east/pod-1', tls: east });
  expect(await legit.waitForConfig(undefined, 15_000)).toBe(true);
}, 60_000);

afterAll(async () => {
  await legit?.close();
  await plane?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("the control plane admits only this peer's data planes", () => {
  it('the legitimate data plane gets its configuration and decisions, and the identity secret names files, not a key', async () => {
    expect(legit.status().xds.connected).toBe(true);
    expect(legit.dataplane()).not.toBeNull();
    const ads = await tryAds(sslAs(fresh.peers.east!), 'east/inspect');
    expect(ads.error).toBeNull();
    expect(ads.resources).toBeGreaterThan(0);
    expect(ads.bytes).not.toMatch(/PRIVATE KEY/);
    const before = decisions();
    expect(await tryAuthz(sslAs(fresh.peers.east!))).toEqual({ decided: true });
    expect(decisions()).toBe(before + 1);
  });

  it('refuses a plaintext client and a TLS client without a certificate: no resource, no decision', async () => {
    const before = decisions();
    const plain = await tryAds(grpc.credentials.createInsecure(), 'east/x');
    expect(plain.resources).toBe(0);
    expect(plain.error).not.toBeNull();
    expect(await tryAuthz(grpc.credentials.createInsecure())).toEqual({ decided: false });
    const anonymous = await tryAds(sslAs(null), 'east/x');
    expect(anonymous.resources).toBe(0);
    expect(await tryAuthz(sslAs(null))).toEqual({ decided: false });
    expect(decisions()).toBe(before);
    expect(refused('tls-handshake', 'xds')).toBeGreaterThanOrEqual(1);
    expect(refused('no-client-certificate', 'xds')).toBeGreaterThanOrEqual(1);
    expect(refused('no-client-certificate', 'authz')).toBeGreaterThanOrEqual(1);
  });

  it("refuses east's name on a certificate from another CA", async () => {
    const before = decisions();
    const forged = sslAs(other.peers.east!);
    expect((await tryAds(forged, 'east/x')).resources).toBe(0);
    expect(await tryAuthz(forged)).toEqual({ decided: false });
    expect(decisions()).toBe(before);
    expect(refused('untrusted-ca', 'xds')).toBeGreaterThanOrEqual(1);
    expect(refused('untrusted-ca', 'authz')).toBeGreaterThanOrEqual(1);
  });

  it("refuses another peer of the same fabric naming itself east/x (west's valid certificate)", async () => {
    const before = decisions();
    const west = sslAs(fresh.peers.west!);
    expect((await tryAds(west, 'east/x')).resources).toBe(0);
    expect(await tryAuthz(west)).toEqual({ decided: false });
    expect(decisions()).toBe(before);
    expect(refused('other-peer', 'xds')).toBeGreaterThanOrEqual(1);
    expect(refused('other-peer', 'authz')).toBeGreaterThanOrEqual(1);
  });

  it('refuses a revoked certificate of east', async () => {
    const before = decisions();
    const revoked = sslAs(stolen);
    expect((await tryAds(revoked, 'east/x')).resources).toBe(0);
    expect(await tryAuthz(revoked)).toEqual({ decided: false });
    expect(decisions()).toBe(before);
    expect(refused('revoked', 'xds')).toBeGreaterThanOrEqual(1);
  });

  it("refuses east's own certificate on a node id of another peer", async () => {
    const wrongNode = await tryAds(sslAs(fresh.peers.east!), 'west/pod-1');
    expect(wrongNode.resources).toBe(0);
    expect(wrongNode.error).toMatch(/PERMISSION_DENIED|not east/);
    expect(refused('node-id', 'xds')).toBeGreaterThanOrEqual(1);
  });

  it('reports refusals as a metric', async () => {
    const text = await createControlPlaneMetrics(plane, { processMetrics: false }).render();
    expect(text).toMatch(/^clgo_dataplane_auth_refusals_total\{server="xds",reason="other-peer"\} [1-9]/m);
    expect(text).toMatch(/^clgo_dataplane_auth_refusals_total\{server="authz",reason="untrusted-ca"\} [1-9]/m);
  });

  it("the data plane refuses a control plane presenting another peer's certificate", async () => {
    // A rogue ADS server with west's valid certificate, serving a snapshot for east.
    const server = new grpc.Server();
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${FAKE_CP}:0`, grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(fresh.peers.west!.certificatePem), private_key: Buffer.from(fresh.peers.west!.privateKeyPem) }], false), (e, p) => (e ? reject(e) : resolve(p))),
    );
    let connected = false;
    server.addService(
      {
        StreamAggregatedResources: { path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources', requestStream: true, responseStream: true, requestSerialize: (x: Buffer) => x, requestDeserialize: (x: Buffer) => x, responseSerialize: (x: Buffer) => x, responseDeserialize: (x: Buffer) => x },
      },
      {
        StreamAggregatedResources: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
          connected = true;
          call.end();
        },
      },
    );
    const victim = startXdsDataplane({ xds: `${FAKE_CP}:${port}`, authz: `${FAKE_CP}:${port}`, nodeId: 'east/pod-2', tls: east });
    try {
      expect(await victim.waitForConfig(undefined, 2000)).toBe(false);
      expect(connected).toBe(false);
      expect(victim.status().xds.connected).toBe(false);
    } finally {
      await victim.close();
      server.forceShutdown();
    }
  });

  it('a commit that revokes a connected certificate closes its stream', async () => {
    // East rotates: the Secret (and so the reconciler's own certificate) moves to a new one while
    // Git still pins the old; both are accepted. A client on the old one is connected...
    const next = await issuePeerCertificate({ peerName: 'east', fabricName: fresh.fabricName, ca: fresh.ca });
    plane.updateIdentity(next);
    const client = rawAdsClient(`${CP}:${plane.xdsAddress.port}`, sslAs(fresh.peers.east!), { 'grpc.ssl_target_name_override': 'east' });
    const stream = client.sotw();
    try {
      stream.write({ node: { id: 'east/old' }, type_url: TYPE_URL.cluster, resource_names: [] });
      expect((await stream.next(TYPE_URL.cluster, 5000)).resources.length).toBeGreaterThan(0);
      // ...until the admin commits the new certificate and revokes the old one.
      const fabricPath = join(dir, 'fabric', 'fabric.yaml');
      const doc = parseDocument(await readFile(fabricPath, 'utf8'));
      doc.setIn(['spec', 'revoked', 'fingerprints'], [fingerprintSha256(stolen.certificatePem), fingerprintSha256(fresh.peers.east!.certificatePem)]);
      await writeFile(join(dir, 'fabric', 'peers', 'east', 'peer.pem'), next.certificatePem);
      await writeFile(fabricPath, doc.toString());
      const closed = stream.next(undefined, 10_000).then(
        () => 'response',
        (err: Error) => err.message,
      );
      expect(await closed).toMatch(/UNAVAILABLE|stream ended|closed|reset|ECONNRESET|Connection dropped|Cancelled/i);
      expect(refused('revoked', 'xds')).toBeGreaterThanOrEqual(2);
      // The new certificate is admitted.
      expect((await tryAds(sslAs(next), 'east/new')).resources).toBeGreaterThan(0);
    } finally {
      stream.close();
      client.close();
    }
  });
});
