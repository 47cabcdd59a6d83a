// Rigs for the tunnel benchmark (tunnel.bench.ts): the pieces of the loopback topology
// client → egress → gateway → server, for our data plane and for the reference pairs.
//  - process bookkeeping (every spawned process is tracked and killed by pid at the end),
//  - PEM files for stunnel and haproxy from the same fabric PKI our data plane uses,
//  - a stunnel4 pair and a haproxy pair (mTLS, TLS 1.3 only, ECDSA P-256 certificates),
//  - our data plane, egress (east) and gateway (west) each in its own child process so their RSS
//    is isolated: this file is also the child's entry point (`node --import tsx tunnel-refs.ts dataplane-child`),
//  - a TCP echo server with Nagle off.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Endpoint } from '../../protocol/contracts.ts';

const here = fileURLToPath(new URL('.', import.meta.url));
export const REPO_ROOT = join(here, '..', '..');

// ---------------------------------------------------------------- addresses (127.0.9x.*: no other test uses them)

export const NET = {
  /** Gateways of the example fabric's peers after the rewrite (west's is the one that serves). */
  gatewayRange: '127.0.91.',
  /** Services: iperf3 server on :5201, echo server on :8080. */
  serviceRange: '127.0.92.',
  service: '127.0.92.2',
  /** Our egress listeners (one per import: :5201 perf/iperf3, :8080 web/http). */
  oursEgress: '127.0.93.1',
  /** Client source addresses: .1 is perf/app=iperf-client, .3 is web/app=browser. */
  clientPerf: '127.0.94.1',
  clientWeb: '127.0.94.3',
  /** The idle-memory phase's clients (web/app=browser too): its thousands of closed connections must not slow later binds on clientWeb. */
  clientIdle: '127.0.94.4',
  stunnelEgress: '127.0.95.1',
  stunnelGateway: '127.0.95.2',
  haproxyEgress: '127.0.96.1',
  haproxyGateway: '127.0.96.2',
  iperfPort: 5201,
  echoPort: 8080,
} as const;

/** Rewrites the example fabric's loopback addresses into this benchmark's range. */
export const rewriteAddresses = (t: string): string => t.replaceAll('127.0.10.', NET.gatewayRange).replaceAll('127.0.20.', NET.serviceRange);

export const LOCAL_CLIENTS = {
  clients: [
    { address: NET.clientPerf, namespace: 'perf', labels: { app: 'iperf-client' } },
    { address: NET.clientWeb, namespace: 'web', labels: { app: 'browser' } },
    { address: NET.clientIdle, namespace: 'web', labels: { app: 'browser' } },
  ],
};

// ---------------------------------------------------------------- processes

export interface Proc {
  name: string;
  pid: number;
  child: ChildProcess;
  /** Last lines of stderr, for error messages. */
  tail(): string;
}

const tracked = new Set<Proc>();

export function spawnTracked(name: string, cmd: string, args: string[], opts: { ipc?: boolean; cwd?: string; stdout?: number } = {}): Proc {
  const out = opts.stdout ?? 'ignore';
  const child = spawn(cmd, args, { cwd: opts.cwd ?? REPO_ROOT, stdio: opts.ipc ? ['ignore', out, 'pipe', 'ipc'] : ['ignore', out, 'pipe'] });
  if (child.pid === undefined) throw new Error(`cannot start ${cmd}`);
  let tail = '';
  child.stderr?.on('data', (d: Buffer) => {
    tail = (tail + d.toString('utf8')).slice(-2000);
  });
  const proc: Proc = { name, pid: child.pid, child, tail: () => tail };
  tracked.add(proc);
  child.on('exit', () => tracked.delete(proc));
  return proc;
}

/** Kills every process this module started (by pid) and waits (bounded) for them to exit. */
export async function killAll(): Promise<void> {
  const procs = [...tracked];
  await Promise.all(
    procs.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.child.exitCode !== null || p.child.signalCode !== null) return resolve();
          const timer = setTimeout(resolve, 2000);
          p.child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          p.child.kill('SIGKILL');
        }),
    ),
  );
  tracked.clear();
}

// A bench that throws still must not leave processes behind.
process.once('exit', () => {
  for (const p of tracked) p.child.kill('SIGKILL');
});

/** Resident set size of a process in KiB (from /proc). */
export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

/** CPU seconds (user + system, all threads) a process has used. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After "pid (comm) ", field 3 (state) is index 0; utime and stime are fields 14 and 15.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Resolves when a TCP connect to ep succeeds; bounded by timeoutMs. */
export async function waitListening(ep: Endpoint, timeoutMs: number, proc?: Proc): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc && proc.child.exitCode !== null) throw new Error(`${proc.name} exited (${proc.child.exitCode}): ${proc.tail()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: ep.host, port: ep.port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${proc?.name ?? 'server'} not listening on ${ep.host}:${ep.port} after ${timeoutMs} ms${proc ? `: ${proc.tail()}` : ''}`);
}

