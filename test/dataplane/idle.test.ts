// Idle time-out and TCP keepalive of the Node data plane's tunnels. East's web client reaches
// web/http on west through east's egress and west's gateway, both with a small idleTimeoutMs: a
// tunnel that moves no byte for that long is closed on both ends (client and exported service), a
// stalled one (bytes queued that nobody reads, as behind a black-holed route) too, while tunnels
// that move bytes in either direction — even one direction only — stay open.
import net from 'node:net';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startDataplane, type Dataplane } from '../../dataplane/dataplane.ts';
import { KEEPALIVE_DELAY_MS } from '../../dataplane/relay.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import { freshExampleFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { slice } from '../../reconciler/slice/slice.ts';
import { createAuthorizer } from '../../reconciler/xds/authz.ts';
import { dataplaneConfigFromSlice } from '../../reconciler/xds/config.ts';
import { clientLookup } from '../../reconciler/runtime/local-clients.ts';
import { openEchoConnection, waitFor } from '../fixtures/servers.ts';

// This file's loopback range: 127.0.141.x — gateways .11-.13, services .22-.23, east's egress .31, web client .43.
const rewrite = (t: string): string => t.replaceAll('127.0.10.', '127.0.141.1').replaceAll('127.0.20.', '127.0.141.2');
const SERVICE = { host: '127.0.141.22', port: 8080 };
const EAST_EGRESS = '127.0.141.31';
const WEB_CLIENT = '127.0.141.43';
const CLIENTS = clientLookup({ clients: [{ address: WEB_CLIENT, namespace: 'web', labels: { app: 'browser' } }] });
const IDLE_MS = 300;
/** Every wait in this file is bounded by this. */
const BOUND_MS = 4000;

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/**
 * The exported service: echoes, until a chunk starts with "push" — from then on it sends one byte
 * every 100 ms and drops what it reads; "sink" — drops everything from then on; "stall" — never
 * reads again. Its side of each connection is kept, to see it closed.
 */
