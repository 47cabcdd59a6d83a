// `npm start`'s demo, as a user runs it: `clgo demo --once` in a real process must exit 0 with
// every step checked; and the status page it serves renders the fabric in headless Chromium.
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { runDemo } from '../../reconciler/demo/demo.ts';

const exec = promisify(execFile);
const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));

describe('clgo demo', () => {
  it('--once runs every step in a fresh process, exits 0, in well under 60 s', async () => {
    const t0 = Date.now();
    const child = spawn(process.execPath, ['bin/clgo.mjs', 'demo', '--once', '--status-port', '0'], { cwd: join(import.meta.dirname, '../..'), env: { ...process.env, NO_COLOR: '1' } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(out).toContain('9/9 steps behaved as expected');
    expect(code).toBe(0);
    expect(out).not.toMatch(/✗/);
    expect(out).not.toMatch(/PRIVATE KEY/);
    expect(out).toMatch(/refused at west's gateway \(privileged deny-edge-web peers\/west\/policies\/deny-edge-web\.yaml:\d+\)/);
    expect(out).toMatch(/peers\/east\/imports\/iperf3\.yaml:\d+: .*edgee/);
    expect(Date.now() - t0).toBeLessThan(60_000);
  }, 90_000);

  it.skipIf(!CHROMIUM)('serves a status page that draws the fabric, its flows and live counters (headless Chromium)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'clgo-page-'));
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));
    let release: () => void = () => undefined;
    const stopped = new Promise<void>((r) => (release = r));
    const demo = runDemo({ once: false, out, color: false, statusPort: 0, untilStopped: () => stopped });
    try {
      const until = Date.now() + 30_000;
      while (!text.includes('Ctrl-C to stop') && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      const url = /Status page: (http:\/\/127\.0\.0\.1:\d+)\//.exec(text)?.[1];
      expect(url).toBeDefined();
      const shot = join(dir, 'status.png');
      const args = ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--window-size=1280,1000', '--virtual-time-budget=3000'];
      const { stdout: dom } = await exec(CHROMIUM!, [...args, '--dump-dom', `${url}/`], { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
      await exec(CHROMIUM!, [...args, `--screenshot=${shot}`, `${url}/`], { timeout: 60_000 });
      // The graph: one node per peer, allowed and denied flow edges.
      for (const peer of ['east', 'west', 'edge']) expect(dom).toContain(`data-peer="${peer}"`);
      expect(dom).toMatch(/class="flow allowed"/);
      expect(dom).toMatch(/class="flow denied"/);
      // The flow table names the deciding policy with its file:line.
      expect(dom).toContain('denied at ingress');
      expect(dom).toMatch(/deny-edge-web \(peers\/west\/policies\/deny-edge-web\.yaml:\d+\)/);
      expect(dom).toMatch(/revision [0-9a-f]{12}/);
      // Live counters from the demo's traffic.
      expect(dom).toMatch(/<td>perf\/iperf3<\/td>|perf\/iperf3/);
      // A real rendering: a PNG of the requested size with content (not a blank page).
      const png = await readFile(shot);
      expect(png.subarray(1, 4).toString()).toBe('PNG');
      expect(png.readUInt32BE(16)).toBe(1280);
      expect((await stat(shot)).size).toBeGreaterThan(20_000);
    } finally {
      release();
      expect((await demo).ok).toBe(true);
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
