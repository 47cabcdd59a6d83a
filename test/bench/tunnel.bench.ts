// Tunnel data path side by side, all on loopback (127.0.9x.*): client → egress → gateway → server.
//   direct   client → server
//   ours     our data plane: egress listener of an import (east, child process) → mTLS TLS 1.3
//            CONNECT tunnel (ECDSA P-256 certificates from reconciler/pki) → gateway (west, child
//            process) → server; the real Authorizer decides each connection at both ends
//   envoy    the cluster shape: a real Envoy per side started as deploy/ starts the tunnel pod
//            (--concurrency 1), configured only by our control planes (`clgo run`, own processes)
//            over ADS, ext_authz deciding each tunnel at both ends (envoy-pair.ts)
//   stunnel  a stunnel4 client/server pair, mTLS TLS 1.3, same certificates
//   haproxy  a haproxy pair, mTLS TLS 1.3, same certificates
// Metrics: iperf3 throughput (1 and 4 streams, mean of 2 interleaved rounds of 2 s), 64-byte request/response rate over one
// connection (2 s), connection setup latency (1,000 sequential connect + 1-byte echo + close), and
// RSS per idle tunnel (5,000 idle connections as the target states for ours and Envoy; the
// references are informative and measured with 1,000).
// Methodology follows ../shared/reference/tunnel-anchors-2026-11-24.md, scaled down to fit about
// 3 minutes: two interleaved iperf3 rounds of 2 s per cell instead of two of 10 s, 1,000
// connections instead of 2,000.
// Every TLS hop uses each implementation's default session handling (all three resume sessions).
// Clients and servers run in this process; each egress and gateway is its own process.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Endpoint } from '../../protocol/contracts.ts';
import { freshExampleFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { startEnvoyPair } from './envoy-pair.ts';
import { percentile, row, type Benchmark, type BenchResult } from './harness.ts';
import {
  NET,
  cpuSeconds,
  killAll,
  rewriteAddresses,
  rssKiB,
  spawnTracked,
  startDataplaneChild,
  startEchoServer,
  startHaproxyPair,
  startStunnelPair,
  waitListening,
  writePkiFiles,
  type Proc,
} from './tunnel-refs.ts';

const IPERF_SECONDS = 2;
/** Rounds per iperf3 cell, interleaved across paths; the cell is their mean (one round was ±20 % run to run here). */
const IPERF_ROUNDS = 2;
const RR_MS = 2000;
const RR_BYTES = 64;
const SETUP_CONNECTIONS = 1000;
const SETUP_WARMUP = 20;
const SETUP_BLOCK = 100;
/** Per path at most, so a slow path cannot push the run past its budget (less when time is short). */
const SETUP_CAP_MS = 8000;
/** Per path at least, however late the run is (a loaded machine): a p99 needs some hundreds of samples. */
const SETUP_FLOOR_MS = 3000;
/** Setup latency, measured last, gets what is left of this many seconds since the start. */
const DEADLINE_S = 170;
/** The 2 s of ping-pong per path run as slices interleaved across paths. */
const RR_SLICES = 4;
const IDLE_CONNECTIONS = 5000;
/** The references' idle memory is informative only: fewer connections to save time. */
const IDLE_CONNECTIONS_REF = 1000;
const IDLE_IN_FLIGHT = 100;
/** The whole run should stay under 3 minutes; past this it warns. */
const SOFT_BUDGET_S = 180;

type PathName = 'direct' | 'ours' | 'envoy' | 'stunnel' | 'haproxy';
const PATHS: PathName[] = ['direct', 'ours', 'envoy', 'stunnel', 'haproxy'];
/** The data planes measured against the references (ours = the Node data plane). */
type Subject = 'ours' | 'envoy';
const SUBJECTS: Subject[] = ['ours', 'envoy'];

interface Path {
  name: PathName;
  iperf: Endpoint;
  echo: Endpoint;
  /** Egress-side and gateway-side processes (none for direct). */
  egress: Pick<Proc, 'pid'> | null;
  gateway: Pick<Proc, 'pid'> | null;
  /** Other processes on the path whose CPU counts (Envoy's control planes answering ext_authz). */
  helpers: Array<Pick<Proc, 'pid'>>;
}

// ---------------------------------------------------------------- measurements

interface IperfResult {
  gbps: number;
  /** CPU% (100 = one core) of the egress and gateway process during the run. */
  egressCpu: number | null;
  gatewayCpu: number | null;
  /** CPU% of the helper processes together (null when there are none). */
  helperCpu: number | null;
  /** Gbit/s of each round, when this is a mean. */
  rounds?: number[];
}

function runIperf(path: Path, streams: number): Promise<IperfResult> {
  const cpu0 = [path.egress, path.gateway].map((p) => (p ? cpuSeconds(p.pid) : 0));
  const helperCpu0 = path.helpers.reduce((n, p) => n + cpuSeconds(p.pid), 0);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const args = ['-c', path.iperf.host, '-p', String(path.iperf.port), '-B', NET.clientPerf, '-t', String(IPERF_SECONDS), '-P', String(streams), '-J', '--connect-timeout', '3000'];
    const child = spawn('iperf3', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), (IPERF_SECONDS + 7) * 1000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const wallS = (performance.now() - t0) / 1000;
      const cpu = [path.egress, path.gateway].map((p, i) => (p ? (100 * (cpuSeconds(p.pid) - (cpu0[i] ?? 0))) / wallS : null));
      const helperCpu = path.helpers.length === 0 ? null : (100 * (path.helpers.reduce((n, p) => n + cpuSeconds(p.pid), 0) - helperCpu0)) / wallS;
      try {
        const json = JSON.parse(out) as { error?: string; end?: { sum_received?: { bits_per_second?: number } } };
        const bps = json.end?.sum_received?.bits_per_second;
        if (json.error || bps === undefined) throw new Error(json.error ?? 'no sum_received');
        resolve({ gbps: bps / 1e9, egressCpu: cpu[0] ?? null, gatewayCpu: cpu[1] ?? null, helperCpu });
      } catch (e) {
        reject(new Error(`iperf3 ${path.name} -P ${streams} (exit ${code}): ${(e as Error).message} ${err.slice(0, 300)}`));
      }
    });
  });
}

