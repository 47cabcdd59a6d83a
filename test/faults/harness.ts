// Shared by the fault-injection suite (test/faults) and the metrics test: three peers of the
// example fabric (east imports from west and edge) running in-process with real traffic on a
// loopback range of their own, Prometheus text parsing, and the suite's summary table.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freshExampleFabric, type FreshFabric } from '../../reconciler/demo/fresh-fabric.ts';
import type { DataplaneLimits } from '../../dataplane/dataplane.ts';
import { clientLookup, type LocalClients } from '../../reconciler/runtime/local-clients.ts';
import { startPeerRuntime, type PeerRuntime } from '../../reconciler/runtime/peer-runtime.ts';
import { createDirectorySource } from '../../reconciler/source/directory-source.ts';
import type { FabricSource } from '../../reconciler/source/types.ts';
import { echoThrough, startEchoServer } from '../fixtures/servers.ts';

export const PEERS = ['west', 'edge', 'east'] as const;
export type PeerName = (typeof PEERS)[number];

/**
 * Addresses of one test file, all in 127.0.<block>.x unless given: gateways .1-.3 (east, west,
 * edge as in the example), services .22/.23 (west, edge), egress listeners .41-.43, clients .6x.
 */
export interface Range {
  gateway: (n: number) => string;
  service: (n: number) => string;
  egress: Record<PeerName, string>;
  client: { perf: string; untrusted: string; web: string; edgeWeb: string; unknown: string };
}

export function blockRange(block: number): Range {
  const a = (n: number): string => `127.0.${block}.${n}`;
  return {
    gateway: (n) => a(n),
    service: (n) => a(20 + n),
    egress: { east: a(41), west: a(42), edge: a(43) },
    client: { perf: a(61), untrusted: a(62), web: a(63), edgeWeb: a(64), unknown: a(69) },
  };
}

export function clientsOf(r: Range): Record<PeerName, LocalClients['clients']> {
  return {
    east: [
      { address: r.client.perf, namespace: 'perf', labels: { app: 'iperf-client' } },
      { address: r.client.untrusted, namespace: 'perf', labels: { app: 'iperf-client', trust: 'untrusted' } },
      { address: r.client.web, namespace: 'web', labels: { app: 'browser' } },
    ],
    edge: [{ address: r.client.edgeWeb, namespace: 'web', labels: { app: 'browser' } }],
    west: [],
  };
}

export interface FabricHarness {
  fresh: FreshFabric;
  range: Range;
  /** The fabric directory (directory sources) or the working copy the caller commits from. */
  dir: string;
  runtimes: Record<PeerName, PeerRuntime>;
  /** Closes one peer's runtime (its reconciler and embedded data plane). */
  stop(peer: PeerName): Promise<void>;
  /** Starts it again with the same options and a fresh source from the factory. */
  start(peer: PeerName): Promise<PeerRuntime>;
  /** Rewrites files of the fabric directory (directory sources only). */
  write(files: ReadonlyMap<string, string | Uint8Array>): Promise<void>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  range: Range;
  /** A source per peer (called again on every start); default: a directory source on `dir`. */
  source?: (peer: PeerName, dir: string, fresh: FreshFabric) => FabricSource;
  limits?: Partial<Record<PeerName, Partial<DataplaneLimits>>>;
  now?: Partial<Record<PeerName, () => Date>>;
  /** Where a peer's gateway binds instead of its peer.yaml address (e.g. behind a fault proxy). */
  ingress?: Partial<Record<PeerName, { host: string; port: number }>>;
  /** Written into the fabric before start (e.g. extra policies). */
  extraFiles?: ReadonlyMap<string, string>;
  /** The fabric (default: freshFabric(range)). */
  fresh?: FreshFabric;
}

/** The example fabric with fresh certificates, moved to `r`: 127.0.10.n gateways → gateway(n), 127.0.20.n services → service(n). */
export function freshFabric(r: Range): Promise<FreshFabric> {
  const rewrite = (t: string): string => t.replace(/127\.0\.10\.(\d+)/g, (_m, n: string) => r.gateway(Number(n))).replace(/127\.0\.20\.(\d+)/g, (_m, n: string) => r.service(Number(n)));
  return freshExampleFabric({ rewrite });
}