// ---------------------------------------------------------------- PKI files for the references

export interface PemIdentity {
  certificatePem: string;
  privateKeyPem: string;
}

export interface PkiFiles {
  ca: string;
  egressCert: string;
  egressKey: string;
  /** Certificate + key in one file (haproxy `crt`). */
  egressBundle: string;
  gatewayCert: string;
  gatewayKey: string;
  gatewayBundle: string;
}

export function writePkiFiles(dir: string, ca: string, egress: PemIdentity, gateway: PemIdentity): PkiFiles {
  const f = (name: string, text: string): string => {
    const p = join(dir, name);
    writeFileSync(p, text.endsWith('\n') ? text : text + '\n', { mode: 0o600 });
    return p;
  };
  return {
    ca: f('ca.crt', ca),
    egressCert: f('egress.crt', egress.certificatePem),
    egressKey: f('egress.key', egress.privateKeyPem),
    egressBundle: f('egress.pem', `${egress.certificatePem.trim()}\n${egress.privateKeyPem.trim()}\n`),
    gatewayCert: f('gateway.crt', gateway.certificatePem),
    gatewayKey: f('gateway.key', gateway.privateKeyPem),
    gatewayBundle: f('gateway.pem', `${gateway.certificatePem.trim()}\n${gateway.privateKeyPem.trim()}\n`),
  };
}

// ---------------------------------------------------------------- reference pairs

/** One proxy pair: processes for the egress side and the gateway side, and where clients connect. */
export interface Pair {
  name: string;
  egress: Proc;
  gateway: Proc;
  iperf: Endpoint;
  echo: Endpoint;
  /** Extra facts for notes (thread counts, TLS settings). */
  note: string;
}

/** Gateway ports of the reference pairs: one TLS port per service (they have no CONNECT routing). */
const REF_GW_PORT = { iperf: 4443, echo: 4444 } as const;

/** The `gatewayName` is the SAN the egress side checks on the gateway certificate (the peer name). */
export async function startStunnelPair(dir: string, pki: PkiFiles, gatewayName: string): Promise<Pair> {
  const common = ['foreground = yes', 'pid =', 'debug = 3', 'syslog = no', 'socket = l:TCP_NODELAY=1', 'socket = r:TCP_NODELAY=1', ''];
  const tlsCommon = [`CAfile = ${pki.ca}`, 'verifyChain = yes', 'sslVersionMin = TLSv1.3', 'sslVersionMax = TLSv1.3'];
  const egressConf = [...common];
  const gatewayConf = [...common];
  for (const svc of ['iperf', 'echo'] as const) {
    const port = svc === 'iperf' ? NET.iperfPort : NET.echoPort;
    egressConf.push(`[${svc}]`, 'client = yes', `accept = ${NET.stunnelEgress}:${port}`, `connect = ${NET.stunnelGateway}:${REF_GW_PORT[svc]}`, `cert = ${pki.egressCert}`, `key = ${pki.egressKey}`, `checkHost = ${gatewayName}`, ...tlsCommon, '');
    gatewayConf.push(`[${svc}]`, `accept = ${NET.stunnelGateway}:${REF_GW_PORT[svc]}`, `connect = ${NET.service}:${port}`, `cert = ${pki.gatewayCert}`, `key = ${pki.gatewayKey}`, 'requireCert = yes', ...tlsCommon, '');
  }
  writeFileSync(join(dir, 'stunnel-egress.conf'), egressConf.join('\n'));
  writeFileSync(join(dir, 'stunnel-gateway.conf'), gatewayConf.join('\n'));
  const gateway = spawnTracked('stunnel gateway', 'stunnel4', [join(dir, 'stunnel-gateway.conf')]);
  const egress = spawnTracked('stunnel egress', 'stunnel4', [join(dir, 'stunnel-egress.conf')]);
  await waitListening({ host: NET.stunnelEgress, port: NET.echoPort }, 5000, egress);
  await waitListening({ host: NET.stunnelGateway, port: REF_GW_PORT.echo }, 5000, gateway);
  return {
    name: 'stunnel',
    egress,
    gateway,
    iperf: { host: NET.stunnelEgress, port: NET.iperfPort },
    echo: { host: NET.stunnelEgress, port: NET.echoPort },
    note: 'stunnel4 defaults (thread per connection, session resumption on), TCP_NODELAY both sides',
  };
}