/**
 * iperf3's server runs one test at a time and refuses the next while it still sees the last one's
 * control connection, which a proxy pair on a loaded machine may close a moment late: retry that
 * refusal (bounded), nothing else.
 */
async function runIperfWhenFree(path: Path, streams: number): Promise<IperfResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await runIperf(path, streams);
    } catch (err) {
      if (attempt >= 10 || !/server is busy/.test((err as Error).message)) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

function meanIperf(rs: IperfResult[]): IperfResult {
  const mean = (xs: Array<number | null>): number | null => (xs.some((x) => x === null) ? null : xs.reduce<number>((a, x) => a + (x as number), 0) / xs.length);
  return { gbps: mean(rs.map((r) => r.gbps))!, egressCpu: mean(rs.map((r) => r.egressCpu)), gatewayCpu: mean(rs.map((r) => r.gatewayCpu)), helperCpu: mean(rs.map((r) => r.helperCpu)), rounds: rs.map((r) => r.gbps) };
}

interface PingPong {
  /** Runs ms of ping-pong; resolves the round trips completed. */
  run(ms: number): Promise<number>;
  close(): void;
}

/** One connection for RR_BYTES ping-pong, warmed up with 200 exchanges; measured in slices so paths can be interleaved. */
async function openPingPong(ep: Endpoint): Promise<PingPong> {
  const msg = Buffer.alloc(RR_BYTES, 0x61);
  const sock = net.connect({ host: ep.host, port: ep.port, localAddress: NET.clientWeb, noDelay: true });
  let pendingBytes = 0;
  let onRoundTrip: (() => void) | null = null;
  let onFail: ((e: Error) => void) | null = null;
  sock.on('data', (d: Buffer) => {
    pendingBytes -= d.length;
    if (pendingBytes <= 0) onRoundTrip?.();
  });
  const fail = (e: Error): void => onFail?.(e);
  sock.on('error', fail);
  sock.on('close', () => fail(new Error('ping-pong connection closed')));
  await new Promise<void>((resolve, reject) => {
    onFail = reject;
    sock.once('connect', () => resolve());
  });
  const exchange = (until: (n: number) => boolean, guardMs: number): Promise<number> =>
    new Promise((resolve, reject) => {
      let n = 0;
      const guard = setTimeout(() => done(new Error('ping-pong stalled')), guardMs);
      function done(e?: Error): void {
        clearTimeout(guard);
        onRoundTrip = null;
        onFail = null;
        if (e) reject(e);
        else resolve(n);
      }
      onFail = done;
      onRoundTrip = () => {
        n++;
        if (until(n)) return done();
        pendingBytes = RR_BYTES;
        sock.write(msg);
      };
      pendingBytes = RR_BYTES;
      sock.write(msg);
    });
  await exchange((n) => n >= 200, 10_000);
  return {
    run: (ms) => {
      const end = performance.now() + ms;
      return exchange(() => performance.now() >= end, ms + 5000);
    },
    close: () => {
      onFail = null;
      sock.destroy();
    },
  };
}

/** connect + 1-byte echo; resolves the elapsed ms, or null on failure. The socket stays open when keep is given. */
function connectEcho(ep: Endpoint, keep?: net.Socket[], localAddress: string = NET.clientWeb): Promise<number | null> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const sock = net.connect({ host: ep.host, port: ep.port, localAddress, noDelay: true });
    let done = false;
    const finish = (v: number | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (v !== null && keep) keep.push(sock);
      else sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => finish(null), 5000);
    sock.on('connect', () => sock.write('x'));
    sock.once('data', () => finish(performance.now() - t0));
    sock.on('error', () => finish(null));
    sock.on('close', () => finish(null));
  });
}

