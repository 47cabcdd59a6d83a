// Half-close through a tunnel (egress → gateway over mutual TLS → exported service), as `nc -N`,
// HTTP/1.0 clients and batch protocols use it: the client writes its request and shuts down its
// write side, and must still get the whole reply; and the other way round, a service that sends
// and shuts down first must still get everything the client sends afterwards. Every FIN is passed
// on and a tunnel closes only when both directions are done (as Envoy's tcp_proxy does).
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDataplane, type Dataplane } from '../../dataplane/dataplane.ts';
import { freshExampleFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { clientLookup } from '../../reconciler/runtime/local-clients.ts';
import { slice } from '../../reconciler/slice/slice.ts';
import { createAuthorizer } from '../../reconciler/xds/authz.ts';
import { dataplaneConfigFromSlice } from '../../reconciler/xds/config.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import { waitFor } from '../fixtures/servers.ts';
import { faultTable } from './harness.ts';

// This file's loopback range: 127.0.188.x — gateways .11-.13, services .22-.23, egress .31/.32, web client .43.
const rewrite = (t: string): string => t.replaceAll('127.0.10.', '127.0.188.1').replaceAll('127.0.20.', '127.0.188.2');
const SERVICE = { host: '127.0.188.22', port: 8080 };
const EAST_EGRESS = '127.0.188.31';
const WEB_CLIENT = '127.0.188.43';
const CLIENTS = clientLookup({ clients: [{ address: WEB_CLIENT, namespace: 'web', labels: { app: 'browser' } }] });
const BOUND_MS = 20_000;
const table = faultTable(import.meta.filename);

/**
 * The exported service, half-close aware: echoes, and shuts its write side when the client has
 * (after the echo). A connection whose first bytes are "first" is the other way round: the service
 * sends a banner, shuts its write side at once, and counts what it still receives.
 */
const received: number[] = [];
let server: net.Server;
const dataplanes: Dataplane[] = [];

beforeAll(async () => {
  server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => s.destroy());
    let mode: 'echo' | 'first' | null = null;
    let count = 0;
    s.on('data', (d: Buffer) => {
      if (mode === null) mode = d.subarray(0, 5).toString('latin1') === 'first' ? 'first' : 'echo';
      if (mode === 'echo') s.write(d);
      else if (count === 0) {
        count = d.length;
        s.end('banner\n');
      } else count += d.length;
    });
    s.on('end', () => {
      if (mode === 'first') received.push(count - 5);
      else s.end();
    });
  });
  await new Promise<void>((r) => server.listen(SERVICE.port, SERVICE.host, () => r()));
  const fresh = await freshExampleFabric({ rewrite });
  const loaded = loadFabricFiles(fresh.files);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  for (const [name, egressAddress] of [['west', '127.0.188.32'], ['east', EAST_EGRESS]] as const) {
    const s = slice(loaded.fabric, name);
    dataplanes.push(await startDataplane({ config: dataplaneConfigFromSlice(s, fresh.peers[name]!, { egressAddress }, '1'), authorizer: createAuthorizer({ slice: () => s, clientAttributes: CLIENTS }) }));
  }
});

afterAll(async () => {
  await Promise.all(dataplanes.map((d) => d.close()));
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  await table.flush();
});

/** `nc -N`: connect, write `payload`, end(); everything read until the other side's FIN (bounded). */
function sendThenShutdown(host: string, port: number, payload: Buffer): Promise<{ bytes: number; sha: string; ms: number; gotFin: boolean }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const sock = net.connect({ host, port, localAddress: WEB_CLIENT, allowHalfOpen: true });
    const hash = createHash('sha256');
    let bytes = 0;
    let gotFin = false;
    const timer = setTimeout(() => sock.destroy(), BOUND_MS);
    sock.on('connect', () => sock.end(payload));
    sock.on('data', (d: Buffer) => {
      bytes += d.length;
      hash.update(d);
    });
    sock.on('end', () => (gotFin = true));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ bytes, sha: hash.digest('hex'), ms: performance.now() - t0, gotFin });
    });
  });
}

describe('fault: half-closed connections through a tunnel', () => {
  it('a client that writes and shuts down its write side gets the whole reply: 6 B, 100,000 B, 4 MB', async () => {
    const rows: string[] = [];
    let slowest = 0;
    for (const size of [6, 100_000, 4 * 1024 * 1024]) {
      const payload = size === 6 ? Buffer.from('hello\n') : randomBytes(size);
      const want = createHash('sha256').update(payload).digest('hex');
      const direct = await sendThenShutdown(SERVICE.host, SERVICE.port, payload);
      expect(direct.bytes).toBe(size);
      const tunnel = await sendThenShutdown(EAST_EGRESS, SERVICE.port, payload);
      expect({ size, bytes: tunnel.bytes, same: tunnel.sha === want, fin: tunnel.gotFin }).toEqual({ size, bytes: size, same: true, fin: true });
      rows.push(`${tunnel.bytes}/${size}`);
      slowest = Math.max(slowest, tunnel.ms);
    }
    // Both ends closed once both directions were done: no tunnel left open.
    expect(await waitFor(() => dataplanes.every((d) => d.stats().ingress.active === 0 && Object.values(d.stats().egress).every((e) => e.active === 0)), 5000)).toBe(true);
    table.add({ case: 'half-close: client writes, then shuts down its write side (`nc -N`)', held: `echoed in full through the tunnel: ${rows.join(', ')} bytes (as on a direct connection); FIN passed on each way, tunnel closed after both`, recoveryMs: slowest, recoveryNote: 'slowest exchange (4 MB)' });
  });

  it('a service that sends and shuts down first still receives everything the client sends after', async () => {
    const payload = Buffer.concat([Buffer.from('first'), randomBytes(100_000)]);
    const before = received.length;
    const t0 = performance.now();
    const reply = await new Promise<{ text: string; fin: boolean }>((resolve) => {
      const sock = net.connect({ host: EAST_EGRESS, port: SERVICE.port, localAddress: WEB_CLIENT, allowHalfOpen: true });
      let text = '';
      let fin = false;
      const timer = setTimeout(() => sock.destroy(), BOUND_MS);
      sock.on('connect', () => sock.write(payload.subarray(0, 5)));
      sock.on('data', (d: Buffer) => (text += d.toString('latin1')));
      // The service's FIN arrived: the client direction is still open, send the rest, then shut down.
      sock.on('end', () => {
        fin = true;
        sock.end(payload.subarray(5));
      });
      sock.on('error', () => undefined);
      sock.on('close', () => {
        clearTimeout(timer);
        resolve({ text, fin });
      });
    });
    expect(reply).toEqual({ text: 'banner\n', fin: true });
    expect(await waitFor(() => received.length > before, 5000)).toBe(true);
    expect(received[received.length - 1]).toBe(100_000);
    table.add({ case: 'half-close: service sends and shuts down first', held: `client got the banner and the FIN, then sent 100,000 bytes; the service received ${received[received.length - 1]}`, recoveryMs: performance.now() - t0, recoveryNote: 'whole exchange' });
  });
});
