// Fault: an exporting peer's gateway black-holed during traffic. Edge's gateway sits behind a TCP
// relay at its committed address; the fault makes the relay accept new connections and never
// answer, and stop moving bytes on the connections it already carries (what a dropped route
// does). perf/iperf3 has two exporters (west, edge). What must hold: every new connection still
// gets through byte for byte (failover to west after the per-attempt time-out), edge's endpoint is
// ejected after ejectAfterFailures consecutive failures so later connections pay nothing, tunnels
// via west carry on; when the route heals, the stalled tunnel resumes exactly and edge takes
// connections again once its ejection ends.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntimeMetrics } from '../../reconciler/runtime/metrics.ts';
import { echoThrough, waitFor } from '../fixtures/servers.ts';
import { blockRange, faultTable, streamVia as streamViaPeer, parseMetrics, startFabric, value, type FabricHarness, type LiveStream } from './harness.ts';

// This file's loopback range: 127.0.107.x (edge's real gateway on .33, the relay on edge's committed .3).
const R = blockRange(107);
const UPSTREAM_TIMEOUT_MS = 500;
const EJECT_AFTER = 3;
const EJECT_MS = 2000;
const table = faultTable(import.meta.filename);
const perf = { host: R.egress.east, port: 5201, localAddress: R.client.perf };

interface Relay {
  blackhole(on: boolean): void;
  close(): Promise<void>;
}

/** A TCP relay listen → target that can black-hole: new connections hang, open ones stop moving bytes. */
async function startRelay(listen: { host: string; port: number }, target: { host: string; port: number }): Promise<Relay> {
  let holed = false;
  const pairs = new Set<{ a: net.Socket; b: net.Socket }>();
  const held = new Set<net.Socket>();
  const server = net.createServer((a) => {
    a.on('error', () => a.destroy());
    if (holed) {
      held.add(a);
      a.on('close', () => held.delete(a));
      return;
    }
    const b = net.connect(target);
    b.on('error', () => b.destroy());
    const pair = { a, b };
    pairs.add(pair);
    const end = (): void => {
      pairs.delete(pair);
      a.destroy();
      b.destroy();
    };
    a.on('close', end);
    b.on('close', end);
    a.pipe(b);
    b.pipe(a);
  });
  await new Promise<void>((r) => server.listen(listen.port, listen.host, () => r()));
  return {
    blackhole(on) {
      holed = on;
      for (const { a, b } of pairs) {
        if (on) {
          a.unpipe(b);
          b.unpipe(a);
          a.pause();
          b.pause();
        } else {
          a.pipe(b);
          b.pipe(a);
          a.resume();
          b.resume();
        }
      }
      if (!on) for (const s of held) s.destroy();
    },
    close: () =>
      new Promise<void>((r) => {
        for (const { a, b } of pairs) {
          a.destroy();
          b.destroy();
        }
        for (const s of held) s.destroy();
        server.close(() => r());
      }),
  };
}

let fabric: FabricHarness;
let relay: Relay;

beforeAll(async () => {
  relay = await startRelay({ host: R.gateway(3), port: 4443 }, { host: '127.0.107.33', port: 4443 });
  fabric = await startFabric({
    range: R,
    ingress: { edge: { host: '127.0.107.33', port: 4443 } },
    limits: { east: { upstreamTimeoutMs: UPSTREAM_TIMEOUT_MS, ejectAfterFailures: EJECT_AFTER, ejectForMs: EJECT_MS } },
  });
});

afterAll(async () => {
  await fabric?.close();
  await relay?.close();
  await table.flush();
});

const streamVia = (peer: 'west' | 'edge'): Promise<LiveStream> => streamViaPeer(fabric, peer, perf);

