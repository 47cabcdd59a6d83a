import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { TUNNEL, type ClientAttributes } from '../../protocol/contracts.ts';
import { remoteAuthorizer, type RemoteAuthorizer } from '../../dataplane/xds-client/remote-authorizer.ts';
import { toDer } from '../pki/encoding.ts';
import { ALLOW_ALL, eastSlice, makePki, policy, westSlice, type Pki } from '../../test/xds/authz-fixtures.ts';
import { createAuthorizer } from './authz.ts';
import { authorizationServiceDefinition, fromStruct } from '../../protocol/ext-authz.ts';
import { allOrNothing, egressResolverFromSlice, startExtAuthzServer, type ExtAuthzServer } from './ext-authz-server.ts';

let pki: Pki;
const servers: ExtAuthzServer[] = [];
const clients: grpc.Client[] = [];
const remotes: RemoteAuthorizer[] = [];
const logLines: Array<Record<string, unknown>> = [];
const logger = pino({ level: 'info' }, { write: (s: string) => void logLines.push(JSON.parse(s) as Record<string, unknown>) });
const localClients: Record<string, ClientAttributes> = {
  '10.0.0.1': { namespace: 'default', labels: { app: 'frontend' } },
  '10.0.0.2': { namespace: 'default', labels: { app: 'batch' } },
};
let west: ExtAuthzServer;
let east: ExtAuthzServer;

type Check = (req: unknown) => Promise<Record<string, unknown>>;
function rawClient(address: string): Check {
  const Client = grpc.makeGenericClientConstructor(authorizationServiceDefinition(), 'Authorization');
  const c = new Client(address, grpc.credentials.createInsecure());
  clients.push(c);
  return (req) =>
    new Promise((resolve, reject) =>
      (c as unknown as { Check(r: unknown, o: grpc.CallOptions, cb: (e: Error | null, r: unknown) => void): void }).Check(req, { deadline: Date.now() + 3000 }, (e, r) =>
        e ? reject(e) : resolve(r as Record<string, unknown>),
      ),
    );
}

beforeAll(async () => {
  pki = await makePki();
  const denyBatch = policy('west', { name: 'no-batch', action: 'deny', privileged: true, from: [{ workloadSelector: { matchLabels: { 'client.clusterlink.net/labels.app': 'batch' } } }] });
  const wSlice = westSlice(pki, [denyBatch, ALLOW_ALL('west')]);
  west = await startExtAuthzServer({
    authorizer: createAuthorizer({ slice: () => wSlice, clientAttributes: (a) => localClients[a] ?? null }),
    resolveEgress: egressResolverFromSlice(() => wSlice),
    logger,
  });
  const eSlice = eastSlice(pki, [ALLOW_ALL('east')], { members: ['north', 'west'] });
  east = await startExtAuthzServer({ authorizer: createAuthorizer({ slice: () => eSlice, clientAttributes: () => null }), resolveEgress: () => null, logger });
  servers.push(west, east);
});

afterAll(async () => {
  for (const r of remotes) r.close();
  for (const c of clients) c.close();
  await Promise.all(servers.map((s) => s.stop()));
});

const pemParam = (pem: string) => encodeURIComponent(pem);
const connect = (certificate: string | undefined, headers: Record<string, string> = {}, authority = 'db.default:443') => ({
  attributes: {
    source: { address: { socket_address: { address: '127.0.0.5', port_value: 51000 } }, principal: 'spiffe://demo/west', ...(certificate === undefined ? {} : { certificate }) },
    destination: { address: { socket_address: { address: '127.0.0.2', port_value: 8443 } } },
    request: { http: { method: 'CONNECT', host: authority, headers: { ':authority': authority, ...headers } } },
  },
});
const egress = (sourceAddress: string, port = 5432) => ({
  attributes: {
    source: { address: { socket_address: { address: sourceAddress, port_value: 40000 } } },
    destination: { address: { socket_address: { address: '0.0.0.0', port_value: port } } },
  },
});
const denyHeader = (res: Record<string, unknown>): string | undefined =>
  (res.denied_response as { headers?: Array<{ header: { key: string; value: string } }> } | undefined)?.headers?.find((h) => h.header.key === TUNNEL.headers.denyReason)?.header.value;

