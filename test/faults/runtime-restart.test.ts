// Fault: a peer's reconciler (with its embedded Node data plane) stopped and restarted in the
// middle of traffic. What holds, honestly: the embedded data plane lives in the reconciler's
// process, so tunnels through the stopped peer end (cleanly: no byte is ever corrupted, the
// client sees a close); tunnels that do not cross the stopped peer carry on byte for byte; new
// connections fail over to another exporter where the import has one; after the restart the peer
// serves the same revision again, and paths through it recover — for an importer as soon as its
// listeners are up, for an exporter once importers stop ejecting its gateway (ejectForMs).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echoThrough, waitFor } from '../fixtures/servers.ts';
import { blockRange, echoMany, faultTable, liveStream, streamVia as streamViaPeer, startFabric, type FabricHarness, type LiveStream } from './harness.ts';

// This file's loopback range: 127.0.106.x.
const R = blockRange(106);
const EJECT_MS = 1500;
const table = faultTable(import.meta.filename);
let fabric: FabricHarness;
const perf = { host: R.egress.east, port: 5201, localAddress: R.client.perf };
const web = { host: R.egress.east, port: 8080, localAddress: R.client.web };

beforeAll(async () => {
  fabric = await startFabric({ range: R, limits: { east: { ejectForMs: EJECT_MS, upstreamTimeoutMs: 2000 } } });
});

afterAll(async () => {
  await fabric?.close();
  await table.flush();
});

const streamVia = (peer: 'west' | 'edge'): Promise<LiveStream> => streamViaPeer(fabric, peer, perf);

describe('fault: reconciler stopped and restarted mid-traffic', () => {
  it('the importing peer (east): its tunnels end cleanly, the same revision serves again after restart', async () => {
    const revision = fabric.runtimes.east.status().applied!.revision;
    const stream = await liveStream(perf);
    await new Promise((r) => setTimeout(r, 100));
    expect(await stream.drained()).toBe(true);
    const sentBefore = stream.stats().verified;
    await fabric.stop('east');
    expect(await waitFor(() => stream.stats().closed, 2000)).toBe(true);
    expect(stream.stats().mismatch).toBe(false);
    expect(await echoThrough({ ...perf, bytes: 1024, timeoutMs: 1000 })).toBe('refused');
    const t0 = performance.now();
    await fabric.start('east');
    expect((await echoMany(1, perf)).ok).toBe(1);
    const recoveryMs = performance.now() - t0;
    expect(fabric.runtimes.east.status().applied!.revision).toBe(revision);
    expect((await echoMany(3, perf)).ok).toBe(3);
    expect((await echoMany(2, web)).ok).toBe(2);
    table.add({
      case: 'importing peer\'s reconciler (east) stopped and restarted mid-traffic',
      held: `open tunnel closed cleanly at stop (${sentBefore} B echoed exactly, no corrupt byte); new connections refused while down; same revision applied on restart; 5 new tunnels byte-exact`,
      recoveryMs,
      recoveryNote: 'restart → first tunnel echoed',
    });
  }, 30_000);

  it('an exporting peer (west): its tunnels end, tunnels via edge carry on, perf fails over to edge, web recovers after the ejection', async () => {
    const viaEdge = await streamVia('edge');
    const viaWest = await liveStream(web);
    await new Promise((r) => setTimeout(r, 100));
    await fabric.stop('west');
    expect(await waitFor(() => viaWest.stats().closed, 2000)).toBe(true);
    expect(viaWest.stats().mismatch).toBe(false);
    // perf has two exporters: every new connection gets through (failing over from west to edge).
    const during = await echoMany(6, perf);
    expect(during.ok).toBe(6);
    // web has one exporter: refused while west is down (no exporter accepted it).
    expect(await echoThrough({ ...web, bytes: 1024, timeoutMs: 3000 })).toBe('refused');
    expect(await viaEdge.drained()).toBe(true);
    const eastStats = fabric.runtimes.east.status().dataplane!;
    expect(eastStats.egress['perf/iperf3']!.failovers).toBeGreaterThanOrEqual(1);
    const westKey = Object.keys(eastStats.exporters).find((k) => k.startsWith('west@'))!;
    expect(eastStats.exporters[westKey]!.ejected).toBe(true);
    const t0 = performance.now();
    await fabric.start('west');
    const up = performance.now() - t0;
    // Recovery of the web path: west's gateway is back, but east skips it until its ejection ends.
    let webOk = false;
    for (let i = 0; i < 100 && !webOk; i++) {
      webOk = (await echoThrough({ ...web, bytes: 4096, timeoutMs: 3000 })) === 'ok';
      if (!webOk) await new Promise((r) => setTimeout(r, 50));
    }
    const recoveryMs = performance.now() - t0;
    expect(webOk).toBe(true);
    expect(recoveryMs).toBeLessThan(EJECT_MS + 3000);
    expect(await viaEdge.drained()).toBe(true);
    expect(viaEdge.stats().closed).toBe(false);
    // Round-robin reaches west again.
    const westBefore = fabric.runtimes.west.status().dataplane!.ingress.requests;
    expect((await echoMany(4, perf)).ok).toBe(4);
    expect(fabric.runtimes.west.status().dataplane!.ingress.requests).toBeGreaterThan(westBefore);
    table.add({
      case: 'exporting peer\'s reconciler (west) stopped and restarted mid-traffic',
      held: `west's open tunnel closed cleanly (no corrupt byte); tunnel via edge untouched (${viaEdge.stats().verified} B exact); 6/6 new perf connections failed over to edge; web (west only) refused while down; ${westKey} ejected on east, then used again`,
      recoveryMs,
      recoveryNote: `west restart (${Math.round(up)} ms) → web path echoed; bounded by east's ejectForMs (${EJECT_MS} ms here, 10 s default)`,
    });
    viaEdge.stop();
  }, 30_000);
});
