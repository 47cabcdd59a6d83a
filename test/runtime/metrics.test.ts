// /metrics of a running peer, scraped over HTTP before and after real traffic: the counters move by
// exactly what the traffic implies (connections, decisions) or at least by it (bytes, which include
// the CONNECT head), and denied connections are counted with the tier that denied them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAdminServer, type AdminServer } from '../../reconciler/runtime/admin-server.ts';
import { createRuntimeMetrics } from '../../reconciler/runtime/metrics.ts';
import { echoThrough, openEchoConnection, waitFor } from '../fixtures/servers.ts';
import { scrape, startFabric, value, type FabricHarness, type PeerName, type Range } from '../faults/harness.ts';

// This file's loopback range: gateways 127.0.101.x, services 127.0.102.x, egress 127.0.103.x, clients 127.0.104.x.
const RANGE: Range = {
  gateway: (n) => `127.0.101.${n}`,
  service: (n) => `127.0.102.${n}`,
  egress: { east: '127.0.103.1', west: '127.0.103.2', edge: '127.0.103.3' },
  client: { perf: '127.0.104.1', untrusted: '127.0.104.2', web: '127.0.104.3', edgeWeb: '127.0.104.4', unknown: '127.0.104.9' },
};

let fabric: FabricHarness;
const admins: Partial<Record<PeerName, AdminServer>> = {};

beforeAll(async () => {
  fabric = await startFabric({ range: RANGE });
  for (const peer of ['east', 'west'] as const) {
    const rt = fabric.runtimes[peer];
    admins[peer] = await startAdminServer({ host: '127.0.104.100', port: 0, status: () => rt.status(), ready: () => rt.status().ready, metrics: createRuntimeMetrics(rt) });
  }
});

afterAll(async () => {
  await Promise.all(Object.values(admins).map((a) => a.close()));
  await fabric?.close();
});

const idle = (peer: PeerName): Promise<boolean> =>
  waitFor(() => {
    const s = fabric.runtimes[peer].status().dataplane!;
    return Object.values(s.egress).every((i) => i.active === 0) && s.ingress.active === 0;
  }, 5000);