describe('ext_authz over gRPC: egress (network filter)', () => {
  it('allows, mapping the listener address to the import, with candidates in dynamic metadata', async () => {
    const res = await rawClient(west.address)(egress('10.0.0.1'));
    expect(res.status).toMatchObject({ code: 0 });
    const meta = fromStruct(res.dynamic_metadata);
    expect(meta).toMatchObject({ verdict: 'allow', candidates: [{ peer: 'east', cluster: 'clusterlink/peer/east' }, { peer: 'north' }] });
  });

  it('denies with PERMISSION_DENIED, the reason in a header, and a log line', async () => {
    logLines.length = 0;
    const res = await rawClient(west.address)(egress('10.0.0.2'));
    expect(res.status).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    expect(denyHeader(res)).toMatch(/^privileged:no-db|^privileged:no-batch \(peers\/west\/policies\/no-batch\.yaml:\d+\)$/);
    expect(res.denied_response).toMatchObject({ status: { code: 'Forbidden' }, headers: [{ append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }] });
    expect(logLines).toContainEqual(expect.objectContaining({ msg: 'connection denied', side: 'egress', import: 'default/db', policy: 'no-batch', tier: 'privileged' }));
  });

  it('denies a listener address that maps to no import', async () => {
    const res = await rawClient(west.address)(egress('10.0.0.1', 9999));
    expect(res.status).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    expect(denyHeader(res)).toContain('no import listens on 0.0.0.0:9999');
  });
});

describe('ext_authz over gRPC: ingress (HTTP filter at the gateway)', () => {
  it('allows a verified importer and returns the export target', async () => {
    const res = await rawClient(east.address)(connect(pemParam(pki.west.certificatePem), { [TUNNEL.headers.clientNamespace]: 'default' }));
    expect(res.status).toMatchObject({ code: 0 });
    expect(fromStruct(res.dynamic_metadata)).toEqual({ verdict: 'allow', peer: 'west', targetHost: '127.0.0.1', targetPort: 5432 });
  });

  it('ignores a forged peer name: identity comes only from the certificate', async () => {
    logLines.length = 0;
    const forged = { 'x-clusterlink-peer': 'west', 'x-forwarded-client-cert': 'By=spiffe://demo/west', [TUNNEL.headers.importRef]: 'default/db' };
    // north is a member but does not import default/db: claiming to be west changes nothing.
    const res = await rawClient(east.address)(connect(pemParam(pki.north.certificatePem), forged));
    expect(res.status).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    expect(fromStruct(res.dynamic_metadata)).toMatchObject({ verdict: 'deny', peer: 'north' });
    expect(logLines).toContainEqual(expect.objectContaining({ msg: 'connection denied', side: 'ingress', peer: 'north', export: 'default/db' }));
    // No certificate at all, only the header claim: refused.
    const none = await rawClient(east.address)(connect(undefined, forged));
    expect(none.status).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    expect(denyHeader(none)).toContain('no verified client certificate');
  });

  it('refuses a certificate from another CA, a non-CONNECT request and a malformed authority', async () => {
    const check = rawClient(east.address);
    expect((await check(connect(pemParam(pki.impostor.certificatePem)))).status).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    const get = connect(pemParam(pki.west.certificatePem));
    get.attributes.request.http.method = 'GET';
    const res = await check(get);
    expect((res.denied_response as { status: { code: string } }).status.code).toBe('BadRequest');
    const bad = await check(connect(pemParam(pki.west.certificatePem), {}, 'db:443'));
    expect(denyHeader(bad)).toContain('is not <export>.<namespace>:443');
  });

  it('bounds the request: an oversized certificate field is refused, not parsed', async () => {
    const res = await rawClient(east.address)(connect('A'.repeat(40_000)));
    expect(res.status).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    expect(denyHeader(res)).toContain('malformed CheckRequest');
  });
});