export async function startHaproxyPair(dir: string, pki: PkiFiles, gatewayName: string): Promise<Pair> {
  const head = ['global', '  maxconn 8000', '  log stderr format raw local0 emerg', 'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 1h', '  timeout server 1h', ''];
  const egressConf = [...head];
  const gatewayConf = [...head];
  for (const svc of ['iperf', 'echo'] as const) {
    const port = svc === 'iperf' ? NET.iperfPort : NET.echoPort;
    egressConf.push(
      `frontend in_${svc}`,
      `  bind ${NET.haproxyEgress}:${port}`,
      `  default_backend gw_${svc}`,
      `backend gw_${svc}`,
      `  server gw ${NET.haproxyGateway}:${REF_GW_PORT[svc]} ssl crt ${pki.egressBundle} ca-file ${pki.ca} verify required verifyhost ${gatewayName} sni str(${gatewayName}) ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.3`,
      '',
    );
    gatewayConf.push(
      `frontend tls_${svc}`,
      `  bind ${NET.haproxyGateway}:${REF_GW_PORT[svc]} ssl crt ${pki.gatewayBundle} ca-file ${pki.ca} verify required ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.3`,
      `  default_backend svc_${svc}`,
      `backend svc_${svc}`,
      `  server s ${NET.service}:${port}`,
      '',
    );
  }
  writeFileSync(join(dir, 'haproxy-egress.cfg'), egressConf.join('\n'));
  writeFileSync(join(dir, 'haproxy-gateway.cfg'), gatewayConf.join('\n'));
  const gateway = spawnTracked('haproxy gateway', 'haproxy', ['-db', '-f', join(dir, 'haproxy-gateway.cfg')]);
  const egress = spawnTracked('haproxy egress', 'haproxy', ['-db', '-f', join(dir, 'haproxy-egress.cfg')]);
  await waitListening({ host: NET.haproxyEgress, port: NET.echoPort }, 5000, egress);
  await waitListening({ host: NET.haproxyGateway, port: REF_GW_PORT.echo }, 5000, gateway);
  return {
    name: 'haproxy',
    egress,
    gateway,
    iperf: { host: NET.haproxyEgress, port: NET.iperfPort },
    echo: { host: NET.haproxyEgress, port: NET.echoPort },
    note: 'haproxy defaults (nbthread = CPUs, TLS session reuse on)',
  };
}

// ---------------------------------------------------------------- our data plane, one child process per side

type ChildRequest =
  | { id: number; op: 'start'; role: 'egress' | 'gateway'; peer: string; files: Array<[string, string]>; identity: PemIdentity; egressAddress: string }
  | { id: number; op: 'gc' }
  | { id: number; op: 'stats' };

/** ChildRequest without its id, distributed over the union. */
type ChildCall = ChildRequest extends infer R ? (R extends ChildRequest ? Omit<R, 'id'> : never) : never;

type ChildReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };

export interface DataplaneChild {
  proc: Proc;
  /** Runs a full GC in the child (started with --expose-gc), then lets the allocator settle. */
  gc(): Promise<void>;
  stats(): Promise<unknown>;
}