interface Setup {
  p50: number;
  p99: number;
  max: number;
  n: number;
  failed: number;
}

/**
 * SETUP_CONNECTIONS sequential connect + 1-byte echo + close per path, in interleaved blocks so
 * background load hits every path alike; each path stops early after SETUP_CAP_MS in total.
 */
async function setupLatency(paths: Path[], capMs: number): Promise<Map<PathName, Setup>> {
  const samples = new Map<PathName, number[]>(paths.map((p) => [p.name, []]));
  const failed = new Map<PathName, number>(paths.map((p) => [p.name, 0]));
  const spent = new Map<PathName, number>(paths.map((p) => [p.name, 0]));
  for (const p of paths) for (let i = 0; i < SETUP_WARMUP; i++) await connectEcho(p.echo);
  for (let block = 0; block < SETUP_CONNECTIONS / SETUP_BLOCK; block++) {
    for (const p of paths) {
      if ((spent.get(p.name) ?? 0) > capMs) continue;
      const t0 = performance.now();
      for (let i = 0; i < SETUP_BLOCK; i++) {
        const ms = await connectEcho(p.echo);
        if (ms === null) failed.set(p.name, (failed.get(p.name) ?? 0) + 1);
        else samples.get(p.name)?.push(ms);
      }
      spent.set(p.name, (spent.get(p.name) ?? 0) + performance.now() - t0);
    }
  }
  return new Map(
    paths.map((p) => {
      const s = samples.get(p.name) ?? [];
      return [p.name, { p50: percentile(s, 50), p99: percentile(s, 99), max: Math.max(...s), n: s.length, failed: failed.get(p.name) ?? 0 }];
    }),
  );
}

interface IdleMemory {
  egressKiB: number;
  gatewayKiB: number;
  opened: number;
  openS: number;
}

/** Opens IDLE_CONNECTIONS echoed-once connections through a pair and measures the RSS delta of both sides per connection. */
async function idleMemory(path: Path, gc: () => Promise<void>, count: number): Promise<IdleMemory> {
  if (!path.egress || !path.gateway) throw new Error('no processes to measure');
  for (let i = 0; i < 20; i++) await connectEcho(path.echo);
  await gc();
  const before = [rssKiB(path.egress.pid), rssKiB(path.gateway.pid)] as const;
  const open: net.Socket[] = [];
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: IDLE_IN_FLIGHT }, async () => {
      while (next < count) {
        next++;
        await connectEcho(path.echo, open, NET.clientIdle);
      }
    }),
  );
  const openS = (performance.now() - t0) / 1000;
  await gc();
  const after = [rssKiB(path.egress.pid), rssKiB(path.gateway.pid)] as const;
  // Reset rather than close: thousands of client sockets in TIME_WAIT would make every later bind
  // to a client address search for a free port (direct setup went from 0.2 to 1.8 ms), and the
  // proxies' own connections would linger too.
  for (const s of open) s.resetAndDestroy();
  const n = Math.max(1, open.length);
  return { egressKiB: (after[0] - before[0]) / n, gatewayKiB: (after[1] - before[1]) / n, opened: open.length, openS };
}

