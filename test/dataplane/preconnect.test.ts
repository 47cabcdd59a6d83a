// Preconnect: after a tunnel to an exporter endpoint closes, east keeps spare TLS connections to
// that gateway (handshaken, verified, carrying nothing), so the next tunnel skips the handshake.
// East reaches west's web/http through a small TCP relay in front of west's gateway, which can
// forget its connections silently (as a NAT or conntrack entry expiring would): a spare that died
// unnoticed must cost the next tunnel nothing but a fresh dial, and the exporter no failure.
import net from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDataplane, type Dataplane } from '../../dataplane/dataplane.ts';
import type { DataplaneConfig } from '../../protocol/contracts.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import { freshExampleFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { slice } from '../../reconciler/slice/slice.ts';
import { createAuthorizer } from '../../reconciler/xds/authz.ts';
import { dataplaneConfigFromSlice } from '../../reconciler/xds/config.ts';
import { clientLookup } from '../../reconciler/runtime/local-clients.ts';
import { echoThrough, startEchoServer, waitFor } from '../fixtures/servers.ts';

// This file's loopback range: 127.0.142.x — gateways .11-.13, services .22-.23, east's egress .31,
// west's (unused) egress .32, the relay .50, the web client .43.
const rewrite = (t: string): string => t.replaceAll('127.0.10.', '127.0.142.1').replaceAll('127.0.20.', '127.0.142.2');
const WEB_CLIENT = '127.0.142.43';
const EAST_EGRESS = '127.0.142.31';
const RELAY = { host: '127.0.142.50', port: 4443 };
const CLIENTS = clientLookup({ clients: [{ address: WEB_CLIENT, namespace: 'web', labels: { app: 'browser' } }] });
const MAX_IDLE_MS = 300;
/** Refills pause this long after a spare expired unused. */
const COLD_MS = 2 * MAX_IDLE_MS;
const BOUND_MS = 4000;

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** TCP relay to `target`; forgetAll() drops every current connection's upstream and answers the client's next byte with a reset. */
async function startRelay(target: { host: string; port: number }): Promise<{ open(): number; forgetAll(): void; close(): Promise<void> }> {
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    const pair = { client, upstream };
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const done = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
  });
  await new Promise<void>((r) => server.listen(RELAY.port, RELAY.host, () => r()));
  return {
    open: () => pairs.size,
    forgetAll() {
      for (const pair of [...pairs]) {
        pairs.delete(pair);
        pair.client.unpipe(pair.upstream);
        pair.upstream.unpipe(pair.client);
        pair.client.removeAllListeners('close');
        pair.upstream.removeAllListeners('close');
        pair.upstream.destroy();
        // The client is not told; its next byte meets a reset.
        pair.client.removeAllListeners('data');
        pair.client.once('data', () => pair.client.resetAndDestroy());
        pair.client.resume();
      }
    },
    close: () =>
      new Promise<void>((r) => {
        for (const { client, upstream } of pairs) {
          client.destroy();
          upstream.destroy();
        }
        server.close(() => r());
      }),
  };
}

const logs: Record<'east' | 'west', LogLine[]> = { east: [], west: [] };
const dataplanes = {} as Record<'east' | 'west', Dataplane>;
let eastConfig: DataplaneConfig;
let relay: Awaited<ReturnType<typeof startRelay>>;
let service: Awaited<ReturnType<typeof startEchoServer>>;

beforeAll(async () => {
  const fresh = await freshExampleFabric({ rewrite });
  const loaded = loadFabricFiles(fresh.files);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  service = await startEchoServer('127.0.142.22', 8080);
  const configs: Partial<Record<'east' | 'west', DataplaneConfig>> = {};
  for (const [name, egressAddress] of [['west', '127.0.142.32'], ['east', EAST_EGRESS]] as const) {
    const s = slice(loaded.fabric, name);
    configs[name] = dataplaneConfigFromSlice(s, fresh.peers[name]!, { egressAddress }, '1');
    dataplanes[name] = await startDataplane({
      config: configs[name],
      authorizer: createAuthorizer({ slice: () => s, clientAttributes: CLIENTS }),
      logger: pino({ level: 'debug' }, { write: (t: string) => t.split('\n').filter((l) => l.trim()).forEach((l) => logs[name].push(JSON.parse(l) as LogLine)) }),
      limits: { preconnectMaxIdleMs: MAX_IDLE_MS, preconnectSpares: 2 },
    });
  }
  const westGateway = dataplanes.west.addresses().ingress!;
  relay = await startRelay(westGateway);
  // East dials west's gateway through the relay.
  eastConfig = { ...configs.east!, upstreams: configs.east!.upstreams.map((u) => (u.peer === 'west' ? { ...u, endpoints: [RELAY] } : u)) };
  await dataplanes.east.update(eastConfig);
});

afterAll(async () => {
  await Promise.all(Object.values(dataplanes).map((d) => d.close()));
  await relay?.close();
  await service?.close();
});