describe('fault: an exporter\'s gateway black-holed during traffic', () => {
  it('fails over to the other exporter, ejects the black hole, and takes it back after it heals', async () => {
    const viaWest = await streamVia('west');
    const viaEdge = await streamVia('edge');
    await new Promise((r) => setTimeout(r, 100));
    expect(await viaEdge.drained()).toBe(true);
    const m = createRuntimeMetrics(fabric.runtimes.east, { processMetrics: false });
    const before = parseMetrics(await m.render());
    const edgeKey = `edge@${R.gateway(3)}:4443`;

    relay.blackhole(true);
    const t0 = performance.now();
    // Sequential connections during the black hole: all must get through, byte for byte.
    const setups: number[] = [];
    let ejectedAt: number | null = null;
    for (let i = 0; i < 12; i++) {
      const c0 = performance.now();
      expect(await echoThrough({ ...perf, bytes: 32 * 1024, timeoutMs: 5000 })).toBe('ok');
      setups.push(performance.now() - c0);
      if (ejectedAt === null && fabric.runtimes.east.status().dataplane!.exporters[edgeKey]?.ejected) ejectedAt = performance.now() - t0;
    }
    expect(ejectedAt).not.toBeNull();
    // Each connection pays at most one time-out (plus the echo); after the ejection, none.
    expect(Math.max(...setups)).toBeLessThan(UPSTREAM_TIMEOUT_MS + 1500);
    const slow = setups.filter((ms) => ms >= UPSTREAM_TIMEOUT_MS).length;
    expect(slow).toBeLessThanOrEqual(EJECT_AFTER);
    expect(setups.slice(-4).every((ms) => ms < UPSTREAM_TIMEOUT_MS)).toBe(true);
    const after = parseMetrics(await m.render());
    const d = (name: string, labels: Record<string, string>): number => value(after, name, labels) - value(before, name, labels);
    expect(d('clgo_tunnel_failovers_total', { import: 'perf/iperf3' })).toBe(slow);
    expect(d('clgo_exporter_failures_total', { exporter: edgeKey })).toBe(EJECT_AFTER);
    expect(value(after, 'clgo_exporter_ejected', { exporter: edgeKey })).toBe(1);
    expect(d('clgo_exporter_ejections_total', { exporter: edgeKey })).toBe(1);
    expect(d('clgo_tunnel_failures_total', { import: 'perf/iperf3' })).toBe(0);
    // The tunnel via west is untouched; the one via edge stalls (neither closed nor fed).
    expect(await viaWest.drained()).toBe(true);
    const stalled = viaEdge.stats().verified;
    await new Promise((r) => setTimeout(r, 300));
    expect(viaEdge.stats().verified).toBe(stalled);
    expect(viaEdge.stats().closed).toBe(false);

    // Heal: the stalled tunnel resumes byte for byte; edge takes new connections once the ejection ends.
    relay.blackhole(false);
    const h0 = performance.now();
    expect(await viaEdge.drained(5000)).toBe(true);
    const resumedMs = performance.now() - h0;
    const edgeIn = fabric.runtimes.edge.status().dataplane!.ingress.requests;
    let back = false;
    for (let i = 0; i < 200 && !back; i++) {
      expect(await echoThrough({ ...perf, bytes: 4096, timeoutMs: 5000 })).toBe('ok');
      back = fabric.runtimes.edge.status().dataplane!.ingress.requests > edgeIn;
      if (!back) await new Promise((r) => setTimeout(r, 50));
    }
    const healedMs = performance.now() - h0;
    expect(back).toBe(true);
    expect(healedMs).toBeLessThan(EJECT_MS + 2000);
    expect(await waitFor(() => !viaWest.stats().closed && !viaEdge.stats().closed, 10)).toBe(true);
    table.add({
      case: 'exporter gateway (edge) black-holed during traffic, two exporters',
      held: `12/12 new connections byte-exact via west (${slow} paid the ${UPSTREAM_TIMEOUT_MS} ms attempt time-out, max setup ${Math.round(Math.max(...setups))} ms); edge ejected after ${EJECT_AFTER} failures; tunnel via west untouched; tunnel via edge stalled (not closed) and resumed exactly on heal (${Math.round(resumedMs)} ms)`,
      recoveryMs: ejectedAt,
      recoveryNote: `black hole → ejected (no more time-outs); heal → edge takes connections again in ${Math.round(healedMs)} ms (ejectForMs ${EJECT_MS})`,
    });
    viaWest.stop();
    viaEdge.stop();
  }, 30_000);
});
