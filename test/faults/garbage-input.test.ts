// Fault: hostile bytes at the network-facing endpoints, while real traffic runs. The gateway gets
// random bytes instead of TLS, silent connections, a 1 MiB blob, and — from a member with a valid
// certificate — random and oversized CONNECT heads. The webhook gets random request bytes,
// unsigned random bodies, declared and streamed oversized bodies, oversized headers and a body
// that never comes. What must hold: every hostile connection is closed (gateway) or answered
// (webhook) within a bound, nothing crashes, the webhook never schedules a fetch, counters record the refusals, and
// the tunnel carrying traffic meanwhile (and new ones) stay byte-exact.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAdminServer, type AdminServer } from '../../reconciler/runtime/admin-server.ts';
import { createWebhookHandler } from '../../reconciler/source/webhook.ts';
import { blockRange, echoMany, faultTable, liveStream, startFabric, type FabricHarness } from './harness.ts';

// This file's loopback range: 127.0.109.x (attackers connect from .90-.99, the admin server on .100).
const R = blockRange(109);
const HANDSHAKE_MS = 1000;
const BODY_MS = 1000;
const WEBHOOK_LIMIT = 64 * 1024;
const table = faultTable(import.meta.filename);
let fabric: FabricHarness;
let admin: AdminServer;
let pushes = 0;
const gateway = { host: R.gateway(2), port: 4443 };
const web = { host: R.egress.east, port: 8080, localAddress: R.client.web };
const perf = { host: R.egress.east, port: 5201, localAddress: R.client.perf };

interface Outcome {
  /** ms until the server closed the connection, or answered with a complete head when `untilAnswer` (null: neither by the bound). */
  closedMs: number | null;
  reply: string;
}

/** Connects, sends `payload` (chunks, optionally paced), and waits (bounded) for the server to close. */
function raw(o: { host: string; port: number; payload: Buffer | Buffer[]; boundMs: number; localAddress?: string; untilAnswer?: boolean }): Promise<Outcome> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const sock = net.connect({ host: o.host, port: o.port, localAddress: o.localAddress ?? '127.0.109.90' });
    let reply = Buffer.alloc(0);
    let done = false;
    const finish = (closedMs: number | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ closedMs, reply: reply.subarray(0, 256).toString('latin1') });
    };
    const timer = setTimeout(() => finish(null), o.boundMs);
    sock.on('data', (d: Buffer) => {
      if (reply.length < 4096) reply = Buffer.concat([reply, d]);
      if (o.untilAnswer && reply.includes('\r\n\r\n')) finish(performance.now() - t0);
    });
    sock.on('error', () => finish(performance.now() - t0));
    sock.on('close', () => finish(performance.now() - t0));
    sock.on('connect', () => {
      for (const p of Array.isArray(o.payload) ? o.payload : [o.payload]) sock.write(p);
    });
  });
}

/** A member (east, valid pinned certificate) opens mutual TLS to west's gateway and sends `head` instead of a CONNECT request. */
function asMember(head: Buffer, boundMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const east = fabric.fresh.peers.east!;
    const ca = fabric.fresh.ca.certificatePem;
    const tcp = net.connect({ ...gateway, localAddress: '127.0.109.91' });
    const sock = tls.connect({ socket: tcp, cert: east.certificatePem, key: east.privateKeyPem, ca, servername: 'west', minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
    let reply = '';
    let done = false;
    const finish = (closedMs: number | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ closedMs, reply: reply.slice(0, 256) });
    };
    const timer = setTimeout(() => finish(null), boundMs);
    sock.on('data', (d: Buffer) => void (reply += d.toString('latin1')));
    sock.on('error', () => finish(performance.now() - t0));
    sock.on('close', () => finish(performance.now() - t0));
    sock.on('secureConnect', () => sock.write(head));
  });
}

beforeAll(async () => {
  fabric = await startFabric({ range: R, limits: { west: { handshakeTimeoutMs: HANDSHAKE_MS } } });
  const rt = fabric.runtimes.west;
  admin = await startAdminServer({ host: '127.0.109.100', port: 0, status: () => rt.status(), ready: () => rt.status().ready });
  admin.mount('/webhook', createWebhookHandler({ secret: 'fault-suite-webhook-secret', onPush: () => void pushes++, maxBodyBytes: WEBHOOK_LIMIT, bodyTimeoutMs: BODY_MS }));
});