// ---------------------------------------------------------------- the benchmark

const fmt = (v: number | null | undefined, digits = 2): string => (v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));

async function run(): Promise<BenchResult[]> {
  const started = performance.now();
  const elapsedS = (): number => (performance.now() - started) / 1000;
  const dir = mkdtempSync(join(tmpdir(), 'clgo-tunnel-bench-'));
  const closers: Array<() => Promise<void>> = [];
  try {
    // One fabric for everyone: east imports perf/iperf3 (west only, so no round-robin to an absent
    // edge) and web/http from west; west's gateway serves both exports at 127.0.92.2.
    const fresh = await freshExampleFabric({ rewrite: rewriteAddresses });
    const files = new Map(fresh.files);
    const importPath = 'peers/east/imports/iperf3.yaml';
    const importText = Buffer.from(files.get(importPath) as Uint8Array).toString('utf8');
    const westOnly = importText.replace(/\n\s*- peer: edge\n\s*exportName: iperf3\n\s*exportNamespace: perf\n?/, '\n');
    if (westOnly === importText) throw new Error(`could not drop edge from ${importPath}; the example fabric changed`);
    files.set(importPath, Buffer.from(westOnly));
    const east = fresh.peers.east;
    const west = fresh.peers.west;
    if (!east || !west) throw new Error('example fabric has no east or west peer');

    // Servers.
    const echo = await startEchoServer({ host: NET.service, port: NET.echoPort });
    closers.push(() => echo.close());
    const iperfServer = spawnTracked('iperf3 server', 'iperf3', ['-s', '-B', NET.service, '-p', String(NET.iperfPort)]);
    await waitListening({ host: NET.service, port: NET.iperfPort }, 5000, iperfServer);

    // Pairs. Ours: gateway (west) first, then egress (east).
    const [gatewayChild, egressChild] = await Promise.all([startDataplaneChild('gateway', 'west', files, west), startDataplaneChild('egress', 'east', files, east)]);
    const pki = writePkiFiles(dir, fresh.ca.certificatePem, east, west);
    const [stunnel, haproxy, envoy] = await Promise.all([startStunnelPair(dir, pki, 'west'), startHaproxyPair(dir, pki, 'west'), startEnvoyPair(dir, files, { east, west }, fresh.ca.certificatePem)]);
    closers.push(() => envoy.close());

    const paths: Record<PathName, Path> = {
      direct: { name: 'direct', iperf: { host: NET.service, port: NET.iperfPort }, echo: { host: NET.service, port: NET.echoPort }, egress: null, gateway: null, helpers: [] },
      ours: { name: 'ours', iperf: { host: NET.oursEgress, port: NET.iperfPort }, echo: { host: NET.oursEgress, port: NET.echoPort }, egress: egressChild.proc, gateway: gatewayChild.proc, helpers: [] },
      envoy: { name: 'envoy', iperf: envoy.iperf, echo: envoy.echo, egress: envoy.egress, gateway: envoy.gateway, helpers: envoy.controlPlanes },
      stunnel: { name: 'stunnel', iperf: stunnel.iperf, echo: stunnel.echo, egress: stunnel.egress, gateway: stunnel.gateway, helpers: [] },
      haproxy: { name: 'haproxy', iperf: haproxy.iperf, echo: haproxy.echo, egress: haproxy.egress, gateway: haproxy.gateway, helpers: [] },
    };
    // Sanity: every path echoes before anything is measured.
    for (const p of PATHS) {
      let ok = false;
      for (let i = 0; i < 20 && !ok; i++) {
        ok = (await connectEcho(paths[p].echo)) !== null;
        if (!ok) await new Promise((r) => setTimeout(r, 100));
      }
      if (!ok) throw new Error(`path ${p} does not echo`);
    }
    console.error(`  set up in ${elapsedS().toFixed(1)} s (${availableParallelism()} cores)`);

    // Memory first, while every process is fresh (freed memory from earlier tests would hide growth).
    const noGc = async (): Promise<void> => {
      await new Promise((r) => setTimeout(r, 300));
    };
    const oursGc = async (): Promise<void> => {
      await Promise.all([egressChild.gc(), gatewayChild.gc()]);
    };
    const memory: Partial<Record<PathName, IdleMemory>> = {};
    memory.ours = await idleMemory(paths.ours, oursGc, IDLE_CONNECTIONS);
    await new Promise((r) => setTimeout(r, 300));
    // Envoy has no collector to run: its allocator (tcmalloc) holds what it freed, as in production.
    memory.envoy = await idleMemory(paths.envoy, noGc, IDLE_CONNECTIONS);
    await new Promise((r) => setTimeout(r, 300));
    for (const p of ['haproxy', 'stunnel'] as const) {
      memory[p] = await idleMemory(paths[p], noGc, IDLE_CONNECTIONS_REF);
      await new Promise((r) => setTimeout(r, 300));
    }
    console.error(`  idle memory done at ${elapsedS().toFixed(1)} s`);

    // Throughput: interleaved by path within each stream count.
    const iperf: Record<number, Partial<Record<PathName, IperfResult>>> = { 1: {}, 4: {} };
    const rounds: Record<number, Partial<Record<PathName, IperfResult[]>>> = { 1: {}, 4: {} };
    for (const streams of [1, 4]) {
      for (let r = 0; r < IPERF_ROUNDS; r++) for (const p of PATHS) (rounds[streams]![p] ??= []).push(await runIperfWhenFree(paths[p], streams));
      for (const p of PATHS) iperf[streams]![p] = meanIperf(rounds[streams]![p]!);
    }
    console.error(`  iperf3 done at ${elapsedS().toFixed(1)} s`);

    const rr: Partial<Record<PathName, number>> = {};
    const pingPongs = await Promise.all(PATHS.map((p) => openPingPong(paths[p].echo)));
    try {
      const counts = PATHS.map(() => 0);
      for (let slice = 0; slice < RR_SLICES; slice++) for (const [i, pp] of pingPongs.entries()) counts[i]! += await pp.run(RR_MS / RR_SLICES);
      for (const [i, p] of PATHS.entries()) rr[p] = (counts[i]! * 1000) / RR_MS;
    } finally {
      for (const pp of pingPongs) pp.close();
    }
    const setupCap = Math.max(SETUP_FLOOR_MS, Math.min(SETUP_CAP_MS, ((DEADLINE_S - elapsedS()) * 1000) / PATHS.length - 500));
    const setupMap = await setupLatency(
      PATHS.map((p) => paths[p]),
      setupCap,
    );
    const setup = Object.fromEntries(setupMap) as Record<PathName, Setup>;
    console.error(`  request/response and setup done at ${elapsedS().toFixed(1)} s`);

    const oursStats = (await Promise.all([egressChild.stats(), gatewayChild.stats()])) as Array<{ egress?: Record<string, { failed: number; failovers: number; setupP50?: number; setupP99?: number }>; ingress?: { denied: number; badRequests: number } }>;
    const oursInternal = oursStats[0]?.egress?.['web/http'];
    const envoyCounters = await envoy.counters();

    // ------------------------------------------------------------ rows
    const rows: BenchResult[] = [];
    const REFS = ['direct', 'stunnel', 'haproxy'] as const;
    type Targets = Partial<Record<Subject, Partial<Record<(typeof REFS)[number], number>>>>;
    const metric = (key: string, label: string, unit: string, value: (p: PathName) => number, higherIsBetter: boolean, targets: Targets): void => {
      for (const p of PATHS) rows.push(row(`tunnel.${key}.${p}`, value(p), unit, '', null));
      for (const subject of SUBJECTS) {
        for (const ref of REFS) {
          const ratio = value(subject) / value(ref);
          const t = targets[subject]?.[ref];
          if (t === undefined) rows.push(row(`tunnel.${key}.${subject}/${ref}`, ratio, 'x', '', null, label));
          else rows.push(row(`tunnel.${key}.${subject}/${ref}`, ratio, 'x', higherIsBetter ? `>= ${t} x` : `<= ${t} x`, higherIsBetter ? ratio >= t : ratio <= t, label));
        }
      }
      rows.push(row(`tunnel.${key}.envoy/ours`, value('envoy') / value('ours'), 'x', '', null, `${label}: the Envoy pair over the Node data plane`));
    };
    metric('iperf.1-stream', 'iperf3 -P 1 receiver throughput', 'Gbit/s', (p) => iperf[1]![p]!.gbps, true, { ours: { haproxy: 1.0 }, envoy: { haproxy: 1.0 } });
    metric('iperf.4-stream', 'iperf3 -P 4 receiver throughput', 'Gbit/s', (p) => iperf[4]![p]!.gbps, true, { ours: { haproxy: 0.9 }, envoy: { haproxy: 1.0 } });
    metric('rr.64B', '64-byte ping-pong over one connection', 'round-trips/s', (p) => rr[p]!, true, { ours: { direct: 0.25 }, envoy: { haproxy: 1.0 } });
    metric('setup.p50', 'connect + 1-byte echo + close, sequential', 'ms', (p) => setup[p]!.p50, false, { ours: { haproxy: 1.0 }, envoy: { haproxy: 1.0 } });
    metric('setup.p99', 'connect + 1-byte echo + close, sequential', 'ms', (p) => setup[p]!.p99, false, { envoy: { haproxy: 1.2 } });
    const p99 = setup.ours!.p99;
    rows.push(row('tunnel.setup.p99.ours.absolute', p99, 'ms', '<= 4 ms', p99 <= 4));
    const failedSetups = PATHS.reduce((n, p) => n + setup[p]!.failed, 0);
    rows.push(row('tunnel.setup.failed', failedSetups, 'connections', '= 0', failedSetups === 0, PATHS.map((p) => `${p}: ${setup[p]!.failed} of ${setup[p]!.n + setup[p]!.failed}`).join(', ')));
    if (oursInternal?.setupP50 !== undefined) rows.push(row('tunnel.setup.p50.ours.egress-internal', oursInternal.setupP50, 'ms', '', null, 'egress accept → CONNECT 200 received, as the data plane records it (last 1,000 tunnels)'));
    for (const p of ['ours', 'envoy', 'stunnel', 'haproxy'] as const) {
      const m = memory[p];
      if (!m) continue;
      const subject = p === 'ours' || p === 'envoy';
      const note = `${m.opened}/${subject ? IDLE_CONNECTIONS : IDLE_CONNECTIONS_REF} idle connections opened in ${m.openS.toFixed(1)} s, ${IDLE_IN_FLIGHT} in flight${p === 'ours' ? '; GC before each reading' : ''}`;
      rows.push(row(`tunnel.idle-memory.${p}.egress`, m.egressKiB, 'KiB/conn', subject ? '<= 40 KiB' : '', subject ? m.egressKiB <= 40 && m.opened === IDLE_CONNECTIONS : null, note));
      rows.push(row(`tunnel.idle-memory.${p}.gateway`, m.gatewayKiB, 'KiB/conn', subject ? '<= 40 KiB' : '', subject ? m.gatewayKiB <= 40 && m.opened === IDLE_CONNECTIONS : null, note));
    }

    // ------------------------------------------------------------ side-by-side table (stderr)
    const lines: string[] = [];
    const RATIOS: Array<[PathName, PathName]> = [['ours', 'direct'], ['ours', 'stunnel'], ['ours', 'haproxy'], ['envoy', 'direct'], ['envoy', 'stunnel'], ['envoy', 'haproxy'], ['envoy', 'ours']];
    const head = ['metric', ...PATHS, ...RATIOS.map(([a, b]) => `${a}/${b}`)];
    const table: string[][] = [];
    const add = (label: string, v: (p: PathName) => number | null, digits = 2): void => {
      const ratio = (a: PathName, b: PathName): number | null => {
        const x = v(a);
        const y = v(b);
        return x !== null && y !== null ? x / y : null;
      };
      table.push([label, ...PATHS.map((p) => fmt(v(p), digits)), ...RATIOS.map(([a, b]) => fmt(ratio(a, b)))]);
    };
    add('iperf3 1 stream Gbit/s', (p) => iperf[1]![p]!.gbps);
    for (let r = 0; r < IPERF_ROUNDS; r++) add(`  round ${r + 1}`, (p) => iperf[1]![p]!.rounds?.[r] ?? null);
    add('iperf3 4 streams Gbit/s', (p) => iperf[4]![p]!.gbps);
    for (let r = 0; r < IPERF_ROUNDS; r++) add(`  round ${r + 1}`, (p) => iperf[4]![p]!.rounds?.[r] ?? null);
    // CPU seconds both proxy processes spent per GB carried: the cost per byte of each implementation.
    add('  CPU ms per GB (both sides), 1 stream', (p) => { const r = iperf[1]![p]!; return r.egressCpu === null ? null : (10 * ((r.egressCpu ?? 0) + (r.gatewayCpu ?? 0))) / (r.gbps / 8); }, 0);
    add('  CPU ms per GB (both sides), 4 streams', (p) => { const r = iperf[4]![p]!; return r.egressCpu === null ? null : (10 * ((r.egressCpu ?? 0) + (r.gatewayCpu ?? 0))) / (r.gbps / 8); }, 0);
    add('  CPU ms per GB incl. control planes, 1 stream', (p) => { const r = iperf[1]![p]!; return r.egressCpu === null ? null : (10 * ((r.egressCpu ?? 0) + (r.gatewayCpu ?? 0) + (r.helperCpu ?? 0))) / (r.gbps / 8); }, 0);
    add('  CPU% egress side, 1 stream', (p) => iperf[1]![p]!.egressCpu, 0);
    add('  CPU% gateway side, 1 stream', (p) => iperf[1]![p]!.gatewayCpu, 0);
    add('  CPU% egress side, 4 streams', (p) => iperf[4]![p]!.egressCpu, 0);
    add('  CPU% gateway side, 4 streams', (p) => iperf[4]![p]!.gatewayCpu, 0);
    add('  CPU% control planes (ext_authz), 4 streams', (p) => iperf[4]![p]!.helperCpu, 0);
    add('64 B request/response /s', (p) => rr[p]!, 0);
    add('setup p50 ms', (p) => setup[p]!.p50);
    add('setup p99 ms', (p) => setup[p]!.p99);
    add('setup max ms', (p) => setup[p]!.max);
    add('setup connections measured', (p) => setup[p]!.n, 0);
    add('  ours egress-internal setup p50/p99 ms', (p) => (p === 'ours' ? (oursInternal?.setupP50 ?? null) : null));
    add('  (p99)', (p) => (p === 'ours' ? (oursInternal?.setupP99 ?? null) : null));
    add('idle KiB/conn egress side', (p) => memory[p]?.egressKiB ?? null, 1);
    add('idle KiB/conn gateway side', (p) => memory[p]?.gatewayKiB ?? null, 1);
    add('  seconds to open the idle connections', (p) => memory[p]?.openS ?? null, 1);
    const widths = head.map((h, i) => Math.max(h.length, ...table.map((r) => (r[i] ?? '').length)));
    const fmtRow = (r: string[]): string => `  | ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
    lines.push(fmtRow(head), `  |${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...table.map(fmtRow));
    lines.push(`  ours counters: egress ${JSON.stringify(oursStats[0]?.egress ?? {})} gateway ${JSON.stringify(oursStats[1]?.ingress ?? {})}`);
    lines.push(`  envoy counters: ${JSON.stringify(envoyCounters)}`);
    lines.push(`  references: ${stunnel.note}; ${haproxy.note}; ${envoy.note}. Wall time ${elapsedS().toFixed(1)} s.`);
    console.error(lines.join('\n'));
    if (elapsedS() > SOFT_BUDGET_S) console.error(`  warning: ran ${elapsedS().toFixed(1)} s (budget ${SOFT_BUDGET_S} s)`);
    if (PATHS.some((p) => setup[p].n + setup[p].failed < SETUP_CONNECTIONS)) console.error(`  note: setup latency capped at ${(setupCap / 1000).toFixed(1)} s per path to stay within budget (see "setup connections measured")`);
    return rows;
  } finally {
    for (const c of closers) await c().catch(() => undefined);
    await killAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

export const benchmarks: Benchmark[] = [
  {
    name: 'tunnel',
    description: 'tunnel data path on loopback: direct vs our mTLS CONNECT data planes (Node, and Envoy configured by our xDS) vs stunnel4 vs haproxy (iperf3 1/4 streams, 64 B request/response, setup latency, idle memory)',
    run,
  },
];