const web = { host: EAST_EGRESS, port: 8080, localAddress: WEB_CLIENT, bytes: 64 * 1024 };
const eastWeb = () => dataplanes.east.stats().egress['web/http']!;
const westIngress = () => dataplanes.west.stats().ingress;
const westExporter = () => dataplanes.east.stats().exporters[`west@${RELAY.host}:${RELAY.port}`]!;
/** West's TLS connections that never sent a request (so far: spares alive or closed unused). */
const neverAsked = (): number => westIngress().connections - westIngress().requests;
/** East's connections through the relay that carry no tunnel: spares, whether verified yet or still in their handshake. */
const spares = (): number => relay.open() - eastWeb().active;
/**
 * Two spares ready for the next tunnel: two tunnel-less connections through the relay, both
 * verified — west counts two more TLS connections that asked nothing than `neverAskedBefore` (the
 * client's end of a handshake completes before the server's). The relay's count alone includes
 * spares still in their handshake, which a tunnel waits for rather than dialling afresh.
 */
const sparesReady = (neverAskedBefore: number): Promise<boolean> => waitFor(() => spares() === 2 && neverAsked() === neverAskedBefore + 2, BOUND_MS);
const westWarnings = (from: number): LogLine[] => logs.west.slice(from).filter((l) => l.level >= 40);
/** One echoed tunnel, done once east has seen it close (spares are dialled then). */
async function tunnel(): Promise<string> {
  const r = await echoThrough(web);
  expect(await waitFor(() => eastWeb().active === 0, BOUND_MS)).toBe(true);
  return r;
}

describe('preconnect (spare TLS connections to an exporter\'s gateway)', () => {
  it('dials spares after a tunnel closes; the next tunnel starts on one, bytes unchanged', async () => {
    const from = logs.west.length;
    expect(await tunnel()).toBe('ok');
    expect(eastWeb().preconnected).toBe(0);
    // Two spares, verified and idle at west: connections that sent no request.
    expect(await sparesReady(0)).toBe(true);
    const requests = westIngress().requests;
    expect(await tunnel()).toBe('ok');
    expect(eastWeb().preconnected).toBe(1);
    // One spare taken, one tunnel request: no new TLS connection was needed for it.
    expect(westIngress().requests).toBe(requests + 1);
    expect(westWarnings(from)).toEqual([]);
  });

  it('closes a spare unused for preconnectMaxIdleMs quietly, and keeps none warm while demand is sparse', async () => {
    expect(await waitFor(() => spares() === 2, BOUND_MS)).toBe(true);
    const from = logs.west.length;
    const badRequests = westIngress().badRequests;
    // Both expire; west sees two connections end without a request: a debug line each, no warning, no bad request.
    expect(await waitFor(() => logs.west.slice(from).filter((l) => /^connection (closed|failed) before sending anything$/.test(l.msg)).length >= 2, MAX_IDLE_MS + BOUND_MS)).toBe(true);
    expect(westIngress().badRequests).toBe(badRequests);
    expect(westWarnings(from)).toEqual([]);
    // Cold: the next tunnel dials afresh, and no spare follows it for 2 × preconnectMaxIdleMs.
    const preconnected = eastWeb().preconnected;
    const connections = westIngress().connections;
    expect(await tunnel()).toBe('ok');
    expect(eastWeb().preconnected).toBe(preconnected);
    await new Promise((r) => setTimeout(r, 500));
    expect(westIngress().connections).toBe(connections + 1);
  });

  it('after a spare died unnoticed (its connection state lost on the path), the tunnel dials afresh and the exporter records no failure', async () => {
    // Warm again once the cold period is over.
    await new Promise((r) => setTimeout(r, COLD_MS + 2 * MAX_IDLE_MS));
    const neverAskedBefore = neverAsked();
    expect(await tunnel()).toBe('ok');
    expect(await sparesReady(neverAskedBefore)).toBe(true);
    const before = { preconnected: eastWeb().preconnected, failures: westExporter().failures, failovers: eastWeb().failovers, failed: eastWeb().failed };
    relay.forgetAll();
    expect(await tunnel()).toBe('ok');
    expect(eastWeb().preconnected).toBe(before.preconnected);
    expect(westExporter().failures).toBe(before.failures);
    expect(westExporter().ejected).toBe(false);
    expect(eastWeb().failovers).toBe(before.failovers);
    expect(eastWeb().failed).toBe(before.failed);
  });

  it('drops every spare on a config change: they were verified against the previous pins', async () => {
    // The other spares of the previous case expired unused (one had died unnoticed): wait out the cold period.
    await new Promise((r) => setTimeout(r, COLD_MS + 2 * MAX_IDLE_MS));
    const neverAskedBefore = neverAsked();
    expect(await tunnel()).toBe('ok');
    expect(await sparesReady(neverAskedBefore)).toBe(true);
    const from = logs.west.length;
    const preconnected = eastWeb().preconnected;
    await dataplanes.east.update({ ...eastConfig, version: '2' });
    // At once (well within the spares' idle life), so that only the drop can explain a fresh dial.
    expect(await tunnel()).toBe('ok');
    expect(eastWeb().preconnected).toBe(preconnected);
    expect(await waitFor(() => logs.west.slice(from).filter((l) => /^connection (closed|failed) before sending anything$/.test(l.msg)).length >= 2, BOUND_MS)).toBe(true);
    expect(westWarnings(from)).toEqual([]);
  });
});