/** Three peers of the example fabric on `range`, each with its runtime, and the exported echo services. */
export async function startFabric(opts: HarnessOptions): Promise<FabricHarness> {
  const r = opts.range;
  const fresh = opts.fresh ?? (await freshFabric(r));
  const dir = await mkdtemp(join(tmpdir(), 'clgo-faults-'));
  const write = async (files: ReadonlyMap<string, string | Uint8Array>): Promise<void> => {
    for (const [path, bytes] of files) {
      await mkdir(dirname(join(dir, path)), { recursive: true });
      await writeFile(join(dir, path), bytes);
    }
  };
  await write(fresh.files);
  if (opts.extraFiles) await write(opts.extraFiles);
  const services = [await startEchoServer(r.service(2), 5201), await startEchoServer(r.service(2), 8080), await startEchoServer(r.service(3), 5201)];
  const clients = clientsOf(r);
  const runtimes = {} as Record<PeerName, PeerRuntime>;
  const start = async (peer: PeerName): Promise<PeerRuntime> => {
    const source = opts.source ? opts.source(peer, dir, fresh) : createDirectorySource({ dir, debounceMs: 30 });
    const rt = await startPeerRuntime({
      peer,
      source,
      identity: { privateKeyPem: fresh.peers[peer]!.privateKeyPem },
      listen: { egressAddress: r.egress[peer], ...(opts.ingress?.[peer] ? { ingress: opts.ingress[peer] } : {}) },
      clientAttributes: clientLookup({ clients: clients[peer] }),
      ...(opts.limits?.[peer] ? { dataplaneLimits: opts.limits[peer] } : {}),
      ...(opts.now?.[peer] ? { now: opts.now[peer] } : {}),
    });
    runtimes[peer] = rt;
    return rt;
  };
  const stopped = new Set<PeerName>();
  for (const p of PEERS) await start(p);
  return {
    fresh,
    range: r,
    dir,
    runtimes,
    write,
    async stop(peer) {
      stopped.add(peer);
      await runtimes[peer].close();
    },
    async start(peer) {
      stopped.delete(peer);
      return start(peer);
    },
    async close() {
      await Promise.all(PEERS.filter((p) => !stopped.has(p)).map((p) => runtimes[p].close()));
      await Promise.all(services.map((s) => s.close()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------- Prometheus text

export type Samples = Map<string, number>;

const key = (name: string, labels: Record<string, string>): string =>
  `${name}{${Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]}"`)
    .join(',')}}`;

/** Parses exposition text into `name{k="v",…}` (labels sorted) → value. */
export function parseMetrics(text: string): Samples {
  const out: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.set(key(m[1]!, labels), m[3] === '+Inf' ? Infinity : Number(m[3]));
  }
  return out;
}

/** A sample's value, 0 when absent. */
export function value(s: Samples, name: string, labels: Record<string, string> = {}): number {
  return s.get(key(name, labels)) ?? 0;
}

export async function scrape(url: string): Promise<{ contentType: string | null; samples: Samples; text: string }> {
  const res = await fetch(`${url}/metrics`);
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status}`);
  const text = await res.text();
  return { contentType: res.headers.get('content-type'), samples: parseMetrics(text), text };
}

// ---------------------------------------------------------------- summary table

export interface FaultRow {
  case: string;
  held: string;
  /** Milliseconds, or null where nothing had to recover. */
  recoveryMs: number | null;
  recoveryNote?: string;
}

const RESULTS_DIR = join(tmpdir(), 'clgo-fault-results');
const RESULTS_MD = fileURLToPath(new URL('./RESULTS.md', import.meta.url));
/** Table order: one entry per test file of the suite. */
const FILES = ['git-server', 'runtime-restart', 'gateway-blackhole', 'clock-skew', 'fabric-fuzz', 'garbage-input', 'git-bomb', 'half-close', 'admin-flood', 'webhook-replay'];

/** Collects this file's rows; `flush()` (in afterAll) merges every file's rows into the table. */
export function faultTable(file: string): { add(row: FaultRow): void; flush(): Promise<string> } {
  const name = basename(file).replace(/\.test\.ts$/, '');
  const rows: FaultRow[] = [];
  return {
    add: (row) => void rows.push(row),
    async flush() {
      await mkdir(RESULTS_DIR, { recursive: true });
      await writeFile(join(RESULTS_DIR, `${name}.json`), JSON.stringify({ at: Date.now(), rows }));
      const byFile = new Map<string, FaultRow[]>();
      for (const f of await readdir(RESULTS_DIR)) {
        if (!f.endsWith('.json')) continue;
        try {
          const data = JSON.parse(await readFile(join(RESULTS_DIR, f), 'utf8')) as { at: number; rows: FaultRow[] };
          // Rows of earlier runs (older than 10 minutes) are not this run's.
          if (Date.now() - data.at < 10 * 60_000) byFile.set(f.replace(/\.json$/, ''), data.rows);
        } catch {
          // a file being written by a parallel worker: its own flush will include it
        }
      }
      const order = [...FILES, ...[...byFile.keys()].filter((f) => !FILES.includes(f)).sort()];
      const lines = ['| case | what held | recovery time |', '|---|---|---|'];
      for (const f of order) {
        for (const row of byFile.get(f) ?? []) {
          const rec = row.recoveryMs === null ? (row.recoveryNote ?? 'n/a') : `${Math.round(row.recoveryMs)} ms${row.recoveryNote ? ` (${row.recoveryNote})` : ''}`;
          lines.push(`| ${row.case} | ${row.held.replaceAll('|', '\\|')} | ${rec} |`);
        }
      }
      const table = lines.join('\n');
      const md = `# Fault-injection results\n\nWritten by \`npm run faults\` (test/faults/harness.ts); timings are from the last run on the machine that wrote this file.\n\n${table}\n`;
      await writeFile(RESULTS_MD, md);
      console.log(`\nfault suite summary (${byFile.size}/${FILES.length} files so far):\n${table}\n`);
      return table;
    },
  };
}

