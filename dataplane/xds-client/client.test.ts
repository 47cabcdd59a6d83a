import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createCertificateAuthority, issuePeerCertificate } from '../../reconciler/pki/issue.ts';
import { fingerprintSha256 } from '../../reconciler/pki/encoding.ts';
import type { DataplaneConfig } from '../../protocol/contracts.ts';
import { startXdsClient, type XdsClient } from './client.ts';
import { TYPE_URL } from '../../protocol/envoy-protos.ts';
import { resources as R, startTestAdsServer, type TestAdsServer } from '../../test/fixtures/ads-test-server.ts';

const silent = pino({ level: 'silent' });
let ca: { certificatePem: string; privateKeyPem: string };
let west: { certificatePem: string; privateKeyPem: string };
let eastPin: string;

beforeAll(async () => {
  ca = await createCertificateAuthority({ fabricName: 'demo' });
  west = await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca });
  eastPin = fingerprintSha256((await issuePeerCertificate({ peerName: 'east', fabricName: 'demo', ca })).certificatePem);
});

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function waitFor<T>(probe: () => T | undefined | null | false, what: string, timeoutMs = 4000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = probe();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A complete, consistent snapshot for peer west importing from east. */
function fullSnapshot(ads: TestAdsServer, version: string, eastGateways = [{ host: '127.0.0.2', port: 4443 }]): void {
  ads.set(TYPE_URL.cluster, version, [{ name: 'clusterlink/peer/east', resource: R.peerCluster('east') }]);
  ads.set(TYPE_URL.endpoint, version, [{ name: 'clusterlink/peer/east', resource: R.endpoints('east', eastGateways) }]);
  ads.set(TYPE_URL.listener, version, [
    { name: 'clusterlink/egress/default/db', resource: R.egressListener('default', 'db', '127.0.0.1', 5432) },
    { name: 'clusterlink/ingress', resource: R.ingressListener('127.0.0.1', 8443) },
  ]);
  ads.set(TYPE_URL.secret, version, [
    { name: 'clusterlink/identity', resource: R.identity(west.certificatePem, west.privateKeyPem) },
    { name: 'clusterlink/fabric-ca', resource: R.fabricCa(ca.certificatePem, [eastPin]) },
  ]);
}

async function setup(protocol: 'sotw' | 'delta', port = 0): Promise<{ ads: TestAdsServer; client: XdsClient; configs: DataplaneConfig[] }> {
  const ads = await startTestAdsServer(port);
  const configs: DataplaneConfig[] = [];
  const client = startXdsClient({ server: ads.address, nodeId: 'west/pod-1', protocol, onConfig: (c) => void configs.push(c), logger: silent, backoff: { initialMs: 20, maxMs: 200 } });
  cleanups.push(async () => client.stop(), async () => ads.stop());
  return { ads, client, configs };
}

describe.each(['sotw', 'delta'] as const)('xDS client (%s ADS)', (protocol) => {
  it('applies a consistent snapshot as one DataplaneConfig and ACKs every type', async () => {
    const { ads, client, configs } = await setup(protocol);
    fullSnapshot(ads, '1');
    const cfg = await waitFor(() => configs[0], 'first config');
    expect(cfg).toMatchObject({
      self: 'west',
      egress: [{ importRef: 'default/db', importNamespace: 'default', importName: 'db', address: '127.0.0.1', port: 5432 }],
      ingress: { address: '127.0.0.1', port: 8443 },
      upstreams: [{ peer: 'east', sni: 'east', endpoints: [{ host: '127.0.0.2', port: 4443 }] }],
      tls: { certificatePem: west.certificatePem, privateKeyPem: west.privateKeyPem, caCertificatesPem: [ca.certificatePem], allowedPeerFingerprints: [eastPin] },
    });
    expect(configs).toHaveLength(1);
    await waitFor(() => client.status().versions.secret === '1' && client.status().versions.endpoint === '1', 'all accepted');
    await waitFor(() => ads.events.some((e) => e.typeUrl === TYPE_URL.secret) && ads.events.some((e) => e.typeUrl === TYPE_URL.endpoint), 'ACKs at the server');
    expect(ads.events.filter((e) => e.error !== null)).toEqual([]);
    if (protocol === 'sotw') {
      // EDS and SDS are subscribed by name, from what the clusters and listeners refer to.
      expect(ads.events.find((e) => e.typeUrl === TYPE_URL.endpoint)?.names).toEqual(['clusterlink/peer/east']);
      expect(ads.events.find((e) => e.typeUrl === TYPE_URL.secret)?.names).toEqual(['clusterlink/fabric-ca', 'clusterlink/identity']);
    }
  });

  it('waits for a consistent set: a cluster whose endpoints have not arrived yields no config', async () => {
    const { ads, client, configs } = await setup(protocol);
    ads.set(TYPE_URL.cluster, '1', [{ name: 'clusterlink/peer/east', resource: R.peerCluster('east') }]);
    ads.set(TYPE_URL.listener, '1', []);
    ads.set(TYPE_URL.secret, '1', [
      { name: 'clusterlink/identity', resource: R.identity(west.certificatePem, west.privateKeyPem) },
      { name: 'clusterlink/fabric-ca', resource: R.fabricCa(ca.certificatePem, []) },
    ]);
    await waitFor(() => client.status().versions.secret === '1', 'secrets accepted');
    expect(configs).toEqual([]);
    expect(client.status().missing).toEqual(['endpoints clusterlink/peer/east (cluster clusterlink/peer/east)']);
    ads.set(TYPE_URL.endpoint, '1', [{ name: 'clusterlink/peer/east', resource: R.endpoints('east', [{ host: '127.0.0.3', port: 443 }]) }]);
    const cfg = await waitFor(() => configs[0], 'config once endpoints arrive');
    expect(cfg.upstreams).toEqual([{ peer: 'east', sni: 'east', endpoints: [{ host: '127.0.0.3', port: 443 }] }]);
  });

  it('reads the identity from the files the secret names, and re-reads them when they change on disk (a Secret rotation)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'clgo-xds-identity-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const crt = join(dir, 'tls.crt');
    const key = join(dir, 'tls.key');
    await writeFile(crt, west.certificatePem);
    await writeFile(key, west.privateKeyPem);
    const ads = await startTestAdsServer(0);
    const configs: DataplaneConfig[] = [];
    const client = startXdsClient({ server: ads.address, nodeId: 'west/pod-1', protocol, onConfig: (c) => void configs.push(c), logger: silent, identityPollMs: 20 });
    cleanups.push(async () => client.stop(), async () => ads.stop());
    fullSnapshot(ads, '1');
    ads.set(TYPE_URL.secret, '1', [
      { name: 'clusterlink/identity', resource: R.identityFiles(crt, key) },
      { name: 'clusterlink/fabric-ca', resource: R.fabricCa(ca.certificatePem, [eastPin]) },
    ]);
    const cfg = await waitFor(() => configs.find((c) => c.tls.privateKeyPem === west.privateKeyPem), 'config with the key read from disk');
    expect(cfg.tls.certificatePem).toBe(west.certificatePem);
    // Kubernetes swaps the Secret's files: the next config carries the new pair, with no xDS change.
    const rotated = await issuePeerCertificate({ peerName: 'west', fabricName: 'demo', ca });
    await writeFile(join(dir, 'n.crt'), rotated.certificatePem);
    await writeFile(join(dir, 'n.key'), rotated.privateKeyPem);
    await rename(join(dir, 'n.crt'), crt);
    await rename(join(dir, 'n.key'), key);
    const next = await waitFor(() => configs.find((c) => c.tls.certificatePem === rotated.certificatePem && c.tls.privateKeyPem === rotated.privateKeyPem), 'config after the rotation');
    expect(next.version).toBe(cfg.version);
  });

  it('follows an update (new gateway endpoints) with a new config', async () => {
    const { ads, configs } = await setup(protocol);
    fullSnapshot(ads, '1');
    await waitFor(() => configs[0], 'first config');
    ads.set(TYPE_URL.endpoint, '2', [{ name: 'clusterlink/peer/east', resource: R.endpoints('east', [{ host: '127.0.0.9', port: 9443 }]) }]);
    const cfg = await waitFor(() => configs[1], 'updated config');
    expect(cfg.upstreams[0]?.endpoints).toEqual([{ host: '127.0.0.9', port: 9443 }]);
    expect(cfg.version).toContain('eds=2');
  });

  it('drops a removed listener and a removed peer (and stops following its endpoints)', async () => {
    const { ads, configs } = await setup(protocol);
    fullSnapshot(ads, '1');
    await waitFor(() => configs[0], 'first config');
    ads.set(TYPE_URL.listener, '2', [{ name: 'clusterlink/ingress', resource: R.ingressListener('127.0.0.1', 8443) }]);
    const cfg = await waitFor(() => configs[1], 'config without the egress listener');
    expect(cfg.egress).toEqual([]);
    ads.set(TYPE_URL.cluster, '3', []);
    const cfg2 = await waitFor(() => configs[2], 'config without the peer');
    expect(cfg2.upstreams).toEqual([]);
    expect(cfg2.ingress).toEqual({ address: '127.0.0.1', port: 8443 });
  });

  it('NACKs an invalid resource with an error_detail and keeps the last good config', async () => {
    const { ads, client, configs } = await setup(protocol);
    fullSnapshot(ads, '1');
    await waitFor(() => configs[0], 'first config');
    // An egress listener whose metadata does not name its import cannot be mapped back: refuse the response.
    ads.set(TYPE_URL.listener, '2', [{ name: 'clusterlink/egress/default/db', resource: R.egressListener('default', 'db', '127.0.0.1', 5432, { kind: 'egress', importNamespace: 'default' }) }]);
    const nack = await waitFor(() => ads.events.find((e) => e.typeUrl === TYPE_URL.listener && e.error !== null), 'NACK');
    expect(nack.error).toMatch(/importNamespace and importName/);
    if (protocol === 'sotw') expect(nack.version).toBe('1'); // the NACK names the version still in force
    expect(client.status()).toMatchObject({ nacks: 1, lastNack: { typeUrl: TYPE_URL.listener }, versions: { listener: '1' } });
    expect(configs).toHaveLength(1);
    // A later valid version is accepted again.
    ads.set(TYPE_URL.listener, '3', [{ name: 'clusterlink/egress/default/web', resource: R.egressListener('default', 'web', '127.0.0.1', 8080) }]);
    const cfg = await waitFor(() => configs[1], 'config after a good version');
    expect(cfg.egress.map((e) => e.importRef)).toEqual(['default/web']);
    // SotW: the response is the whole set. (Delta: the server believes the NACKed removal of the ingress listener
    // happened and does not repeat it; the client still holds it, as Envoy would.)
    if (protocol === 'sotw') expect(cfg.ingress).toBeNull();
  });

  it('keeps the last good config while the control plane is away, then reconnects and resubscribes', async () => {
    const first = await setup(protocol);
    fullSnapshot(first.ads, '1');
    await waitFor(() => first.configs[0], 'first config');
    const port = first.ads.port;
    await first.ads.stop();
    await waitFor(() => !first.client.status().connected, 'disconnect noticed');
    expect(first.client.status().configVersion).toContain('lds=1');
    expect(first.configs).toHaveLength(1);

    // The control plane comes back on the same address with a newer fabric.
    const ads2 = await startTestAdsServer(port);
    cleanups.push(async () => ads2.stop());
    fullSnapshot(ads2, '7', [{ host: '127.0.0.4', port: 4443 }]);
    const cfg = await waitFor(() => first.configs[1], 'config from the restarted server', 6000);
    expect(cfg.upstreams[0]?.endpoints).toEqual([{ host: '127.0.0.4', port: 4443 }]);
    expect(first.client.status()).toMatchObject({ connected: true });
    expect(first.client.status().reconnects).toBeGreaterThanOrEqual(1);
    // It resubscribed by name, announcing the versions it held.
    expect(ads2.streams()).toBe(1);
  });
});
