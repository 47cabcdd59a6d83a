// Re-checking open tunnels when the authorization service is away: a decision nobody could make is
// no reason to cut working tunnels (they stay, with a warning), nor to keep a revoked one for good
// (the data plane asks again until it gets an answer, then closes what is no longer allowed). New
// connections fail closed meanwhile. West's gateway asks an authorizer this test can take away.
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDataplane, type Dataplane } from '../../dataplane/dataplane.ts';
import type { Authorizer, IngressCheck, IngressVerdict } from '../../protocol/contracts.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import { freshExampleFabric, type FreshFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { slice } from '../../reconciler/slice/slice.ts';
import type { Slice } from '../../reconciler/slice/types.ts';
import { createAuthorizer } from '../../reconciler/xds/authz.ts';
import { dataplaneConfigFromSlice } from '../../reconciler/xds/config.ts';
import { clientLookup } from '../../reconciler/runtime/local-clients.ts';
import { DENY_EAST_WEB } from '../fixtures/policies.ts';
import { echoThrough, openEchoConnection, startEchoServer, waitFor, type EchoConnection } from '../fixtures/servers.ts';

// This file's loopback range: 127.0.143.x — gateways .11-.13, services .22-.23, east's egress .31, west's .32, web client .43.
const rewrite = (t: string): string => t.replaceAll('127.0.10.', '127.0.143.1').replaceAll('127.0.20.', '127.0.143.2');
const WEB_CLIENT = '127.0.143.43';
const EAST_EGRESS = '127.0.143.31';
const CLIENTS = clientLookup({ clients: [{ address: WEB_CLIENT, namespace: 'web', labels: { app: 'browser' } }] });

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

let fresh: FreshFabric;
const dataplanes = {} as Record<'east' | 'west', Dataplane>;
const westLogs: LogLine[] = [];
let westSlice: Slice;
/** While true, west's authorizer cannot decide (as when its ext_authz service is unreachable). */
let westAway = false;
let service: Awaited<ReturnType<typeof startEchoServer>>;

function load(files: Map<string, Uint8Array>): ReturnType<typeof loadFabricFiles> & { ok: true } {
  const r = loadFabricFiles(files);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r;
}

beforeAll(async () => {
  fresh = await freshExampleFabric({ rewrite });
  const fabric = load(fresh.files).fabric;
  service = await startEchoServer('127.0.143.22', 8080);
  westSlice = slice(fabric, 'west');
  const westInner = createAuthorizer({ slice: () => westSlice, clientAttributes: CLIENTS });
  const westAuthorizer: Authorizer = {
    egress: (c) => westInner.egress(c),
    ingress: (c: IngressCheck): IngressVerdict =>
      westAway ? { allowed: false, status: 403, peer: null, unavailable: true, explanation: { tier: 'default', policy: null, location: null, message: 'authorization service unavailable: test' } } : westInner.ingress(c),
  };
  dataplanes.west = await startDataplane({
    config: dataplaneConfigFromSlice(westSlice, fresh.peers.west!, { egressAddress: '127.0.143.32' }, '1'),
    authorizer: westAuthorizer,
    logger: pino({ level: 'info' }, { write: (t: string) => t.split('\n').filter((l) => l.trim()).forEach((l) => westLogs.push(JSON.parse(l) as LogLine)) }),
  });
  const eastSlice = slice(fabric, 'east');
  dataplanes.east = await startDataplane({ config: dataplaneConfigFromSlice(eastSlice, fresh.peers.east!, { egressAddress: EAST_EGRESS }, '1'), authorizer: createAuthorizer({ slice: () => eastSlice, clientAttributes: CLIENTS }) });
});

afterAll(async () => {
  await Promise.all(Object.values(dataplanes).map((d) => d.close()));
  await service?.close();
});

const web = { host: EAST_EGRESS, port: 8080, localAddress: WEB_CLIENT };

describe('re-checking open tunnels while the authorization service is away', () => {
  let conn: EchoConnection;

  it('keeps open tunnels (with a warning) when no decision can be had, and refuses new connections', async () => {
    conn = await openEchoConnection(web);
    expect(await waitFor(() => dataplanes.west.stats().ingress.active === 1)).toBe(true);
    westAway = true;
    const from = westLogs.length;
    expect(await dataplanes.west.revalidate()).toBe(0);
    expect(dataplanes.west.stats().revalidationsDeferred).toBe(1);
    expect(await conn.roundTrip(Buffer.alloc(16 * 1024, 3))).toBe(true);
    expect(westLogs.slice(from).some((l) => l.level === 40 && /^authorization service unavailable: 1 open tunnel\(s\) kept unchecked, re-checking in 1000 ms$/.test(l.msg))).toBe(true);
    // New connections fail closed.
    expect(await echoThrough({ ...web, bytes: 64 })).toBe('refused');
  });

  it('asks again by itself, and closes the tunnel once the answer is that its right was revoked', async () => {
    const revalidations = dataplanes.west.stats().revalidations;
    // The service comes back with a policy that now denies east's web traffic. Nobody calls revalidate().
    const files = new Map(fresh.files);
    files.set('peers/west/policies/deny-east-web.yaml', Buffer.from(DENY_EAST_WEB));
    westSlice = slice(load(files).fabric, 'west');
    westAway = false;
    expect(await waitFor(() => conn.socket.destroyed, 4000)).toBe(true);
    expect(dataplanes.west.stats().revalidations).toBeGreaterThan(revalidations);
    expect(dataplanes.west.stats().revalidationsClosed).toBe(1);
  });
});
