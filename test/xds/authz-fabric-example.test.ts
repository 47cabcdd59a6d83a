// The example fabric end to end through the real loader and slicer: every flow of
// fabric-example/README.md decided by each peer's Authorizer, egress on the importer and ingress
// (with the committed peer certificates) on the exporter.
import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readFabricDir } from '../../schema/read-dir.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import { sliceAll } from '../../reconciler/slice/slice.ts';
import { toDer } from '../../reconciler/pki/encoding.ts';
import { createAuthorizer, type SliceAuthorizer } from '../../reconciler/xds/authz.ts';
import type { ClientAttributes } from '../../protocol/contracts.ts';

const root = fileURLToPath(new URL('../../fabric-example/', import.meta.url));
const clients: Record<string, ClientAttributes> = {
  '127.0.30.1': { namespace: 'perf', labels: { app: 'iperf-client' } },
  '127.0.30.2': { namespace: 'perf', labels: { app: 'iperf-client', trust: 'untrusted' } },
  '127.0.30.3': { namespace: 'web', labels: { app: 'web' } },
};
const authz = new Map<string, SliceAuthorizer>();
const cert = (peer: string) => toDer(readFileSync(`${root}peers/${peer}/peer.pem`, 'utf8'));

beforeAll(async () => {
  const loaded = loadFabricFiles(await readFabricDir(root));
  if (!loaded.ok) throw new Error(`fabric-example does not load: ${loaded.errors.map((e) => `${e.file}:${e.line} ${e.message}`).join('; ')}`);
  for (const [peer, s] of sliceAll(loaded.fabric)) authz.set(peer, createAuthorizer({ slice: () => s, clientAttributes: (a) => clients[a] ?? null }));
});

const egress = (peer: string, ns: string, name: string, source: string) =>
  (authz.get(peer) as SliceAuthorizer).egress({ importNamespace: ns, importName: name, sourceAddress: source, sourcePort: 40000 });
const ingress = (peer: string, from: string, ns: string, name: string, client: ClientAttributes) =>
  (authz.get(peer) as SliceAuthorizer).ingress({ peerCertificateDer: cert(from), exportNamespace: ns, exportName: name, client });

describe('fabric-example flows', () => {
  it('east iperf client → iperf3: allowed at egress with both exporters, and at both ingresses', () => {
    const v = egress('east', 'perf', 'iperf3', '127.0.30.1');
    expect(v.allowed && v.candidates.map((c) => c.peer).sort()).toEqual(['edge', 'west']);
    expect(ingress('west', 'east', 'perf', 'iperf3', clients['127.0.30.1'] as ClientAttributes)).toMatchObject({ allowed: true, peer: 'east', target: { host: '127.0.20.2', port: 5201 } });
    expect(ingress('edge', 'east', 'perf', 'iperf3', clients['127.0.30.1'] as ClientAttributes)).toMatchObject({ allowed: true, peer: 'east', target: { host: '127.0.20.3', port: 5201 } });
  });

  it('east untrusted client: denied at egress by the privileged policy, with its file', () => {
    expect(egress('east', 'perf', 'iperf3', '127.0.30.2')).toMatchObject({
      allowed: false,
      explanation: { tier: 'privileged', policy: 'deny-untrusted-clients', location: expect.stringMatching(/^peers\/east\/policies\/deny-untrusted-clients\.yaml:\d+$/) },
    });
  });

  it('east web client → http on west: allowed on both sides', () => {
    const v = egress('east', 'web', 'http', '127.0.30.3');
    expect(v.allowed && v.candidates).toEqual([{ peer: 'west', exportName: 'http', exportNamespace: 'web' }]);
    expect(ingress('west', 'east', 'web', 'http', clients['127.0.30.3'] as ClientAttributes)).toMatchObject({ allowed: true, peer: 'east' });
  });

  it('edge web client → http on west: allowed at egress, denied at ingress by west deny-edge-web', () => {
    expect(egress('edge', 'web', 'http', '127.0.30.3').allowed).toBe(true);
    expect(ingress('west', 'edge', 'web', 'http', clients['127.0.30.3'] as ClientAttributes)).toMatchObject({
      allowed: false,
      status: 403,
      peer: 'edge',
      explanation: { tier: 'privileged', policy: 'deny-edge-web' },
    });
  });

  it('a peer presenting another member certificate for an export it does not import is refused', () => {
    // edge imports http, not west's iperf3.
    expect(ingress('west', 'edge', 'perf', 'iperf3', { labels: {} })).toMatchObject({ allowed: false, status: 403, peer: 'edge' });
  });
});
