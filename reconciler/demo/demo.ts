// `clgo demo` (npm start): the whole product on one machine, with no cluster. A local Git server
// holds a copy of fabric-example/ with fresh certificates; three peers (east, west, edge) run in
// local mode, each following the repository; real traffic crosses allowed and denied paths; then
// commits change the fabric (a policy cuts a live tunnel, a broken file is refused while traffic
// keeps flowing, a revert restores the path). Each step states what must happen and checks it.
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createColors } from 'picocolors';
import { pino } from 'pino';
import type { ClientAttributes } from '../../protocol/contracts.ts';
import { startAdminServer, type AdminServer } from '../runtime/admin-server.ts';
import { createRuntimeMetrics } from '../runtime/metrics.ts';
import { computeFlows, profileName, type ClientProfile } from '../runtime/flows.ts';
import { clientLookup, type LocalClients } from '../runtime/local-clients.ts';
import { startPeerRuntime, type PeerRuntime } from '../runtime/peer-runtime.ts';
import { createGitSource } from '../source/git-source.ts';
import type { FabricSource } from '../source/types.ts';
import { createFabricRepo, type FabricRepo } from './git-repo.ts';
import { startGitHttpServer, type GitHttpServer } from './git-http-server.ts';
import { freshExampleFabric } from './fresh-fabric.ts';

export interface DemoOptions {
  /** Run every step, then exit (CI); otherwise keep the status page up until stopped. */
  once: boolean;
  out: NodeJS.WritableStream;
  color: boolean;
  /** Status page port on 127.0.0.1 (0 = any free port). */
  statusPort: number;
  /** Resolves when the interactive demo should end (Ctrl-C). */
  untilStopped?: () => Promise<void>;
}

export interface DemoStepResult {
  title: string;
  ok: boolean;
  detail: string[];
}

/** Local workloads of each peer, by the loopback address they connect from. */
export const DEMO_CLIENTS: Record<string, LocalClients['clients']> = {
  east: [
    { address: '127.0.30.1', namespace: 'perf', labels: { app: 'iperf-client' } },
    { address: '127.0.30.2', namespace: 'perf', labels: { app: 'iperf-client', trust: 'untrusted' } },
    { address: '127.0.30.3', namespace: 'web', labels: { app: 'browser' } },
  ],
  edge: [{ address: '127.0.30.4', namespace: 'web', labels: { app: 'browser' } }],
  west: [],
};
const EGRESS: Record<string, string> = { east: '127.0.11.1', west: '127.0.11.2', edge: '127.0.11.3' };
const PEERS = ['west', 'edge', 'east'];

const DENY_EAST_WEB = `# Added by the demo: west stops serving web to east (a privileged, cluster-wide rule).
apiVersion: clusterlink.net/v1alpha1
kind: PrivilegedAccessPolicy
metadata:
  name: deny-east-web
spec:
  action: deny
  from:
    - workloadSelector:
        matchLabels:
          peer.clusterlink.net/name: east
  to:
    - workloadSelector:
        matchLabels:
          export.clusterlink.net/namespace: web
`;

interface Services {
  close(): Promise<void>;
}

/** The exported services: TCP echo servers stand in for iperf3 (so every byte can be checked), and a small web server. */
async function startServices(): Promise<Services> {
  const servers: Array<net.Server | http.Server> = [];
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
  };
  for (const host of ['127.0.20.2', '127.0.20.3']) {
    const echo = net.createServer((s) => {
      track(s);
      s.pipe(s);
    });
    await listen(echo, host, 5201);
    servers.push(echo);
  }
  const web = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`hello from west (${req.method} ${req.url})\n`);
  });
  web.on('connection', track);
  await listen(web, '127.0.20.2', 8080);
  servers.push(web);
  return {
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}

function listen(server: net.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new Error(`${host}:${port} is in use: is another demo running? (stop it, or free the port)`) : err),
    );
    server.listen(port, host, () => resolve());
  });
}

/** Echo round trip of `bytes` random bytes; 'ok' | 'refused' | 'mismatch'. */
function echo(host: string, port: number, localAddress: string, bytes: number): Promise<'ok' | 'refused' | 'mismatch'> {
  const payload = Buffer.alloc(bytes, 0);
  for (let i = 0; i < bytes; i++) payload[i] = (i * 31 + 7) & 0xff;
  return new Promise((resolve) => {
    const sock = net.connect({ host, port, localAddress, noDelay: true });
    const got: Buffer[] = [];
    let n = 0;
    let done = false;
    const finish = (r: 'ok' | 'refused' | 'mismatch'): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish(n === 0 ? 'refused' : 'mismatch'), 10_000);
    sock.on('connect', () => sock.write(payload));
    sock.on('data', (d: Buffer) => {
      got.push(d);
      n += d.length;
      if (n >= bytes) finish(Buffer.concat(got).equals(payload) ? 'ok' : 'mismatch');
    });
    sock.on('error', () => finish(n === 0 ? 'refused' : 'mismatch'));
    sock.on('close', () => finish(n === 0 ? 'refused' : 'mismatch'));
  });
}