describe('GET /metrics', () => {
  it('serves the Prometheus text format with fabric, reconcile and process metrics', async () => {
    const { contentType, samples, text } = await scrape(admins.east!.url);
    expect(contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    const revision = fabric.runtimes.east.status().applied!.revision;
    expect(value(samples, 'clgo_fabric_revision_info', { revision })).toBe(1);
    expect(value(samples, 'clgo_fabric_last_good')).toBe(1);
    expect(value(samples, 'clgo_ready')).toBe(1);
    expect(value(samples, 'clgo_reconcile_duration_seconds_count')).toBe(1);
    expect(value(samples, 'clgo_reconcile_duration_seconds_bucket', { le: '+Inf' })).toBe(1);
    expect(value(samples, 'clgo_reconcile_duration_seconds_sum')).toBeGreaterThan(0);
    expect(value(samples, 'clgo_reconciles_total', { result: 'applied' })).toBe(1);
    expect(value(samples, 'clgo_reconcile_errors_total', { stage: 'apply' })).toBe(0);
    expect(text).toMatch(/^# TYPE clgo_reconcile_duration_seconds histogram$/m);
    expect(text).toMatch(/^# TYPE clgo_tunnel_bytes_total counter$/m);
    // Default process metrics, prefixed.
    expect(value(samples, 'clgo_process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(text).toMatch(/^clgo_nodejs_eventloop_lag_seconds /m);
    // Counter names end in _total; no metric of the global registry leaks in.
    for (const m of text.matchAll(/^# TYPE (\S+) counter$/gm)) expect(m[1]).toMatch(/_total$/);
    expect(text).not.toMatch(/^process_cpu/m);
  });

  it('counts connections, bytes and allowed decisions on both sides by what the traffic implies', async () => {
    const N = 3;
    const BYTES = 200 * 1024;
    const before = { east: (await scrape(admins.east!.url)).samples, west: (await scrape(admins.west!.url)).samples };
    for (let i = 0; i < N; i++) expect(await echoThrough({ host: RANGE.egress.east, port: 8080, localAddress: RANGE.client.web, bytes: BYTES })).toBe('ok');
    // Bytes are counted when a tunnel closes: wait for both ends to have seen the close.
    expect(await idle('east')).toBe(true);
    expect(await idle('west')).toBe(true);
    const after = { east: (await scrape(admins.east!.url)).samples, west: (await scrape(admins.west!.url)).samples };
    const d = (peer: 'east' | 'west', name: string, labels: Record<string, string> = {}): number => value(after[peer], name, labels) - value(before[peer], name, labels);
    const web = { import: 'web/http' };
    expect(d('east', 'clgo_tunnel_connections_total', web)).toBe(N);
    expect(d('east', 'clgo_tunnel_denied_total', web)).toBe(0);
    expect(d('east', 'clgo_tunnel_failures_total', web)).toBe(0);
    expect(value(after.east, 'clgo_tunnel_active', web)).toBe(0);
    expect(d('east', 'clgo_tunnel_bytes_total', { ...web, direction: 'out' })).toBeGreaterThanOrEqual(N * BYTES);
    expect(d('east', 'clgo_tunnel_bytes_total', { ...web, direction: 'in' })).toBeGreaterThanOrEqual(N * BYTES);
    // Out includes the CONNECT heads, nothing else: at most a few hundred bytes per tunnel.
    expect(d('east', 'clgo_tunnel_bytes_total', { ...web, direction: 'out' })).toBeLessThan(N * (BYTES + 1024));
    expect(d('east', 'clgo_authz_decisions_total', { direction: 'egress', result: 'allowed', tier: 'unknown' })).toBe(N);
    const westGw = Object.keys(fabric.runtimes.east.status().dataplane!.exporters).find((k) => k.startsWith('west@'))!;
    expect(d('east', 'clgo_exporter_attempts_total', { exporter: westGw })).toBe(N);
    expect(d('east', 'clgo_exporter_failures_total', { exporter: westGw })).toBe(0);
    expect(value(after.east, 'clgo_tunnel_setup_recent_seconds', { ...web, quantile: '0.5' })).toBeGreaterThan(0);
    expect(value(after.east, 'clgo_tunnel_setup_recent_seconds', { ...web, quantile: '0.99' })).toBeGreaterThanOrEqual(value(after.east, 'clgo_tunnel_setup_recent_seconds', { ...web, quantile: '0.5' }));
    // The setup histogram saw each tunnel once, in some bucket at or below +Inf, with a positive sum.
    expect(d('east', 'clgo_tunnel_setup_seconds_count', web)).toBe(N);
    expect(d('east', 'clgo_tunnel_setup_seconds_bucket', { ...web, le: '+Inf' })).toBe(N);
    expect(d('east', 'clgo_tunnel_setup_seconds_bucket', { ...web, le: '5' })).toBe(N);
    expect(d('east', 'clgo_tunnel_setup_seconds_sum', web)).toBeGreaterThan(0);
    // The exporting side.
    expect(d('west', 'clgo_gateway_requests_total')).toBe(N);
    expect(d('west', 'clgo_gateway_connections_total')).toBeGreaterThanOrEqual(N);
    expect(d('west', 'clgo_authz_decisions_total', { direction: 'ingress', result: 'allowed', tier: 'unknown' })).toBe(N);
    expect(d('west', 'clgo_gateway_bytes_total', { direction: 'in' })).toBeGreaterThanOrEqual(N * BYTES);
    expect(d('west', 'clgo_gateway_bytes_total', { direction: 'out' })).toBeGreaterThanOrEqual(N * BYTES);
    expect(value(after.west, 'clgo_gateway_active')).toBe(0);
  });

  it('counts the bytes of a tunnel while it is open, not only once it closes', async () => {
    const BYTES = 128 * 1024;
    const before = { east: (await scrape(admins.east!.url)).samples, west: (await scrape(admins.west!.url)).samples };
    const conn = await openEchoConnection({ host: RANGE.egress.east, port: 8080, localAddress: RANGE.client.web });
    try {
      expect(await conn.roundTrip(Buffer.alloc(BYTES, 5))).toBe(true);
      const during = { east: (await scrape(admins.east!.url)).samples, west: (await scrape(admins.west!.url)).samples };
      const d = (peer: 'east' | 'west', name: string, labels: Record<string, string> = {}): number => value(during[peer], name, labels) - value(before[peer], name, labels);
      expect(value(during.east, 'clgo_tunnel_active', { import: 'web/http' })).toBe(1);
      expect(d('east', 'clgo_tunnel_bytes_total', { import: 'web/http', direction: 'out' })).toBeGreaterThanOrEqual(BYTES);
      expect(d('east', 'clgo_tunnel_bytes_total', { import: 'web/http', direction: 'in' })).toBeGreaterThanOrEqual(BYTES);
      expect(d('west', 'clgo_gateway_bytes_total', { direction: 'in' })).toBeGreaterThanOrEqual(BYTES);
      expect(d('west', 'clgo_gateway_bytes_total', { direction: 'out' })).toBeGreaterThanOrEqual(BYTES);
    } finally {
      conn.socket.destroy();
    }
    // Closing moves the open tunnel's bytes into the totals: nothing counted twice, nothing lost.
    expect(await idle('east')).toBe(true);
    expect(await idle('west')).toBe(true);
    const after = (await scrape(admins.east!.url)).samples;
    const out = value(after, 'clgo_tunnel_bytes_total', { import: 'web/http', direction: 'out' }) - value(before.east, 'clgo_tunnel_bytes_total', { import: 'web/http', direction: 'out' });
    expect(out).toBeGreaterThanOrEqual(BYTES);
    expect(out).toBeLessThan(BYTES + 1024);
  });

  it('counts denied connections with the tier that denied them, on the side that denied them', async () => {
    const before = { east: (await scrape(admins.east!.url)).samples, west: (await scrape(admins.west!.url)).samples };
    // Egress, privileged tier: east's deny-untrusted-clients.
    expect(await echoThrough({ host: RANGE.egress.east, port: 5201, localAddress: RANGE.client.untrusted, bytes: 1024 })).toBe('refused');
    // Egress, default deny: a client no policy allows.
    expect(await echoThrough({ host: RANGE.egress.east, port: 5201, localAddress: RANGE.client.unknown, bytes: 1024 })).toBe('refused');
    // Ingress at west, privileged tier: west's deny-edge-web refuses edge's allowed egress.
    expect(await echoThrough({ host: RANGE.egress.edge, port: 8080, localAddress: RANGE.client.edgeWeb, bytes: 1024 })).toBe('refused');
    expect(await idle('east')).toBe(true);
    const after = { east: (await scrape(admins.east!.url)).samples, west: (await scrape(admins.west!.url)).samples };
    const d = (peer: 'east' | 'west', name: string, labels: Record<string, string> = {}): number => value(after[peer], name, labels) - value(before[peer], name, labels);
    expect(d('east', 'clgo_authz_decisions_total', { direction: 'egress', result: 'denied', tier: 'privileged' })).toBe(1);
    expect(d('east', 'clgo_authz_decisions_total', { direction: 'egress', result: 'denied', tier: 'default' })).toBe(1);
    expect(d('east', 'clgo_authz_decisions_total', { direction: 'egress', result: 'allowed', tier: 'unknown' })).toBe(0);
    expect(d('east', 'clgo_tunnel_denied_total', { import: 'perf/iperf3' })).toBe(2);
    expect(d('east', 'clgo_tunnel_connections_total', { import: 'perf/iperf3' })).toBe(2);
    expect(d('east', 'clgo_tunnel_bytes_total', { import: 'perf/iperf3', direction: 'out' })).toBe(0);
    expect(d('west', 'clgo_authz_decisions_total', { direction: 'ingress', result: 'denied', tier: 'privileged' })).toBe(1);
    expect(d('west', 'clgo_gateway_denied_total')).toBe(1);
    expect(d('west', 'clgo_gateway_bytes_total', { direction: 'in' })).toBe(0);
  });

  it('answers only GET/HEAD on built-in routes, and 404 elsewhere', async () => {
    expect((await fetch(`${admins.east!.url}/metrics`, { method: 'POST', body: 'x' })).status).toBe(405);
    expect((await fetch(`${admins.east!.url}/metrics`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${admins.east!.url}/metricz`)).status).toBe(404);
  });
});