async function startService(): Promise<{ sockets: net.Socket[]; close(): Promise<void> }> {
  const sockets: net.Socket[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const server = net.createServer({ noDelay: true }, (s) => {
    sockets.push(s);
    s.on('error', () => s.destroy());
    let mode: 'echo' | 'drop' = 'echo';
    s.on('data', (d: Buffer) => {
      if (mode === 'drop') return;
      const word = d.subarray(0, 5).toString('latin1');
      if (word.startsWith('push')) {
        mode = 'drop';
        const t = setInterval(() => s.write('p'), 100);
        timers.add(t);
        s.on('close', () => {
          clearInterval(t);
          timers.delete(t);
        });
      } else if (word === 'sink') {
        mode = 'drop';
      } else if (word === 'stall') {
        s.pause();
      } else {
        s.write(d);
      }
    });
  });
  await new Promise<void>((r) => server.listen(SERVICE.port, SERVICE.host, () => r()));
  return {
    sockets,
    close: () =>
      new Promise<void>((r) => {
        for (const t of timers) clearInterval(t);
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

let service: Awaited<ReturnType<typeof startService>>;
const dataplanes: Record<'east' | 'west', Dataplane> = {} as Record<'east' | 'west', Dataplane>;
const logs: Record<'east' | 'west', LogLine[]> = { east: [], west: [] };

beforeAll(async () => {
  const fresh = await freshExampleFabric({ rewrite });
  const loaded = loadFabricFiles(fresh.files);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  const fabric = loaded.fabric;
  service = await startService();
  for (const [name, egressAddress] of [['west', '127.0.141.32'], ['east', EAST_EGRESS]] as const) {
    const s = slice(fabric, name);
    dataplanes[name] = await startDataplane({
      config: dataplaneConfigFromSlice(s, fresh.peers[name]!, { egressAddress }, '1'),
      authorizer: createAuthorizer({ slice: () => s, clientAttributes: CLIENTS }),
      logger: pino({ level: 'debug' }, { write: (t: string) => t.split('\n').filter((l) => l.trim()).forEach((l) => logs[name].push(JSON.parse(l) as LogLine)) }),
      limits: { idleTimeoutMs: IDLE_MS },
    });
  }
});

afterAll(async () => {
  await Promise.all(Object.values(dataplanes).map((d) => d.close()));
  await service?.close();
});

afterEach(() => {
  vi.restoreAllMocks();
});

const idleClosed = (): number => dataplanes.east.stats().idleClosed + dataplanes.west.stats().idleClosed;
const active = (): number => (dataplanes.east.stats().egress['web/http']?.active ?? 0) + dataplanes.west.stats().ingress.active;

/** A tunnel from the web client; resolves once it carries bytes, with the service's side of it. */
async function openTunnel(): Promise<{ client: net.Socket; serviceSide: net.Socket; closed: () => boolean; bothClosed: Promise<number> }> {
  const before = service.sockets.length;
  const conn = await openEchoConnection({ host: EAST_EGRESS, port: SERVICE.port, localAddress: WEB_CLIENT });
  expect(await waitFor(() => service.sockets.length > before, BOUND_MS)).toBe(true);
  const serviceSide = service.sockets[service.sockets.length - 1]!;
  let clientClosed = false;
  const onClose = (s: net.Socket): Promise<void> => (s.destroyed && s.closed ? Promise.resolve() : new Promise((r) => s.once('close', () => r())));
  void conn.closed.then(() => (clientClosed = true));
  const bothClosed = Promise.all([conn.closed, onClose(serviceSide)]).then(() => performance.now());
  return { client: conn.socket, serviceSide, closed: () => clientClosed, bothClosed };
}

/** Resolves the time both ends closed, or null after `ms`. */
const within = (p: Promise<number>, ms: number): Promise<number | null> => Promise.race([p, new Promise<null>((r) => setTimeout(() => r(null), ms))]);

describe('tunnel idle time-out', () => {
  it('closes an idle tunnel on both ends after idleTimeoutMs, not before', async () => {
    const closedBefore = idleClosed();
    const mark = { east: logs.east.length, west: logs.west.length };
    const t = await openTunnel();
    const lastByte = performance.now();
    const closedAt = await within(t.bothClosed, BOUND_MS);
    expect(closedAt).not.toBeNull();
    // Never early; late by at most a couple of sweeps (idleTimeoutMs / 10 each) plus scheduling.
    expect(closedAt! - lastByte).toBeGreaterThanOrEqual(IDLE_MS - 20);
    expect(closedAt! - lastByte).toBeLessThan(IDLE_MS + 1000);
    expect(idleClosed()).toBeGreaterThan(closedBefore);
    expect(await waitFor(() => active() === 0, BOUND_MS)).toBe(true);
    const lines = [...logs.east.slice(mark.east), ...logs.west.slice(mark.west)].filter((l) => /closed idle tunnel/.test(l.msg));
    expect(lines.length).toBe(idleClosed() - closedBefore);
    expect(lines.every((l) => l.level === 20 && l.peer !== undefined && typeof l.idleMs === 'number' && (l.idleMs as number) >= IDLE_MS)).toBe(true);
  });

  it('keeps a tunnel open while bytes move every 100 ms, and closes it once they stop', async () => {
    const closedBefore = idleClosed();
    const t = await openTunnel();
    const conn = { roundTrip: (d: Buffer) => roundTrip(t.client, d) };
    for (let i = 0; i < 15; i++) {
      await new Promise((r) => setTimeout(r, 100));
      expect(await conn.roundTrip(Buffer.from(`tick ${i}`))).toBe(true);
    }
    expect(t.closed()).toBe(false);
    expect(idleClosed()).toBe(closedBefore);
    expect(await within(t.bothClosed, BOUND_MS)).not.toBeNull();
    expect(idleClosed()).toBeGreaterThan(closedBefore);
  });

  it('counts bytes in one direction only as activity (service → client, and client → service)', async () => {
    const closedBefore = idleClosed();
    // Service → client: the service pushes a byte every 100 ms, the client sends nothing.
    const push = await openTunnel();
    push.client.write('push');
    let pushed = 0;
    push.client.on('data', () => pushed++);
    // Client → service: the client sends a byte every 100 ms, nothing comes back.
    const sink = await openTunnel();
    sink.client.write('sink');
    const tick = setInterval(() => sink.client.write('s'), 100);
    try {
      await new Promise((r) => setTimeout(r, 5 * IDLE_MS));
      expect(push.closed()).toBe(false);
      expect(sink.closed()).toBe(false);
      expect(pushed).toBeGreaterThan(5);
      expect(idleClosed()).toBe(closedBefore);
    } finally {
      clearInterval(tick);
      push.client.destroy();
      sink.client.destroy();
    }
    expect(await within(Promise.all([push.bothClosed, sink.bothClosed]).then(() => performance.now()), BOUND_MS)).not.toBeNull();
  });

  it('closes a stalled tunnel (bytes queued that nobody reads) on both ends', async () => {
    const closedBefore = idleClosed();
    const t = await openTunnel();
    t.client.write('stall');
    await new Promise((r) => setTimeout(r, 50));
    // Far more than the socket buffers and high-water marks along the path hold: the bytes back up and stop.
    t.client.write(Buffer.alloc(64 * 1024 * 1024, 0x73));
    // What the client still had to send, sampled until the close (destroy empties the queue).
    let queued = t.client.writableLength;
    const sampler = setInterval(() => (queued = t.client.writableLength), 10);
    const clientClosed = new Promise<number>((r) => t.client.once('close', () => r(performance.now())));
    const closedAt = await within(clientClosed, BOUND_MS);
    clearInterval(sampler);
    expect(closedAt).not.toBeNull();
    // It was stalled, not drained: megabytes were still waiting when the tunnel was closed.
    expect(queued).toBeGreaterThan(1024 * 1024);
    expect(idleClosed()).toBeGreaterThan(closedBefore);
    expect(await waitFor(() => active() === 0, BOUND_MS)).toBe(true);
    // The service, which stopped reading, sees the close once it reads again.
    t.serviceSide.resume();
    expect(await within(t.bothClosed, BOUND_MS)).not.toBeNull();
  });

  it('enables TCP keepalive on both sockets of a tunnel at both ends', async () => {
    const spy = vi.spyOn(net.Socket.prototype, 'setKeepAlive');
    const t = await openTunnel();
    // Egress: the client's socket and the TLS socket to the gateway; gateway: the TLS socket and the one to the service.
    const ours = spy.mock.calls.filter(([enable, delay]) => enable === true && delay === KEEPALIVE_DELAY_MS);
    expect(ours.length).toBeGreaterThanOrEqual(4);
    expect(KEEPALIVE_DELAY_MS).toBe(30_000);
    t.client.destroy();
    expect(await within(t.bothClosed, BOUND_MS)).not.toBeNull();
  });
});

/** Sends data and resolves true when exactly it came back (bounded). */
function roundTrip(socket: net.Socket, data: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const finish = (ok: boolean): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      resolve(ok);
    };
    const onData = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      if (got.length >= data.length) finish(got.subarray(0, data.length).equals(data));
    };
    const timer = setTimeout(() => finish(false), 2000);
    socket.on('data', onData);
    socket.write(data);
  });
}
