// The admin endpoint (reconciler and `clgo dataplane` health server) held by idle connections:
// 256 TCP connections that send nothing and 64 that trickle an unfinished request head stay open,
// and the probes /healthz, /readyz, /metrics and a signed /webhook push must keep answering at once
// (in a cluster, unanswered probes mean failed liveness checks and restarts).
import { createHmac } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAdminServer, type AdminServer } from '../../reconciler/runtime/admin-server.ts';
import { createWebhookHandler } from '../../reconciler/source/webhook.ts';
import { faultTable } from './harness.ts';

// This file's loopback addresses: 127.0.187.x (admin server .1, idle clients .10, probes .20).
const SECRET = 'a-webhook-secret-of-enough-length';
const table = faultTable(import.meta.filename);
let admin: AdminServer;
let pushes = 0;
const held: net.Socket[] = [];

beforeAll(async () => {
  admin = await startAdminServer({ host: '127.0.187.1', status: () => ({ ok: true }), ready: () => true, metrics: { render: () => Promise.resolve('clgo_up 1\n') } });
  admin.mount('/webhook', createWebhookHandler({ secret: SECRET, onPush: () => void pushes++ }));
});

afterAll(async () => {
  for (const s of held) s.destroy();
  await admin?.close();
  await table.flush();
});

/** One probe on a fresh connection from the probes' address, bounded by `timeoutMs`; the status or the failure. */
function probe(path: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}, timeoutMs = 4000): Promise<{ status: number | string; ms: number }> {
  const t0 = performance.now();
  const { hostname: host, port } = new URL(admin.url);
  return new Promise((resolve) => {
    const sock = net.connect({ host, port: Number(port), localAddress: '127.0.187.20' });
    let reply = '';
    const done = (status: number | string): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ status, ms: performance.now() - t0 });
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    sock.on('connect', () => {
      const body = init.body ?? '';
      const headers = { host: 'admin', connection: 'close', 'content-length': String(Buffer.byteLength(body)), ...init.headers };
      sock.write(`${init.method ?? 'GET'} ${path} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`);
    });
    sock.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(reply);
      if (m) done(Number(m[1]));
    });
    sock.on('error', (err: NodeJS.ErrnoException) => done(err.code ?? 'error'));
    sock.on('close', () => done('closed'));
  });
}

async function hold(n: number, trickle: boolean): Promise<void> {
  const { hostname: host, port } = new URL(admin.url);
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<void>((resolve) => {
          const sock = net.connect({ host, port: Number(port), localAddress: '127.0.187.10' });
          sock.on('error', () => undefined);
          sock.on('connect', () => {
            if (trickle) sock.write('GET /healthz HTTP/1.1\r\nx-slow: ');
            resolve();
          });
          sock.on('close', () => resolve());
          held.push(sock);
        }),
    ),
  );
}

describe('fault: admin endpoint held by idle connections', () => {
  it('answers /healthz, /readyz, /metrics and /webhook with 256 idle and 64 half-sent connections held open', async () => {
    await hold(256, false);
    await hold(64, true);
    const body = JSON.stringify({ ref: 'refs/heads/main', after: 'a'.repeat(40) });
    const signature = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
    const results: Array<{ path: string; status: number | string; ms: number }> = [];
    // Three rounds, while the held connections stay open (each round opens new probe connections).
    for (let round = 0; round < 3; round++) {
      for (const path of ['/healthz', '/readyz', '/metrics']) results.push({ path, ...(await probe(path)) });
      results.push({ path: '/webhook', ...(await probe('/webhook', { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-hub-signature-256': signature } })) });
      await hold(32, round % 2 === 1);
    }
    expect(results.map((r) => `${r.path} ${r.status}`)).toEqual(results.map((r) => `${r.path} ${r.path === '/webhook' ? 202 : 200}`));
    expect(pushes).toBe(3);
    const worst = Math.max(...results.map((r) => r.ms));
    // Generous for a loaded machine; before the bound, probes got no answer for ~30 s.
    expect(worst).toBeLessThan(2000);
    table.add({ case: 'admin endpoint: 256 idle + 64 half-sent connections held (then 96 more)', held: `${results.length}/${results.length} probes (/healthz, /readyz, /metrics, signed /webhook) answered; oldest idle connections shed past 64`, recoveryMs: worst, recoveryNote: 'slowest probe' });
  });
});
