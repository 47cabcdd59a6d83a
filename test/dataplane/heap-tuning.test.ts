// The adaptive V8 heap tuning (dataplane/heap-tuning.ts) switches on when the relays of the process
// move bytes fast, and stopping it restores V8's default. Loopback 127.0.141.x (this directory's
// idle test shares the range, on other ports).
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { relayHeapTuningActive, startRelayHeapTuning, stopRelayHeapTuning } from '../../dataplane/heap-tuning.ts';
import { relay } from '../../dataplane/relay.ts';
import { waitFor } from '../fixtures/servers.ts';

const HOST = '127.0.141.51';
const cleanups: Array<() => void> = [];

afterAll(() => {
  stopRelayHeapTuning();
  for (const c of cleanups) c();
});

/** client → [front ⇄ relay ⇄ back] → sink; resolves the client socket. */
async function relayedPipe(): Promise<net.Socket> {
  const sink = net.createServer((s) => {
    s.on('data', () => undefined);
    s.on('error', () => s.destroy());
  });
  await new Promise<void>((r) => sink.listen(0, HOST, () => r()));
  const front = net.createServer((a) => {
    const b = net.connect({ host: HOST, port: (sink.address() as net.AddressInfo).port });
    relay(a, b, () => undefined);
  });
  await new Promise<void>((r) => front.listen(0, HOST, () => r()));
  const client = net.connect({ host: HOST, port: (front.address() as net.AddressInfo).port });
  client.on('error', () => client.destroy());
  await new Promise<void>((r) => client.once('connect', () => r()));
  cleanups.push(() => {
    client.destroy();
    front.close();
    sink.close();
  });
  return client;
}

describe('adaptive heap tuning for relays', () => {
  it('switches on while relays move >= 64 MB/s and off again when stopped', async () => {
    startRelayHeapTuning();
    expect(relayHeapTuningActive()).toBe(false);
    const client = await relayedPipe();
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    let sending = true;
    const pump = (): void => {
      while (sending && client.write(chunk));
      if (sending) client.once('drain', pump);
    };
    pump();
    try {
      expect(await waitFor(() => relayHeapTuningActive(), 5000)).toBe(true);
    } finally {
      sending = false;
    }
    stopRelayHeapTuning();
    expect(relayHeapTuningActive()).toBe(false);
  });
});
