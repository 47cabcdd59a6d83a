// `npm run bench -- cli`: what a user waits for. Wall time of `clgo --version` and `clgo validate
// fabric-example` against `node -e 0` (Node's own start-up on this machine, measured in the same
// rounds so that load affects both alike), and `clgo run --local` for one peer: time from spawn
// to /readyz answering 200 (a revision applied, the data plane listening), then its RSS after
// idling. Runs bin/clgo.mjs as `npx clgo` does, after `npm run build` (dist/, not tsx).
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { freshExampleFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { percentile, row, type Benchmark, type BenchResult } from './harness.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const CLGO = join(ROOT, 'bin', 'clgo.mjs');
const ROUNDS = 15;
const RUNS = 5;
const IDLE_MS = 3000;
// This bench's loopback range (gateways 127.0.200.x, services 127.0.201.x, imports 127.0.202.x).
const rewrite = (t: string): string => t.replaceAll('127.0.10.', '127.0.200.').replaceAll('127.0.20.', '127.0.201.');

function wallMs(args: string[]): number {
  const start = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}: ${r.stderr.toString()}`);
  return ms;
}

/** CPU time (user + system) a process has used so far, from /proc (clock ticks of CLK_TCK). */
async function cpuMs(pid: number, ticksPerSecond: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).replace(/^.*\) /s, '').split(' ');
  // After "pid (comm) ", utime and stime are the 12th and 13th fields.
  return ((Number(fields[11]) + Number(fields[12])) / ticksPerSecond) * 1000;
}

async function runLocalOnce(dir: string, ticksPerSecond: number): Promise<{ readyMs: number; readyCpuMs: number; rssMb: number }> {
  const start = process.hrtime.bigint();
  const child = spawn(process.execPath, [CLGO, 'run', '--local', '--peer', 'west', '--fabric', join(dir, 'fabric'), '--key', join(dir, 'west.key'), '--egress-address', '127.0.202.2', '--admin', '127.0.0.1:0', '--log-level', 'warn'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    let readyMs = Number.NaN;
    let readyCpuMs = Number.NaN;
    const until = Date.now() + 30_000;
    while (Date.now() < until && child.exitCode === null) {
      const url = /status (http:\/\/127\.0\.0\.1:\d+)\//.exec(stderr)?.[1];
      if (url && (await fetch(`${url}/readyz`).then((r) => r.status, () => 0)) === 200) {
        readyMs = Number(process.hrtime.bigint() - start) / 1e6;
        readyCpuMs = await cpuMs(child.pid!, ticksPerSecond);
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    if (Number.isNaN(readyMs)) throw new Error(`clgo run --local not ready: ${stderr}`);
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
    const rssKb = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]);
    return { readyMs, readyCpuMs, rssMb: rssKb / 1024 };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(null)));
  }
}

export const benchmarks: Benchmark[] = [
  {
    name: 'cli',
    description: `clgo start-up: --version and validate vs node -e 0 (median of ${ROUNDS} interleaved rounds), run --local ready time and idle RSS (median of ${RUNS})`,
    async run(): Promise<BenchResult[]> {
      const built = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build.mjs')], { cwd: ROOT, stdio: 'inherit' });
      if (built.status !== 0) throw new Error('npm run build failed');
      const samples = { node: [] as number[], version: [] as number[], validate: [] as number[] };
      wallMs([CLGO, 'validate', 'fabric-example']); // warm the file cache
      for (let i = 0; i < ROUNDS; i++) {
        samples.node.push(wallMs(['-e', '0']));
        samples.version.push(wallMs([CLGO, '--version']));
        samples.validate.push(wallMs([CLGO, 'validate', 'fabric-example']));
      }
      const node = percentile(samples.node, 50);
      const version = percentile(samples.version, 50);
      const validate = percentile(samples.validate, 50);

      const dir = await mkdtemp(join(tmpdir(), 'clgo-bench-cli-'));
      const runs: Array<{ readyMs: number; readyCpuMs: number; rssMb: number }> = [];
      const ticksPerSecond = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim()) || 100;
      try {
        const fresh = await freshExampleFabric({ rewrite });
        for (const [path, bytes] of fresh.files) {
          await mkdir(dirname(join(dir, 'fabric', path)), { recursive: true });
          await writeFile(join(dir, 'fabric', path), bytes);
        }
        await writeFile(join(dir, 'west.key'), fresh.peers.west!.privateKeyPem, { mode: 0o600 });
        for (let i = 0; i < RUNS; i++) runs.push(await runLocalOnce(dir, ticksPerSecond));
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
      const ready = percentile(runs.map((r) => r.readyMs), 50);
      const readyCpu = percentile(runs.map((r) => r.readyCpuMs), 50);
      const rss = percentile(runs.map((r) => r.rssMb), 50);
      return [
        row('cli.node-e-0.time', node, 'ms', '', null, 'reference: node -e 0'),
        row('cli.version.time', version, 'ms', '', null),
        row('cli.version.vs-node', version / node, 'x node', '<= 2 x node', version / node <= 2),
        row('cli.validate.time', validate, 'ms', '', null, 'clgo validate fabric-example'),
        row('cli.validate.vs-node', validate / node, 'x node', '<= 5 x node', validate / node <= 5),
        row('cli.run-local.ready', ready, 'ms', '<= 1000 ms', ready <= 1000, 'spawn to /readyz 200, one peer'),
        row('cli.run-local.ready-cpu', readyCpu, 'ms', '', null, 'CPU time (user + system) the process used until ready: what the ready time is made of on an idle machine'),
        row('cli.run-local.idle-rss', rss, 'MB', '<= 100 MB', rss <= 100, `after ${IDLE_MS / 1000} s idle`),
      ];
    },
  },
];