function childClient(proc: Proc): { call(req: ChildCall, timeoutMs?: number): Promise<unknown> } {
  let nextId = 1;
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  proc.child.on('message', (m: ChildReply) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.ok) p.resolve(m.value);
    else p.reject(new Error(`${proc.name}: ${m.error}`));
  });
  proc.child.on('exit', (code) => {
    for (const p of pending.values()) p.reject(new Error(`${proc.name} exited (${code}): ${proc.tail()}`));
    pending.clear();
  });
  return {
    call(req, timeoutMs = 15_000) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${proc.name}: no answer to ${req.op} in ${timeoutMs} ms: ${proc.tail()}`));
        }, timeoutMs);
        pending.set(id, {
          resolve: (v) => {
            clearTimeout(timer);
            resolve(v);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        proc.child.send({ ...req, id });
      });
    },
  };
}

/** Node/V8 flags the data plane children start with (V8 heap tuning is applied at run time, see childMain). */
export const DATAPLANE_NODE_FLAGS: string[] = [];

export async function startDataplaneChild(role: 'egress' | 'gateway', peer: string, files: Map<string, Uint8Array>, identity: PemIdentity): Promise<DataplaneChild> {
  // CLGO_BENCH_CHILD_FLAGS: extra Node/V8 flags for the children (e.g. --trace-gc); CLGO_BENCH_CHILD_STDOUT:
  // a directory that gets each child's stdout (where --trace-gc writes) as <role>.<pid>.log.
  const extra = (process.env.CLGO_BENCH_CHILD_FLAGS ?? '').split(/\s+/).filter(Boolean);
  const outDir = process.env.CLGO_BENCH_CHILD_STDOUT;
  const stdout = outDir ? openSync(join(outDir, `${role}.${Date.now()}.log`), 'w') : undefined;
  const proc = spawnTracked(`ours ${role} (${peer})`, process.execPath, [...DATAPLANE_NODE_FLAGS, ...extra, '--expose-gc', '--import', 'tsx', fileURLToPath(import.meta.url), 'dataplane-child'], { ipc: true, ...(stdout === undefined ? {} : { stdout }) });
  if (stdout !== undefined) closeSync(stdout);
  const client = childClient(proc);
  await client.call({ op: 'start', role, peer, files: [...files].map(([p, b]) => [p, Buffer.from(b).toString('base64')]), identity, egressAddress: NET.oursEgress }, 30_000);
  return {
    proc,
    gc: async () => {
      await client.call({ op: 'gc' });
    },
    stats: () => client.call({ op: 'stats' }),
  };
}

async function childMain(): Promise<void> {
  // As in production (bin/clgo.mjs for `run` and `dataplane`): the relay's heap tuning, set at run time.
  if (process.env.CLGO_BENCH_NO_HEAP_TUNING !== '1') (await import('../../dataplane/heap-tuning.ts')).startRelayHeapTuning();
  // Imported here so that the parent (which only spawns) does not load the data plane.
  const [{ startDataplane }, { loadFabricFiles }, { slice }, { createAuthorizer }, { dataplaneConfigFromSlice }, { clientLookup }] = await Promise.all([
    import('../../dataplane/dataplane.ts'),
    import('../../schema/load.ts'),
    import('../../reconciler/slice/slice.ts'),
    import('../../reconciler/xds/authz.ts'),
    import('../../reconciler/xds/config.ts'),
    import('../../reconciler/runtime/local-clients.ts'),
  ]);
  let dataplane: Awaited<ReturnType<typeof startDataplane>> | null = null;
  const setupMs = new Map<string, number[]>();
  const recordSetup = (importRef: string, seconds: number): void => {
    const samples = setupMs.get(importRef) ?? [];
    samples.push(seconds * 1000);
    if (samples.length > 1000) samples.shift();
    setupMs.set(importRef, samples);
  };
  const send = (r: ChildReply): void => {
    process.send?.(r);
  };
  process.on('disconnect', () => process.exit(0));
  process.on('message', (req: ChildRequest) => {
    void (async () => {
      try {
        if (req.op === 'start') {
          const loaded = loadFabricFiles(new Map(req.files.map(([p, b64]) => [p, new Uint8Array(Buffer.from(b64, 'base64'))])));
          if (!loaded.ok) throw new Error(`fabric does not load: ${JSON.stringify(loaded.errors).slice(0, 500)}`);
          const s = slice(loaded.fabric, req.peer);
          const authorizer = createAuthorizer({ slice: () => s, clientAttributes: clientLookup(LOCAL_CLIENTS) });
          dataplane = await startDataplane({ config: dataplaneConfigFromSlice(s, req.identity, { egressAddress: req.egressAddress }, 'bench'), authorizer, onTunnelSetup: recordSetup });
          send({ id: req.id, ok: true, value: dataplane.addresses() });
        } else if (req.op === 'gc') {
          const gc = (globalThis as { gc?: () => void }).gc;
          gc?.();
          await new Promise((r) => setTimeout(r, 100));
          gc?.();
          send({ id: req.id, ok: true, value: null });
        } else {
          const st = dataplane?.stats();
          // Setup latency of the last 1,000 tunnels per import, as the data plane measured it.
          const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.max(0, Math.ceil((p / 100) * xs.length) - 1)] ?? Number.NaN;
          const egress = Object.fromEntries(
            Object.entries(st?.egress ?? {}).map(([k, v]) => {
              const last = setupMs.get(k) ?? [];
              return [k, { ...v, setupMs: last.length, setupP50: pct(last, 50), setupP99: pct(last, 99) }];
            }),
          );
          send({ id: req.id, ok: true, value: st ? { ...st, egress } : null });
        }
      } catch (err) {
        send({ id: req.id, ok: false, error: (err as Error).stack ?? String(err) });
      }
    })();
  });
}

// ---------------------------------------------------------------- echo server

export interface EchoServer {
  close(): Promise<void>;
  connections(): number;
}

/** Echoes every byte back; Nagle off on accepted sockets (ping-pong must not wait for delayed ACKs). */
export async function startEchoServer(ep: Endpoint): Promise<EchoServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(ep.port, ep.host, () => resolve());
  });
  return {
    connections: () => sockets.size,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

if (process.argv[2] === 'dataplane-child' && process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === import.meta.url) {
  await childMain();
}
