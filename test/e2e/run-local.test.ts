// `clgo run --local` as an operator starts it (a real process following a fabric directory), and
// `clgo status` reading it: revision, exports, counters; SIGTERM stops it cleanly.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../reconciler/cli.ts';
import { freshExampleFabric } from '../../reconciler/demo/fresh-fabric.ts';

// This file's loopback range: gateways 127.0.71.x, services 127.0.72.x.
const rewrite = (t: string): string => t.replaceAll('127.0.10.', '127.0.71.').replaceAll('127.0.20.', '127.0.72.');
let dir: string;
let child: ChildProcess;
let stderr = '';
let adminUrl = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clgo-run-'));
  const fresh = await freshExampleFabric({ rewrite });
  for (const [path, bytes] of fresh.files) {
    await mkdir(dirname(join(dir, 'fabric', path)), { recursive: true });
    await writeFile(join(dir, 'fabric', path), bytes);
  }
  await writeFile(join(dir, 'west.key'), fresh.peers.west!.privateKeyPem, { mode: 0o600 });
  await chmod(join(dir, 'west.key'), 0o600);
  child = spawn(process.execPath, ['bin/clgo.mjs', 'run', '--local', '--peer', 'west', '--fabric', join(dir, 'fabric'), '--key', join(dir, 'west.key'), '--egress-address', '127.0.73.2', '--admin', '127.0.0.1:0', '--log-level', 'info'], { cwd: join(import.meta.dirname, '../..') });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout!.on('data', (d: Buffer) => (stderr += d.toString()));
  const until = Date.now() + 20_000;
  while (!/status (http:\/\/127\.0\.0\.1:\d+)\//.test(stderr) && Date.now() < until && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  adminUrl = /status (http:\/\/127\.0\.0\.1:\d+)\//.exec(stderr)?.[1] ?? '';
});

afterAll(async () => {
  if (child.exitCode === null) child.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

describe('clgo run --local and clgo status', () => {
  it('starts, applies the fabric, and reports through clgo status', async () => {
    expect(adminUrl, stderr).not.toBe('');
    expect((await fetch(`${adminUrl}/readyz`)).status).toBe(200);
    expect((await fetch(`${adminUrl}/healthz`)).status).toBe(200);
    const metrics = await fetch(`${adminUrl}/metrics`);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await metrics.text()).toMatch(/^clgo_fabric_last_good 1$/m);
    let out = '';
    const stdout = new Writable({ write: (c, _e, cb) => ((out += c.toString()), cb()) });
    const code = await main(['node', 'clgo', 'status', '--admin', adminUrl], { stdout, stderr: stdout });
    expect(code).toBe(0);
    expect(out).toMatch(/peer west: ready/);
    expect(out).toMatch(/applied {5}[0-9a-f]{12} \(config v1/);
    expect(out).toMatch(/export perf\/iperf3 → 127\.0\.72\.2:5201 {2}importers: east\n/);
    expect(out).toMatch(/export web\/http → 127\.0\.72\.2:8080 {2}importers: east, edge/);
    expect(out).toMatch(/gateway {5}requests 0 \(connections 0\)/);
    // Logs are JSON lines and never carry the key.
    expect(stderr).not.toMatch(/PRIVATE KEY/);
    expect(stderr.split('\n').some((l) => l.startsWith('{') && JSON.parse(l).msg === 'revision applied')).toBe(true);
  });

  it('stops on SIGTERM with exit code 0', async () => {
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => (child.exitCode !== null ? r(child.exitCode) : child.on('exit', (c) => r(c))));
    expect(code).toBe(0);
  });

  it('clgo status names an unreachable reconciler as a usage error', async () => {
    let out = '';
    const stdout = new Writable({ write: (c, _e, cb) => ((out += c.toString()), cb()) });
    expect(await main(['node', 'clgo', 'status', '--admin', adminUrl], { stdout, stderr: stdout })).toBe(2);
    expect(out).toMatch(/cannot reach the reconciler/);
  });
});