/** Runs `f` and returns its duration in ms with the result. */
export async function timed<T>(f: () => Promise<T>): Promise<{ ms: number; result: T }> {
  const t0 = performance.now();
  const result = await f();
  return { ms: performance.now() - t0, result };
}

// ---------------------------------------------------------------- live traffic

export interface LiveStream {
  /** Bytes sent, bytes echoed back and verified, whether any byte differed, whether the connection closed. */
  stats(): { sent: number; verified: number; mismatch: boolean; closed: boolean };
  /** Waits until everything sent before the call came back (bounded); false on time-out, close or mismatch. */
  drained(timeoutMs?: number): Promise<boolean>;
  stop(): void;
}

/**
 * One long-lived connection through a tunnel carrying a steady stream (4 KiB every `everyMs`,
 * at most `maxBytes` in all), every echoed byte compared with what was sent.
 */
/** Opens live streams through `via` until one is carried by `peer`'s gateway (round-robin alternates exporters); stops the others. */
export async function streamVia(fabric: FabricHarness, peer: PeerName, via: { host: string; port: number; localAddress: string }): Promise<LiveStream> {
  for (let i = 0; i < 4; i++) {
    const before = fabric.runtimes[peer].status().dataplane!.ingress.requests;
    const s = await liveStream(via);
    if (fabric.runtimes[peer].status().dataplane!.ingress.requests > before) return s;
    s.stop();
  }
  throw new Error(`no stream landed on ${peer}`);
}

export function liveStream(opts: { host: string; port: number; localAddress: string; everyMs?: number; maxBytes?: number }): Promise<LiveStream> {
  const maxBytes = opts.maxBytes ?? 16 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: opts.host, port: opts.port, localAddress: opts.localAddress, noDelay: true });
    const pending: Buffer[] = [];
    let sent = 0;
    let verified = 0;
    let mismatch = false;
    let closed = false;
    let timer: NodeJS.Timeout | null = null;
    let up = false;
    const send = (): void => {
      if (closed || sent >= maxBytes) return;
      const chunk = randomBytes(4096);
      pending.push(chunk);
      sent += chunk.length;
      sock.write(chunk);
    };
    sock.on('data', (d: Buffer) => {
      let off = 0;
      while (off < d.length && pending.length > 0) {
        const head = pending[0]!;
        const n = Math.min(head.length, d.length - off);
        if (!head.subarray(0, n).equals(d.subarray(off, off + n))) mismatch = true;
        off += n;
        verified += n;
        if (n === head.length) pending.shift();
        else pending[0] = head.subarray(n);
      }
      if (off < d.length) mismatch = true;
      if (!up) {
        up = true;
        timer = setInterval(send, opts.everyMs ?? 20);
        resolve(api);
      }
    });
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      closed = true;
      if (timer) clearInterval(timer);
      if (!up) reject(new Error('stream closed before the tunnel came up'));
    });
    sock.on('connect', send);
    const api: LiveStream = {
      stats: () => ({ sent, verified, mismatch, closed }),
      async drained(timeoutMs = 5000) {
        const target = sent;
        const until = Date.now() + timeoutMs;
        while (Date.now() < until && !closed && !mismatch && verified < target) await new Promise((r) => setTimeout(r, 10));
        return !mismatch && verified >= target && !closed;
      },
      stop() {
        if (timer) clearInterval(timer);
        sock.destroy();
      },
    };
  });
}

/** `n` sequential echo connections of `bytes` each; resolves with how many came back byte for byte. */
export async function echoMany(n: number, o: { host: string; port: number; localAddress: string; bytes?: number; timeoutMs?: number }): Promise<{ ok: number; results: string[] }> {
  const results: string[] = [];
  for (let i = 0; i < n; i++) results.push(await echoThrough({ bytes: 64 * 1024, timeoutMs: 5000, ...o }));
  return { ok: results.filter((r) => r === 'ok').length, results };
}
