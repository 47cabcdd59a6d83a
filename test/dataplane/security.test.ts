// Security of the Node data plane's gateway, attacked directly on loopback: every hostile or invalid
// connection is refused with a clear log line, and the gateway keeps serving legitimate tunnels
// afterwards (no crash, no leaked slot). West's gateway is the target; east's egress provides the
// legitimate traffic (east's web client → web/http on west).
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDataplane, type Dataplane, type DataplaneLimits } from '../../dataplane/dataplane.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import type { FabricModel } from '../../schema/model.ts';
import { freshExampleFabric, type FreshFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { createCertificateAuthority, fingerprintSha256, issuePeerCertificate } from '../../reconciler/pki/index.ts';
import { slice } from '../../reconciler/slice/slice.ts';
import type { Slice } from '../../reconciler/slice/types.ts';
import { createAuthorizer } from '../../reconciler/xds/authz.ts';
import { dataplaneConfigFromSlice } from '../../reconciler/xds/config.ts';
import { clientLookup } from '../../reconciler/runtime/local-clients.ts';
import { echoThrough, openEchoConnection, startEchoServer, waitFor } from '../fixtures/servers.ts';

// This file's own loopback range: gateways 127.0.81.x, services 127.0.82.x, egress 127.0.83.x, clients 127.0.84.x.
const rewrite = (t: string): string => t.replaceAll('127.0.10.', '127.0.81.').replaceAll('127.0.20.', '127.0.82.');
const GATEWAY = { host: '127.0.81.2', port: 4443 };
const EAST_EGRESS = '127.0.83.1';
const WEB_CLIENT = '127.0.84.3';
const ATTACKER = '127.0.84.9';
const FLOODER = '127.0.84.20';
const CLIENTS = clientLookup({ clients: [{ address: WEB_CLIENT, namespace: 'web', labels: { app: 'browser' } }] });
// Small bounds on the target gateway so the slow cases finish quickly.
const WEST_LIMITS: Partial<DataplaneLimits> = { handshakeTimeoutMs: 1000, headerTimeoutMs: 1000, maxIngressConnections: 40 };
/** Every wait in this file is bounded by this (or less). */
const ATTEMPT_TIMEOUT_MS = 5000;

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** Captures a data plane's pino output as parsed JSON lines. */
class LogCapture {
  readonly lines: LogLine[] = [];
  write(text: string): void {
    for (const line of text.split('\n')) if (line.trim()) this.lines.push(JSON.parse(line) as LogLine);
  }
  mark(): number {
    return this.lines.length;
  }
  /** Waits (bounded) for a line after `from` matching `msg` (and `fields`); returns it or null. */
  async find(from: number, msg: RegExp, fields: Record<string, unknown> = {}, timeoutMs = 3000): Promise<LogLine | null> {
    const match = (l: LogLine): boolean => msg.test(l.msg) && Object.entries(fields).every(([k, v]) => l[k] === v);
    await waitFor(() => this.lines.slice(from).some(match), timeoutMs);
    return this.lines.slice(from).find(match) ?? null;
  }
}

interface Peer {
  name: string;
  slice: Slice;
  dataplane: Dataplane;
  logs: LogCapture;
}

let fresh: FreshFabric;
let fabric: FabricModel;
const peers: Record<string, Peer> = {};
const services: Array<{ close(): Promise<void> }> = [];
let webService: Awaited<ReturnType<typeof startEchoServer>>;

function load(files: Map<string, Uint8Array>): FabricModel {
  const r = loadFabricFiles(files);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.fabric;
}

async function startPeer(name: string, egressAddress: string, limits?: Partial<DataplaneLimits>): Promise<Peer> {
  const logs = new LogCapture();
  const peer = { name, slice: slice(fabric, name), logs } as Peer;
  const authorizer = createAuthorizer({ slice: () => peer.slice, clientAttributes: CLIENTS });
  peer.dataplane = await startDataplane({
    config: dataplaneConfigFromSlice(peer.slice, fresh.peers[name]!, { egressAddress }, '1'),
    authorizer,
    logger: pino({ level: 'debug' }, logs),
    limits,
  });
  return peer;
}

/** Applies a fabric to west only (the gateway under test) and revalidates its open tunnels. */
async function applyToWest(next: FabricModel, version: string): Promise<number> {
  const west = peers.west!;
  west.slice = slice(next, 'west');
  await west.dataplane.update(dataplaneConfigFromSlice(west.slice, fresh.peers.west!, { egressAddress: '127.0.83.2' }, version));
  return west.dataplane.revalidate();
}

/** fabric.yaml with spec.revoked set. */
function withRevoked(revoked: { serials?: string[]; fingerprints?: string[] }): FabricModel {
  const files = new Map(fresh.files);
  const doc = parse(Buffer.from(files.get('fabric.yaml')!).toString('utf8')) as { spec: Record<string, unknown> };
  doc.spec.revoked = revoked;
  files.set('fabric.yaml', Buffer.from(stringify(doc, { lineWidth: 0 })));
  return load(files);
}

interface Attempt {
  /** The TLS handshake completed on the client side. */
  secure: boolean;
  /** HTTP status of the gateway's reply, if any. */
  status: number | null;
  reply: string;
  /** The gateway closed the connection (as opposed to our bounded wait running out). */
  closed: boolean;
  error: string | null;
  ms: number;
}

interface AttemptOptions {
  identity?: { certificatePem: string; privateKeyPem: string } | null;
  /** Sent right after the handshake (a string or bytes); trickled one byte per `trickleMs` when set. */
  head?: string | Buffer;
  trickleMs?: number;
  tls?: Partial<tls.ConnectionOptions>;
  localAddress?: string;
  timeoutMs?: number;
  /** Resolve as soon as a complete reply head arrived (for tunnels that stay open). */
  untilReply?: boolean;
  /** Leave the socket open (pushed here) instead of destroying it when resolving. */
  keep?: tls.TLSSocket[];
}

const connectHead = (authority: string, headers: Record<string, string> = {}): string =>
  `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;

/** One mTLS connection straight to west's gateway: handshake, send a head, read what comes back until close. */
function attempt(opts: AttemptOptions): Promise<Attempt> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const identity = opts.identity === undefined ? fresh.peers.east! : opts.identity;
    // localAddress is passed through to net.connect (not in tls.ConnectionOptions' type).
    const options: tls.ConnectionOptions & { localAddress: string } = {
      host: GATEWAY.host,
      port: GATEWAY.port,
      localAddress: opts.localAddress ?? ATTACKER,
      servername: 'west',
      ca: fresh.ca.certificatePem,
      ...(identity ? { cert: identity.certificatePem, key: identity.privateKeyPem } : {}),
      ...opts.tls,
    };
    const socket = tls.connect(options);
    const result: Attempt = { secure: false, status: null, reply: '', closed: false, error: null, ms: 0 };
    let trickle: NodeJS.Timeout | undefined;
    const finish = (closed: boolean): void => {
      clearTimeout(timer);
      clearInterval(trickle);
      result.closed ||= closed;
      result.ms = performance.now() - t0;
      const m = /^HTTP\/1\.1 (\d{3})/.exec(result.reply);
      result.status = m ? Number(m[1]) : null;
      if (opts.keep && !closed) opts.keep.push(socket);
      else socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? ATTEMPT_TIMEOUT_MS);
    socket.on('secureConnect', () => {
      result.secure = true;
      const head = opts.head === undefined ? undefined : Buffer.from(opts.head);
      if (!head) return;
      if (!opts.trickleMs) {
        socket.write(head);
        return;
      }
      let i = 0;
      trickle = setInterval(() => {
        if (i < head.length && !socket.destroyed) socket.write(head.subarray(i, ++i));
      }, opts.trickleMs);
    });
    socket.on('data', (d: Buffer) => {
      if (result.reply.length < 4096) result.reply += d.toString('latin1');
      if (opts.untilReply && result.reply.includes('\r\n\r\n')) finish(false);
    });
    socket.on('error', (err) => {
      result.error = err.message;
    });
    socket.on('close', () => finish(true));
  });
}

/** Legitimate traffic still flows: east's web client through east's egress and west's gateway, bytes echoed unchanged. */
async function expectStillServing(): Promise<void> {
  expect(await echoThrough({ host: EAST_EGRESS, port: 8080, localAddress: WEB_CLIENT, bytes: 64 * 1024, timeoutMs: ATTEMPT_TIMEOUT_MS })).toBe('ok');
  // A direct, well-formed CONNECT with east's certificate is accepted too.
  const ok = await attempt({ head: connectHead('http.web:443', { 'x-clusterlink-client-namespace': 'web', 'x-clusterlink-client-labels': 'app=browser' }), untilReply: true });
  expect(ok.status).toBe(200);
}

beforeAll(async () => {
  fresh = await freshExampleFabric({ rewrite });
  fabric = load(fresh.files);
  webService = await startEchoServer('127.0.82.2', 8080);
  services.push(webService, await startEchoServer('127.0.82.2', 5201));
  peers.west = await startPeer('west', '127.0.83.2', WEST_LIMITS);
  // No preconnected spares from east: the connection-limit cases count west's slots exactly.
  peers.east = await startPeer('east', EAST_EGRESS, { preconnectSpares: 0 });
  await expectStillServing();
});

afterAll(async () => {
  await Promise.all(Object.values(peers).map((p) => p.dataplane.close()));
  await Promise.all(services.map((s) => s.close()));
});

describe('gateway security: refused with a clear log line, and the gateway keeps serving', () => {
  it('refuses a client certificate from another CA at the TLS handshake', async () => {
    const logs = peers.west!.logs;
    const from = logs.mark();
    const otherCa = await createCertificateAuthority({ fabricName: fresh.fabricName });
    const forged = await issuePeerCertificate({ peerName: 'east', fabricName: fresh.fabricName, ca: otherCa });
    const r = await attempt({ identity: forged, head: connectHead('http.web:443') });
    expect(r.status).toBeNull();
    expect(r.closed).toBe(true);
    const line = await logs.find(from, /^TLS handshake refused: client certificate refused \(/, { direction: 'ingress' });
    expect(line?.msg).toMatch(/issuer is not a CA in the fabric bundle/);
    await expectStillServing();
  });

  it('refuses an expired certificate (signed by the fabric CA) at the TLS handshake', async () => {
    const logs = peers.west!.logs;
    const from = logs.mark();
    const expired = await issuePeerCertificate({ peerName: 'east', fabricName: fresh.fabricName, ca: fresh.ca, notBefore: new Date(Date.now() - 10 * 86_400_000), lifetimeDays: 1 });
    const r = await attempt({ identity: expired, head: connectHead('http.web:443') });
    expect(r.status).toBeNull();
    expect(r.closed).toBe(true);
    const line = await logs.find(from, /^TLS handshake refused: client certificate refused \(/);
    expect(line?.msg).toBe('TLS handshake refused: client certificate refused (CERT_HAS_EXPIRED): certificate has expired');
    expect(peers.west!.dataplane.stats().handshakeFailures.CERT_HAS_EXPIRED).toBeGreaterThanOrEqual(1);
    await expectStillServing();
  });

  it('refuses a not-yet-valid certificate at the TLS handshake', async () => {
    const logs = peers.west!.logs;
    const from = logs.mark();
    const future = await issuePeerCertificate({ peerName: 'east', fabricName: fresh.fabricName, ca: fresh.ca, notBefore: new Date(Date.now() + 86_400_000), lifetimeDays: 30 });
    const r = await attempt({ identity: future, head: connectHead('http.web:443') });
    expect(r.status).toBeNull();
    expect(r.closed).toBe(true);
    const line = await logs.find(from, /^TLS handshake refused: client certificate refused \(/);
    expect(line?.msg).toBe('TLS handshake refused: client certificate refused (CERT_NOT_YET_VALID): certificate is not yet valid');
    await expectStillServing();
  });

  it('refuses a certificate whose fingerprint the fabric revoked, and closes its open tunnel', async () => {
    const logs = peers.west!.logs;
    const open = await openEchoConnection({ host: EAST_EGRESS, port: 8080, localAddress: WEB_CLIENT });
    try {
      const from = logs.mark();
      const fp = fingerprintSha256(fresh.peers.east!.certificatePem);
      expect(await applyToWest(withRevoked({ fingerprints: [fp] }), 'revoked-fp')).toBeGreaterThanOrEqual(1);
      await open.closed;
      const r = await attempt({ head: connectHead('http.web:443') });
      expect(r.status).toBeNull();
      expect(r.closed).toBe(true);
      // The revoked member leaves the slice: its certificate is no longer pinned, refused before any parsing.
      expect(await logs.find(from, /^refused: client certificate is not a current member's committed peer\.pem$/)).not.toBeNull();
      expect(peers.west!.dataplane.stats().handshakeFailures['unpinned-certificate']).toBeGreaterThanOrEqual(1);
      expect(await echoThrough({ host: EAST_EGRESS, port: 8080, localAddress: WEB_CLIENT, bytes: 1024, timeoutMs: ATTEMPT_TIMEOUT_MS })).toBe('refused');
    } finally {
      open.socket.destroy();
      await applyToWest(fabric, 'restored-fp');
    }
    await expectStillServing();
  });

  it('refuses a certificate whose serial the fabric revoked, at the pin check like a revoked fingerprint', async () => {
    const logs = peers.west!.logs;
    const from = logs.mark();
    const serial = new X509Certificate(fresh.peers.east!.certificatePem).serialNumber;
    try {
      await applyToWest(withRevoked({ serials: [serial] }), 'revoked-serial');
      const r = await attempt({ head: connectHead('http.web:443', { 'x-clusterlink-client-namespace': 'web', 'x-clusterlink-client-labels': 'app=browser' }) });
      // The member leaves the slice (revoked by serial), so its certificate is no longer pinned.
      expect(r.status).toBeNull();
      expect(r.closed).toBe(true);
      expect(await logs.find(from, /^refused: client certificate is not a current member's committed peer\.pem$/)).not.toBeNull();
    } finally {
      await applyToWest(fabric, 'restored-serial');
    }
    await expectStillServing();
  });

  it('the authorizer refuses a revoked serial from the certificate itself, whatever the pins say', async () => {
    // Defence in depth: verifyPeer checks the serial of the presented certificate too.
    const { createAuthorizer } = await import('../../reconciler/xds/authz.ts');
    const { slice: sliceOf } = await import('../../reconciler/slice/slice.ts');
    const { loadFabricFiles } = await import('../../schema/load.ts');
    const loaded = loadFabricFiles(fresh.files);
    if (!loaded.ok) throw new Error('fabric');
    const serial = new X509Certificate(fresh.peers.east!.certificatePem).serialNumber;
    const westSlice = sliceOf(loaded.fabric, 'west');
    const authz = createAuthorizer({ slice: () => ({ ...westSlice, revoked: { serials: [serial], fingerprints: [] } }), clientAttributes: () => null });
    const v = authz.ingress({ peerCertificateDer: new X509Certificate(fresh.peers.east!.certificatePem).raw, exportNamespace: 'web', exportName: 'http', client: { labels: {} } });
    expect(v.allowed).toBe(false);
    expect(!v.allowed && v.explanation.message).toMatch(/revoked/);
  });

  it('takes identity from the certificate: edge claiming to be east in CONNECT headers is judged as edge', async () => {
    const logs = peers.west!.logs;
    const from = logs.mark();
    const spoof = {
      'x-clusterlink-peer': 'east',
      'x-forwarded-client-cert': 'URI=clusterlink://example/east;DNS=east',
      'x-clusterlink-import': 'web/http',
      'x-clusterlink-client-namespace': 'web',
      'x-clusterlink-client-labels': 'app=browser',
    };
    // The same request with east's certificate is allowed: only the certificate differs.
    const asEast = await attempt({ head: connectHead('http.web:443', spoof), untilReply: true });
    expect(asEast.status).toBe(200);
    const r = await attempt({ identity: fresh.peers.edge!, head: connectHead('http.web:443', spoof) });
    expect(r.status).toBe(403);
    expect(r.reply).toMatch(/x-clusterlink-deny-reason: .*deny-edge-web/);
    const line = await logs.find(from, /^denied: /, { peer: 'edge', export: 'web/http' });
    expect(line?.policy).toBe('deny-edge-web');
    expect(logs.lines.slice(from).some((l) => l.msg.startsWith('denied') && l.peer === 'east')).toBe(false);
    await expectStillServing();
  });

  it('frees the slot of a refused peer that sent bytes behind its CONNECT and never closes', async () => {
    const logs = peers.west!.logs;
    const from = logs.mark();
    const before = webService.connections();
    const limit = WEST_LIMITS.maxIngressConnections!;
    // Bytes behind the head stay unread after the refusal, so the gateway would never see the
    // client's end; clients that never close (half-open allowed) would hold every connection slot.
    const held: tls.TLSSocket[] = [];
    const halfOpen = { allowHalfOpen: true } as Partial<tls.ConnectionOptions>;
    const head = Buffer.concat([Buffer.from(connectHead('http.web:443')), Buffer.alloc(4096, 0x78)]);
    try {
      const refused = await Promise.all(Array.from({ length: limit }, () => attempt({ identity: fresh.peers.edge!, head, tls: halfOpen, untilReply: true, keep: held })));
      expect(refused.map((r) => r.status)).toEqual(refused.map(() => 403));
      expect(await logs.find(from, /^denied: /, { peer: 'edge', export: 'web/http' })).not.toBeNull();
      // Within the linger bound (2 s) the gateway has closed them all, though none of the clients did.
      await new Promise((r) => setTimeout(r, 2500));
      await expectStillServing();
      expect(webService.connections() - before).toBe(2);
    } finally {
      for (const s of held) s.destroy();
    }
  });

  it('refuses a valid peer that does not import the export', async () => {
    const logs = peers.west!.logs;
    const from = logs.mark();
    // edge imports web/http only; west's perf/iperf3 is imported by east alone.
    const r = await attempt({ identity: fresh.peers.edge!, head: connectHead('iperf3.perf:443') });
    expect(r.status).toBe(403);
    expect(await logs.find(from, /^denied: peer edge does not import perf\/iperf3$/, { peer: 'edge' })).not.toBeNull();
    await expectStillServing();
  });

  it('refuses plaintext TCP (a CONNECT without TLS)', async () => {
    const logs = peers.west!.logs;
    const from = logs.mark();
    const r = await new Promise<{ reply: string; closed: boolean }>((resolve) => {
      const sock = net.connect({ ...GATEWAY, localAddress: ATTACKER });
      let reply = '';
      const timer = setTimeout(() => done(false), ATTEMPT_TIMEOUT_MS);
      function done(closed: boolean): void {
        clearTimeout(timer);
        sock.destroy();
        resolve({ reply, closed });
      }
      sock.on('connect', () => sock.write(connectHead('http.web:443')));
      sock.on('data', (d: Buffer) => (reply += d.toString('latin1')));
      sock.on('error', () => undefined);
      sock.on('close', () => done(true));
    });
    expect(r.closed).toBe(true);
    expect(r.reply).not.toMatch(/HTTP\/1\.1 200/);
    const line = await logs.find(from, /^TLS handshake refused: /);
    expect(line?.reason).toMatch(/^ERR_SSL_/);
    expect(line?.msg).toMatch(/\(plaintext .*\)$/);
    await expectStillServing();
  });

  it('refuses a TLS 1.2-only client (no downgrade: the gateway speaks TLS 1.3 only)', async () => {
    const logs = peers.west!.logs;
    const from = logs.mark();
    const r = await attempt({ head: connectHead('http.web:443'), tls: { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } });
    expect(r.secure).toBe(false);
    expect(r.status).toBeNull();
    expect(r.error).toMatch(/protocol version|unsupported protocol/i);
    const line = await logs.find(from, /^TLS handshake refused: /);
    expect(line?.msg).toBe('TLS handshake refused: unsupported protocol (the client offered no TLS 1.3; the gateway speaks TLS 1.3 only)');
    await expectStillServing();
  });

  it('answers 431 to an oversized CONNECT head, and closes a head that never ends', async () => {
    const logs = peers.west!.logs;
    let from = logs.mark();
    const big = await attempt({ head: connectHead('http.web:443', { 'x-pad': 'a'.repeat(9000) }) });
    expect(big.status === 431 || (big.status === null && big.closed)).toBe(true);
    expect(big.closed).toBe(true);
    expect(await logs.find(from, /^refused: request head larger than 8192 bytes$/, { status: 431 })).not.toBeNull();
    // 64 KiB with no end of head: refused once 8 KiB are buffered, not after reading it all.
    from = logs.mark();
    const endless = await attempt({ head: Buffer.alloc(64 * 1024, 0x61) });
    expect(endless.closed).toBe(true);
    expect(endless.status === 431 || endless.status === null).toBe(true);
    expect(await logs.find(from, /^refused: request head larger than 8192 bytes$/)).not.toBeNull();
    // Too many headers (> 32).
    from = logs.mark();
    const many = await attempt({ head: connectHead('http.web:443', Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`x-h${i}`, 'v']))) });
    expect(many.status).toBe(431);
    expect(await logs.find(from, /^refused: more than 32 headers$/)).not.toBeNull();
    expect(peers.west!.dataplane.stats().ingress.badRequests).toBeGreaterThanOrEqual(3);
    await expectStillServing();
  });

  it('closes a slow-loris CONNECT (bytes trickled) at the header timeout, not reset by each byte', async () => {
    const logs = peers.west!.logs;
    const from = logs.mark();
    // One byte every 50 ms would take ~3 s for this head; the gateway allows 1 s for the whole head.
    const r = await attempt({ head: connectHead('http.web:443', { 'x-clusterlink-client-namespace': 'web' }), trickleMs: 50 });
    expect(r.secure).toBe(true);
    expect(r.closed).toBe(true);
    expect(r.status === 408 || r.status === null).toBe(true);
    expect(r.ms).toBeGreaterThanOrEqual(900);
    expect(r.ms).toBeLessThan(2500);
    expect(await logs.find(from, /^refused: no complete request head within 1000 ms$/, { status: 408 })).not.toBeNull();
    await expectStillServing();
  });

  it('closes a member\'s connection that asks nothing at the header timeout, quietly (an idle preconnected spare, not an attack)', async () => {
    const logs = peers.west!.logs;
    const from = logs.mark();
    const badRequests = peers.west!.dataplane.stats().ingress.badRequests;
    const r = await attempt({});
    expect(r.secure).toBe(true);
    expect(r.closed).toBe(true);
    expect(r.status === 408 || r.status === null).toBe(true);
    expect(r.ms).toBeGreaterThanOrEqual(900);
    expect(peers.west!.dataplane.stats().ingress.badRequests).toBe(badRequests);
    expect(logs.lines.slice(from).filter((l) => l.level >= 40)).toEqual([]);
    await expectStillServing();
  });

  it('bounds a flood of half-open connections at the connection limit, then recovers', async () => {
    const logs = peers.west!.logs;
    const from = logs.mark();
    const limit = WEST_LIMITS.maxIngressConnections!;
    const flood = 3 * limit;
    const dropsBefore = peers.west!.dataplane.stats().handshakeFailures['connection-limit'] ?? 0;
    const t0 = performance.now();
    // Half-open: TCP connected, then nothing (or the first bytes of a TLS record and nothing more).
    const closedAt = await Promise.all(
      Array.from(
        { length: flood },
        (_, i) =>
          new Promise<number | null>((resolve) => {
            const sock = net.connect({ ...GATEWAY, localAddress: FLOODER });
            const timer = setTimeout(() => {
              sock.destroy();
              resolve(null);
            }, ATTEMPT_TIMEOUT_MS);
            sock.on('connect', () => {
              if (i % 2 === 1) sock.write(Buffer.from([0x16, 0x03, 0x01]));
            });
            sock.on('error', () => undefined);
            sock.on('close', () => {
              clearTimeout(timer);
              resolve(performance.now() - t0);
            });
          }),
      ),
    );
    // Every connection was closed by the gateway within the bound: the excess at once, the rest at the handshake timeout.
    expect(closedAt.every((t) => t !== null)).toBe(true);
    const early = closedAt.filter((t) => t !== null && t < 800).length;
    expect(early).toBeGreaterThanOrEqual(flood - limit - 5);
    expect(Math.max(...(closedAt as number[]))).toBeLessThan(WEST_LIMITS.handshakeTimeoutMs! + 2000);
    const drops = (peers.west!.dataplane.stats().handshakeFailures['connection-limit'] ?? 0) - dropsBefore;
    expect(drops).toBeGreaterThanOrEqual(flood - limit - 5);
    expect(await logs.find(from, /^refused: connection limit of 40 reached, new connections are dropped$/)).not.toBeNull();
    // The rest of the burst is summarised (one line per second), not logged per connection.
    const summary = await logs.find(from, /^refused: connection limit of 40 reached \(\d+ more dropped in the last second\)$/, {}, 2000);
    expect(summary?.dropped).toBeGreaterThan(0);
    expect(await logs.find(from, /^TLS handshake refused: .*timeout/i)).not.toBeNull();
    await expectStillServing();
  });

  it('rate-limits the warn lines of failed handshakes (no log amplification), while counting every one', async () => {
    const logs = peers.west!.logs;
    // Start from a clean count: a new window, and one refusal that carries what earlier cases had suppressed.
    await new Promise((r) => setTimeout(r, 1100));
    await attempt({ head: connectHead('http.web:443'), tls: { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }, localAddress: '127.0.185.9' });
    await logs.find(logs.mark() - 1, /^TLS handshake refused: unsupported protocol/);
    const from = logs.mark();
    const before = Object.values(peers.west!.dataplane.stats().handshakeFailures).reduce((a, b) => a + b, 0);
    const t0 = performance.now();
    // 300 plaintext connections (each a failed TLS handshake), 20 at a time, from this test's own address.
    for (let batch = 0; batch < 15; batch++) {
      await Promise.all(
        Array.from(
          { length: 20 },
          () =>
            new Promise<void>((resolve) => {
              const sock = net.connect({ ...GATEWAY, localAddress: '127.0.185.9' });
              const timer = setTimeout(() => sock.destroy(), ATTEMPT_TIMEOUT_MS);
              sock.on('connect', () => sock.write('GET / HTTP/1.1\r\n\r\n'));
              sock.on('error', () => undefined);
              sock.on('close', () => {
                clearTimeout(timer);
                resolve();
              });
            }),
        ),
      );
    }
    const seconds = (performance.now() - t0) / 1000;
    const failures = Object.values(peers.west!.dataplane.stats().handshakeFailures).reduce((a, b) => a + b, 0) - before;
    expect(failures).toBeGreaterThanOrEqual(300);
    const lines = logs.lines.slice(from).filter((l) => l.level >= 40 && /^TLS handshake refused: /.test(l.msg));
    // At most refusalLogBurst (10) lines per started second, instead of one per connection.
    expect(lines.length).toBeLessThanOrEqual(10 * (Math.ceil(seconds) + 1));
    expect(lines.length).toBeLessThan(300);
    // What was left out is said on the next line let through.
    await new Promise((r) => setTimeout(r, 1100));
    const next = await attempt({ head: connectHead('http.web:443'), tls: { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }, localAddress: '127.0.185.9' });
    expect(next.secure).toBe(false);
    expect(await logs.find(from, /^TLS handshake refused: unsupported protocol/)).not.toBeNull();
    // Every refusal is accounted for: the lines written plus the suppressed counts they carry.
    const all = logs.lines.slice(from).filter((l) => l.level >= 40 && /^TLS handshake refused: /.test(l.msg));
    expect(all.length + all.reduce((n, l) => n + Number(l.suppressed ?? 0), 0)).toBe(failures + 1);
    await expectStillServing();
  });

  it('has refused nothing legitimate and leaked no tunnel', async () => {
    expect(await waitFor(() => peers.west!.dataplane.stats().ingress.active === 0, 3000)).toBe(true);
    const east = peers.east!.dataplane.stats().egress['web/http']!;
    expect(east.denied).toBe(0);
  });
});