/** One HTTP GET through an import (a fresh connection unless `agent`); resolves with the status and body, or 'refused'. */
export function httpGet(host: string, port: number, localAddress: string, agent?: http.Agent, opts: { path?: string; timeoutMs?: number } = {}): Promise<{ status: number; body: string } | 'refused'> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, localAddress, path: opts.path ?? '/', agent: agent ?? false, timeout: opts.timeoutMs ?? 10_000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve('refused'));
    });
    req.on('error', () => resolve('refused'));
    req.on('timeout', () => req.destroy());
  });
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return check();
}

export async function runDemo(opts: DemoOptions): Promise<{ ok: boolean; steps: DemoStepResult[] }> {
  const c = createColors(opts.color);
  const out = (s = ''): void => void opts.out.write(`${s}\n`);
  const steps: DemoStepResult[] = [];
  const TOTAL = 9;
  let current: DemoStepResult | null = null;
  const step = (title: string): DemoStepResult => {
    current = { title, ok: true, detail: [] };
    steps.push(current);
    out(`${c.bold(c.cyan(`▶ ${steps.length}/${TOTAL}`))} ${c.bold(title)}`);
    return current;
  };
  const check = (ok: boolean, text: string): void => {
    if (!current) return;
    if (!ok) current.ok = false;
    current.detail.push(`${ok ? 'ok' : 'FAILED'}: ${text}`);
    out(`  ${ok ? c.green('✓') : c.red('✗')} ${text}`);
  };
  const note = (text: string): void => out(`  ${c.dim(text)}`);

  const root = await mkdtemp(join(tmpdir(), 'clgo-demo-'));
  const runtimes: Record<string, PeerRuntime> = {};
  const sources: Record<string, FabricSource> = {};
  let server: GitHttpServer | null = null;
  let services: Services | null = null;
  let admin: AdminServer | null = null;
  const logger = pino({ level: 'silent' });
  const t0 = Date.now();
  try {
    // 1. PKI
    step('Fabric PKI: a fresh CA and one certificate per peer (ECDSA P-256)');
    const fresh = await freshExampleFabric();
    for (const [name, p] of Object.entries(fresh.peers)) check(p.certificatePem.includes('BEGIN CERTIFICATE'), `${name}: certificate signed by the fabric CA; its private key stays with the peer (memory), never in the repository`);

    // 2. Git
    step('Git: a local server holding the fabric repository (git http-backend on 127.0.0.1)');
    server = await startGitHttpServer({ root });
    const repo: FabricRepo = await createFabricRepo({ root, name: 'fabric', files: fresh.files, message: 'fabric: east, west and edge (from fabric-example/)' });
    const first = await repo.head();
    check(true, `${server.repoUrl('fabric.git')} @ ${first.slice(0, 12)} (${fresh.files.size} files)`);

    // 3. Services and peers
    step('Peers: east, west and edge in local mode, each following the repository');
    services = await startServices();
    note('exported services: west perf/iperf3 127.0.20.2:5201 and web/http 127.0.20.2:8080, edge perf/iperf3 127.0.20.3:5201 (echo servers stand in for iperf3)');
    for (const peer of PEERS) {
      const source = createGitSource({ url: server.repoUrl('fabric.git'), ref: { branch: 'main' }, cacheDir: join(root, `cache-${peer}`), pollIntervalMs: 250, timeoutMs: 5000, maxBackoffMs: 1000, logger });
      sources[peer] = source;
      runtimes[peer] = await startPeerRuntime({
        peer,
        source,
        identity: { privateKeyPem: fresh.peers[peer]!.privateKeyPem },
        listen: { egressAddress: EGRESS[peer]! },
        clientAttributes: clientLookup({ clients: DEMO_CLIENTS[peer] ?? [] }),
        logger,
      });
      const st = runtimes[peer].status();
      check(st.ready && st.applied?.revision === first, `${peer}: revision ${first.slice(0, 12)} applied; ${st.slice?.imports.length ?? 0} import(s) listening on ${EGRESS[peer]}, ${st.slice?.exports.length ?? 0} export(s) behind its gateway`);
    }
    admin = await startAdminServer({
      host: '127.0.0.1',
      port: opts.statusPort,
      ready: () => Object.values(runtimes).every((r) => r.status().ready),
      status: () => demoStatus(runtimes),
    });
    // One scrape target per peer (the three share this process): /metrics/<peer>.
    for (const [peer, rt] of Object.entries(runtimes)) admin.mount(`/metrics/${peer}`, createRuntimeMetrics(rt, { defaultLabels: { peer }, processMetrics: peer === 'east' }).handler);
    note(`status page: ${admin.url}/ (metrics: ${admin.url}/metrics/<peer>)`);

    // 4. Allowed traffic
    step('Allowed: east perf client → perf/iperf3 (round-robin over west and edge)');
    const eastPerf = (): { west: number; edge: number } => ({ west: runtimes.west!.status().dataplane?.ingress.requests ?? 0, edge: runtimes.edge!.status().dataplane?.ingress.requests ?? 0 });
    const before = eastPerf();
    const results: string[] = [];
    for (let i = 0; i < 4; i++) results.push(await echo(EGRESS.east!, 5201, '127.0.30.1', 256 * 1024));
    const after = eastPerf();
    check(results.every((r) => r === 'ok'), `4 connections × 256 KiB echoed back byte for byte through mTLS tunnels (${results.join(', ')})`);
    check(after.west - before.west === 2 && after.edge - before.edge === 2, `load balanced: ${after.west - before.west} via west, ${after.edge - before.edge} via edge`);
    const web = await httpGet(EGRESS.east!, 8080, '127.0.30.3');
    check(web !== 'refused' && web.status === 200 && web.body.startsWith('hello from west'), `east web client → web/http: ${web === 'refused' ? 'refused' : `HTTP ${web.status} "${web.body.trim()}"`}`);

    // 5. Denied traffic
    step('Denied: policy refuses before any workload byte moves');
    const untrusted = await echo(EGRESS.east!, 5201, '127.0.30.2', 1024);
    const why = runtimes.east!.authorizer.explainEgress({ importNamespace: 'perf', importName: 'iperf3', sourceAddress: '127.0.30.2', sourcePort: 0 });
    const egressReason = why.sources[0]?.explanation;
    check(untrusted === 'refused', `east client labelled trust=untrusted → perf/iperf3: ${untrusted} at east's egress (${egressReason?.tier} ${egressReason?.policy ?? ''} ${egressReason?.location ?? ''})`);
    const deniedBefore = runtimes.west!.status().dataplane?.ingress.denied ?? 0;
    const edgeWeb = await httpGet(EGRESS.edge!, 8080, '127.0.30.4');
    const edgeFlow = computeFlows(runtimes.west!.fabric()!).find((f) => f.importer === 'edge' && f.import === 'web/http');
    check(edgeWeb === 'refused' && (runtimes.west!.status().dataplane?.ingress.denied ?? 0) === deniedBefore + 1, `edge web client → web/http: ${edgeWeb === 'refused' ? 'refused' : `HTTP ${edgeWeb.status}`} at west's gateway (${edgeFlow?.ingress?.explanation.tier} ${edgeFlow?.ingress?.explanation.policy} ${edgeFlow?.ingress?.explanation.location ?? ''})`);
    const unknown = await echo(EGRESS.east!, 5201, '127.0.30.9', 1024);
    check(unknown === 'refused', `a process east knows nothing about → perf/iperf3: ${unknown} (default deny)`);

    // 6. A policy change cuts a live tunnel
    step('Change: west commits "deny east web" — the open tunnel is cut within one reconcile');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const live = await httpGet(EGRESS.east!, 8080, '127.0.30.3', agent);
    check(live !== 'refused' && live.status === 200, 'east web client holds a keep-alive connection to web/http');
    const v0 = runtimes.west!.status().applied!.version;
    const tPush = Date.now();
    const denyCommit = await repo.commit(new Map([['peers/west/policies/deny-east-web.yaml', DENY_EAST_WEB]]), 'west: deny web to east');
    const applied = await waitUntil(() => (runtimes.west!.status().applied?.version ?? 0) > v0, 10_000);
    const cutMs = Date.now() - tPush;
    check(applied && runtimes.west!.status().applied?.revision === denyCommit, `west applied ${denyCommit.slice(0, 12)} ${cutMs} ms after the push (poll every 250 ms), closing ${runtimes.west!.status().applied?.changes.tunnelsClosed ?? 0} tunnel(s)`);
    const afterCut = await httpGet(EGRESS.east!, 8080, '127.0.30.3', agent);
    agent.destroy();
    check(afterCut === 'refused', `east web client → web/http now: ${afterCut === 'refused' ? 'refused' : `HTTP ${afterCut.status}`}`);

    // 7. A broken commit is refused; everything keeps serving
    step('Safety: a broken commit is refused with file:line, and the last good state keeps serving');
    const brokenFile = 'peers/east/imports/iperf3.yaml';
    const broken = Buffer.from(fresh.files.get(brokenFile)!).toString().replace('exportName: iperf3\n      exportNamespace: perf\n    - peer: edge', 'exportName: iperf3\n      exportNamespace: perf\n    - peer: edgee');
    const badCommit = await repo.commit(new Map([[brokenFile, broken]]), 'east: typo in an import');
    const refused = await waitUntil(() => PEERS.every((p) => runtimes[p]!.status().source.lastAttemptedRevision === badCommit), 10_000);
    const err = runtimes.east!.status().source.lastError;
    check(refused && err?.stage === 'validate' && err.file === brokenFile, `every peer refused ${badCommit.slice(0, 12)}: ${err ? `${err.file}:${err.line}: ${err.message}` : 'no error recorded'}`);
    // A peer that polled past the deny commit straight to the broken one still serves its own last good revision.
    check(runtimes.west!.status().applied?.revision === denyCommit && PEERS.every((p) => runtimes[p]!.status().applied?.revision !== badCommit), `no peer applied ${badCommit.slice(0, 12)}; west still serves ${denyCommit.slice(0, 12)}`);
    const still = await echo(EGRESS.east!, 5201, '127.0.30.1', 64 * 1024);
    check(still === 'ok', `east perf client → perf/iperf3 still flows: ${still}`);

    // 8. Revert restores
    step('Revert: a new commit fixes the typo and removes the deny — the path is restored');
    const v1 = runtimes.west!.status().applied!.version;
    const fixCommit = await repo.commit(new Map<string, string | Uint8Array | null>([[brokenFile, fresh.files.get(brokenFile)!], ['peers/west/policies/deny-east-web.yaml', null]]), 'revert: fix the typo, allow east web again');
    const restored = await waitUntil(() => PEERS.every((p) => runtimes[p]!.status().applied?.revision === fixCommit) && (runtimes.west!.status().applied?.version ?? 0) > v1, 10_000);
    check(restored, `every peer applied ${fixCommit.slice(0, 12)}; no errors left: ${PEERS.every((p) => runtimes[p]!.status().source.lastError === null)}`);
    const back = await httpGet(EGRESS.east!, 8080, '127.0.30.3');
    check(back !== 'refused' && back.status === 200, `east web client → web/http: ${back === 'refused' ? 'refused' : `HTTP ${back.status}`}`);

    // 9. Summary
    step('Summary');
    const ok = steps.every((s) => s.ok);
    check(ok, `${steps.filter((s) => s.ok).length}/${steps.length} steps behaved as expected in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (!opts.once) {
      out();
      out(`${c.bold('Status page:')} ${admin.url}/  ${c.dim('(fabric graph, revisions, errors, live counters)')}`);
      out(`Try: ${c.bold(`git -C ${repo.workDir} log --oneline`)} — edit, commit and push there; the peers follow within a second.`);
      out(c.dim('Ctrl-C to stop.'));
      await opts.untilStopped?.();
    }
    return { ok: steps.every((s) => s.ok), steps };
  } catch (err) {
    out(`${c.red('✗ demo aborted:')} ${(err as Error).message}`);
    if (current) (current as DemoStepResult).ok = false;
    return { ok: false, steps };
  } finally {
    await admin?.close();
    await Promise.all(Object.values(runtimes).map((r) => r.close()));
    await services?.close();
    await server?.stop();
    await rm(root, { recursive: true, force: true });
  }
}

/** The status document for several local runtimes (the demo shows all three peers on one page). */
export function demoStatus(runtimes: Record<string, PeerRuntime>): unknown {
  const any = Object.values(runtimes).find((r) => r.fabric() !== null);
  const fabric = any?.fabric() ?? null;
  const profiles = (peer: string): ClientProfile[] =>
    (DEMO_CLIENTS[peer] ?? []).map((cl) => {
      const attributes: ClientAttributes = { namespace: cl.namespace, labels: { ...(cl.labels ?? {}) } };
      return { name: profileName(attributes), attributes };
    });
  return {
    fabric: fabric ? { name: fabric.name, peers: fabric.peers.map((p) => ({ name: p.name, labels: fabric.peerLabels[p.name] ?? {}, exports: p.exports.map((e) => ({ name: e.name, namespace: e.namespace })) })) } : null,
    peers: Object.values(runtimes).map((r) => r.status()),
    flows: fabric ? computeFlows(fabric, (peer) => profiles(peer)) : [],
  };
}