afterAll(async () => {
  await admin?.close();
  await fabric?.close();
  await table.flush();
});

describe('fault: random bytes and oversized requests', () => {
  it('against the gateway: every hostile connection closed within a bound, traffic unaffected', async () => {
    const stream = await liveStream(web);
    const west = (): NonNullable<ReturnType<typeof fabric.runtimes.west.status>['dataplane']> => fabric.runtimes.west.status().dataplane!;
    const handshakeBefore = Object.values(west().handshakeFailures).reduce((a, b) => a + b, 0);
    const badBefore = west().ingress.badRequests;
    const t0 = performance.now();
    const attacks: Array<Promise<Outcome & { kind: string }>> = [];
    const tag = (kind: string, p: Promise<Outcome>): Promise<Outcome & { kind: string }> => p.then((o) => ({ ...o, kind }));
    for (let i = 0; i < 40; i++) attacks.push(tag('random bytes', raw({ ...gateway, payload: randomBytes(1 + Math.floor(Math.random() * 8192)), boundMs: HANDSHAKE_MS + 2000 })));
    for (let i = 0; i < 10; i++) attacks.push(tag('TLS record header + random', raw({ ...gateway, payload: Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00]), randomBytes(2048)]), boundMs: HANDSHAKE_MS + 2000 })));
    for (let i = 0; i < 8; i++) attacks.push(tag('silent', raw({ ...gateway, payload: [], boundMs: HANDSHAKE_MS + 2000 })));
    attacks.push(tag('1 MiB blob', raw({ ...gateway, payload: randomBytes(1024 * 1024), boundMs: HANDSHAKE_MS + 2000 })));
    const member: Array<Promise<Outcome & { kind: string }>> = [
      tag('member: random head', asMember(Buffer.concat([randomBytes(512), Buffer.from('\r\n\r\n')]), 3000)),
      tag('member: 16 KiB head', asMember(Buffer.from(`CONNECT http.web:443 HTTP/1.1\r\nX: ${'a'.repeat(16 * 1024)}`), 3000)),
      tag('member: 100 headers', asMember(Buffer.from(`CONNECT http.web:443 HTTP/1.1\r\n${Array.from({ length: 100 }, (_, i) => `x-${i}: y\r\n`).join('')}\r\n`), 3000)),
      tag('member: GET', asMember(Buffer.from('GET / HTTP/1.1\r\nHost: west\r\n\r\n'), 3000)),
      tag('member: bad authority', asMember(Buffer.from(`CONNECT ${'x'.repeat(300)}:99999 HTTP/1.1\r\n\r\n`), 3000)),
    ];
    // Legitimate traffic at the same time.
    const [outcomes, memberOutcomes, during] = await Promise.all([Promise.all(attacks), Promise.all(member), echoMany(5, web)]);
    const attackMs = performance.now() - t0;
    expect(during.ok).toBe(5);
    const open = [...outcomes, ...memberOutcomes].filter((o) => o.closedMs === null).map((o) => o.kind);
    expect(open).toEqual([]);
    const worst = Math.max(...outcomes.map((o) => o.closedMs!));
    expect(worst).toBeLessThanOrEqual(HANDSHAKE_MS + 1000);
    // The member's garbage gets an HTTP error, never a tunnel.
    for (const o of memberOutcomes) expect(o.reply).toMatch(/^HTTP\/1\.1 4\d\d /);
    expect(memberOutcomes.map((o) => o.reply.slice(9, 12))).toEqual(['400', '431', '431', '400', '400']);
    expect(west().ingress.badRequests - badBefore).toBe(member.length);
    const handshakeFailures = Object.values(west().handshakeFailures).reduce((a, b) => a + b, 0) - handshakeBefore;
    const reasons = Object.keys(west().handshakeFailures).sort().join(', ');
    expect(handshakeFailures).toBeGreaterThanOrEqual(outcomes.length - 8); // silent ones may be cut by the time-out without an error event
    expect(await stream.drained()).toBe(true);
    expect((await echoMany(3, perf)).ok).toBe(3);
    table.add({
      case: 'random bytes, silence, 1 MiB blob and bad CONNECT heads at the gateway',
      held: `${outcomes.length} pre-TLS attackers closed (worst ${Math.round(worst)} ms, handshake time-out ${HANDSHAKE_MS} ms), ${handshakeFailures} counted as handshake failures (${reasons}); 5 member garbage heads answered 400/431 and counted; 5+3 tunnels and an open stream (${stream.stats().verified} B) byte-exact meanwhile`,
      recoveryMs: null,
      recoveryNote: `nothing to recover (attack phase ${Math.round(attackMs)} ms)`,
    });
    stream.stop();
  }, 30_000);

  it('against the webhook: bounded answers, no fetch scheduled, admin and traffic unaffected', async () => {
    const stream = await liveStream(web);
    const url = new URL(admin.url);
    const host = url.hostname;
    const port = Number(url.port);
    const req = (head: string, body: Buffer | Buffer[] = []): Buffer[] => [Buffer.from(head), ...(Array.isArray(body) ? body : [body])];
    const cases: Array<[string, Promise<Outcome>, RegExp]> = [
      ['random request bytes', raw({ host, port, payload: randomBytes(4096), boundMs: 3000, untilAnswer: true }), /^HTTP\/1\.1 400 |^$/],
      ['unsigned random body', raw({ host, port, payload: req(`POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\nConnection: close\r\n\r\n`, randomBytes(2048)), boundMs: 3000, untilAnswer: true }), /^HTTP\/1\.1 401 /],
      ['forged GitHub signature', raw({ host, port, payload: req(`POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=${'0'.repeat(64)}\r\nContent-Length: 20\r\nConnection: close\r\n\r\n`, Buffer.from('{"ref":"refs/heads/m"}'.slice(0, 20))), boundMs: 3000, untilAnswer: true }), /^HTTP\/1\.1 401 /],
      ['declared 10 MB body', raw({ host, port, payload: req(`POST /webhook HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token: nope\r\nContent-Length: 10000000\r\n\r\n`, randomBytes(1024)), boundMs: 3000, untilAnswer: true }), /^HTTP\/1\.1 413 /],
      ['streamed 1 MiB chunked body', raw({ host, port, payload: req(`POST /webhook HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token: nope\r\nTransfer-Encoding: chunked\r\n\r\n`, Array.from({ length: 16 }, () => Buffer.concat([Buffer.from('10000\r\n'), randomBytes(0x10000), Buffer.from('\r\n')]))), boundMs: 3000, untilAnswer: true }), /^HTTP\/1\.1 413 |^$/],
      ['32 KiB of headers', raw({ host, port, payload: req(`POST /webhook HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(32 * 1024)}\r\n\r\n`), boundMs: 3000, untilAnswer: true }), /^HTTP\/1\.1 431 /],
      ['body that never comes', raw({ host, port, payload: req(`POST /webhook HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token: nope\r\nContent-Length: 100\r\nConnection: close\r\n\r\n`), boundMs: BODY_MS + 2000, untilAnswer: true }), /^HTTP\/1\.1 408 /],
    ];
    const [outcomes, during] = await Promise.all([Promise.all(cases.map(([, p]) => p)), echoMany(3, web)]);
    expect(during.ok).toBe(3);
    const report: string[] = [];
    cases.forEach(([name, , want], i) => {
      const o = outcomes[i]!;
      expect(o.closedMs, `${name}: neither answered nor closed by its bound`).not.toBeNull();
      expect(o.reply, name).toMatch(want);
      report.push(`${name}: ${o.reply.slice(9, 12) || 'closed'} in ${Math.round(o.closedMs!)} ms`);
    });
    expect(pushes).toBe(0);
    expect((await fetch(`${admin.url}/healthz`)).status).toBe(200);
    expect(await stream.drained()).toBe(true);
    table.add({
      case: 'random bytes and oversized requests at the webhook',
      held: `${report.join('; ')}; no fetch scheduled; /healthz 200; tunnels and an open stream byte-exact meanwhile`,
      recoveryMs: null,
      recoveryNote: 'nothing to recover',
    });
    stream.stop();
  }, 30_000);
});
