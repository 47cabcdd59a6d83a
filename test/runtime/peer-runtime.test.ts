// Three peers in local mode, each a reconciler loop (directory source → slice → data plane) over
// one fabric directory: traffic flows, a bad edit is refused with file:line while the last good
// configuration keeps serving, a policy change closes the tunnel it revokes, a fix recovers.
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshExampleFabric, type FreshFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { clientLookup } from '../../reconciler/runtime/local-clients.ts';
import { startPeerRuntime, type PeerRuntime } from '../../reconciler/runtime/peer-runtime.ts';
import { createDirectorySource } from '../../reconciler/source/directory-source.ts';
import { echoThrough, openEchoConnection, startEchoServer, waitFor } from '../fixtures/servers.ts';
import { DENY_EAST_WEB } from '../fixtures/policies.ts';

// This file's loopback range: gateways 127.0.61.x, services 127.0.62.x, egress 127.0.63.x, clients 127.0.64.x.
const rewrite = (t: string): string => t.replaceAll('127.0.10.', '127.0.61.').replaceAll('127.0.20.', '127.0.62.');
const CLIENTS = clientLookup({
  clients: [
    { address: '127.0.64.1', namespace: 'perf', labels: { app: 'iperf-client' } },
    { address: '127.0.64.3', namespace: 'web', labels: { app: 'browser' } },
  ],
});

let dir: string;
let fresh: FreshFabric;
const runtimes: Record<string, PeerRuntime> = {};
const services: Array<{ close(): Promise<void> }> = [];

async function writeFabric(files: ReadonlyMap<string, Uint8Array | string>): Promise<void> {
  for (const [path, bytes] of files) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), bytes);
  }
}


beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clgo-runtime-'));
  fresh = await freshExampleFabric({ rewrite });
  await writeFabric(fresh.files);
  services.push(await startEchoServer('127.0.62.2', 5201), await startEchoServer('127.0.62.2', 8080), await startEchoServer('127.0.62.3', 5201));
  const egress: Record<string, string> = { east: '127.0.63.1', west: '127.0.63.2', edge: '127.0.63.3' };
  for (const peer of ['west', 'edge', 'east']) {
    runtimes[peer] = await startPeerRuntime({
      peer,
      source: createDirectorySource({ dir, debounceMs: 50 }),
      identity: { privateKeyPem: fresh.peers[peer]!.privateKeyPem },
      listen: { egressAddress: egress[peer]! },
      clientAttributes: CLIENTS,
    });
  }
});

afterAll(async () => {
  await Promise.all(Object.values(runtimes).map((r) => r.close()));
  await Promise.all(services.map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
});

describe('peer runtime (local mode, directory source)', () => {
  it('applies the first revision on start and carries traffic', async () => {
    for (const r of Object.values(runtimes)) {
      expect(r.status().ready).toBe(true);
      expect(r.status().applied?.revision).toMatch(/^[0-9a-f]{64}$/);
    }
    expect(await echoThrough({ host: '127.0.63.1', port: 5201, localAddress: '127.0.64.1', bytes: 256 * 1024 })).toBe('ok');
    expect(await echoThrough({ host: '127.0.63.1', port: 8080, localAddress: '127.0.64.3', bytes: 1024 })).toBe('ok');
  });

  it('refuses a broken edit with file:line and keeps serving the last good revision', async () => {
    const good = runtimes.east!.status().applied!.revision;
    const conn = await openEchoConnection({ host: '127.0.63.1', port: 8080, localAddress: '127.0.64.3' });
    const original = Buffer.from(fresh.files.get('peers/east/imports/http.yaml')!).toString();
    // A typo on a new last line: an unknown field, reported where it is written.
    const broken = `${original.trimEnd()}\n  lbSchme: random\n`;
    await writeFile(join(dir, 'peers/east/imports/http.yaml'), broken);
    expect(await waitFor(() => runtimes.east!.status().source.lastError !== null, 5000)).toBe(true);
    const err = runtimes.east!.status().source.lastError!;
    expect(err.stage).toBe('validate');
    expect(err.file).toBe('peers/east/imports/http.yaml');
    expect(err.line).toBe(broken.trimEnd().split('\n').length);
    expect(err.message).toMatch(/lbSchme/);
    expect(runtimes.east!.status().applied!.revision).toBe(good);
    expect(conn.socket.destroyed).toBe(false);
    expect(await echoThrough({ host: '127.0.63.1', port: 8080, localAddress: '127.0.64.3', bytes: 1024 })).toBe('ok');
    conn.socket.destroy();
    await writeFabric(new Map([['peers/east/imports/http.yaml', fresh.files.get('peers/east/imports/http.yaml')!]]));
    expect(await waitFor(() => runtimes.east!.status().source.lastError === null, 5000)).toBe(true);
    expect(runtimes.east!.status().applied!.revision).toBe(good);
  });

  it('closes a tunnel when a committed policy revokes it, and reopens the path when reverted', async () => {
    const conn = await openEchoConnection({ host: '127.0.63.1', port: 8080, localAddress: '127.0.64.3' });
    const before = runtimes.west!.status().applied!.version;
    await writeFile(
      join(dir, 'peers/west/policies/deny-east-web.yaml'),
      DENY_EAST_WEB,
    );
    expect(await waitFor(() => runtimes.west!.status().applied!.version > before, 5000)).toBe(true);
    await conn.closed;
    expect(runtimes.west!.status().applied!.changes.tunnelsClosed).toBeGreaterThanOrEqual(1);
    expect(await echoThrough({ host: '127.0.63.1', port: 8080, localAddress: '127.0.64.3', bytes: 1024 })).toBe('refused');
    await rm(join(dir, 'peers/west/policies/deny-east-web.yaml'));
    expect(await waitFor(() => runtimes.west!.status().applied!.version > before + 1, 5000)).toBe(true);
    expect(await echoThrough({ host: '127.0.63.1', port: 8080, localAddress: '127.0.64.3', bytes: 1024 })).toBe('ok');
  });
});