describe('remoteAuthorizer (Node data plane in its own process)', () => {
  it('gives the same verdicts as the in-process Authorizer', async () => {
    const w = remoteAuthorizer(west.address);
    const e = remoteAuthorizer(east.address);
    remotes.push(w, e);
    const allowed = await w.egress({ importNamespace: 'default', importName: 'db', sourceAddress: '10.0.0.1', sourcePort: 1 });
    // The round-robin position lives in the server's Authorizer: which exporter comes first depends on earlier calls.
    expect(allowed.allowed && { client: allowed.client, candidates: [...allowed.candidates].sort((a, b) => a.peer.localeCompare(b.peer)) }).toEqual({
      client: localClients['10.0.0.1'],
      candidates: [
        { peer: 'east', exportName: 'db', exportNamespace: 'default' },
        { peer: 'north', exportName: 'db', exportNamespace: 'default' },
      ],
    });
    expect(await w.egress({ importNamespace: 'default', importName: 'db', sourceAddress: '10.0.0.2', sourcePort: 1 })).toMatchObject({
      allowed: false,
      explanation: { tier: 'privileged', policy: 'no-batch', location: expect.stringMatching(/^peers\/west\/policies\/no-batch\.yaml:\d+$/) },
    });
    const client = { namespace: 'default', labels: { app: 'frontend', 'team.example.com/owner': 'a b&c' } };
    expect(await e.ingress({ peerCertificateDer: toDer(pki.west.certificatePem), exportName: 'db', exportNamespace: 'default', client })).toEqual({
      allowed: true,
      peer: 'west',
      target: { host: '127.0.0.1', port: 5432 },
    });
    expect(await e.ingress({ peerCertificateDer: toDer(pki.west.certificatePem), exportName: 'cache', exportNamespace: 'default', client })).toMatchObject({ allowed: false, status: 404, peer: 'west' });
  });

  it('fails closed when the service is unreachable', async () => {
    const r = remoteAuthorizer('127.0.0.1:1', { timeoutMs: 300 });
    remotes.push(r);
    expect(await r.egress({ importNamespace: 'default', importName: 'db', sourceAddress: '10.0.0.1', sourcePort: 1 })).toMatchObject({
      allowed: false,
      explanation: { message: expect.stringContaining('authorization service unavailable') },
    });
  });
});

describe('egress checks from an Envoy listener (resolved by address)', () => {
  const question = (balancedExporters?: string[]) => ({ side: 'egress' as const, check: { importNamespace: 'perf', importName: 'iperf3', sourceAddress: '10.0.0.1', sourcePort: 1 }, ...(balancedExporters ? { balancedExporters } : {}) });
  const allowedTo = (...peers: string[]) => ({ allowed: true as const, client: { labels: {} }, candidates: peers.map((peer) => ({ peer, exportName: 'iperf3', exportNamespace: 'perf' })) });

  it('are allowed only when egress policy allows every exporter Envoy balances over', () => {
    expect(allOrNothing(question(['west', 'edge']), allowedTo('edge', 'west')).allowed).toBe(true);
    const partial = allOrNothing(question(['west', 'edge']), allowedTo('west'));
    expect(partial.allowed).toBe(false);
    expect(!partial.allowed && partial.explanation.message).toMatch(/only some of its exporters \(not edge\).*Envoy/);
    // A client that names its import (the Node data plane walks the allowed candidates itself) keeps a partial allow.
    expect(allOrNothing(question(), allowedTo('west')).allowed).toBe(true);
  });

  it('the resolver names the exporters of the import listening on that port', () => {
    const resolve = egressResolverFromSlice(() => westSlice(pki, []));
    const imp = westSlice(pki, []).imports[0]!;
    const found = resolve({ address: '127.0.0.1', port: imp.targetPort ?? imp.port });
    expect(found).toMatchObject({ importNamespace: imp.namespace, importName: imp.name });
    expect(found?.balancedExporters).toEqual(imp.sources.filter((s) => s.resolved && s.gateways.length > 0).map((s) => s.peer));
  });
});
