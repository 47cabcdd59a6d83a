// Authorization throughput: decisions per second of the in-process Authorizer (egress and ingress,
// as the embedded Node data plane calls it per connection) and ext_authz Check round trips per
// second over gRPC on loopback (as Envoy or a separate data plane process calls it).
import { pino } from 'pino';
import { remoteAuthorizer } from '../../dataplane/xds-client/remote-authorizer.ts';
import { toDer } from '../../reconciler/pki/encoding.ts';
import { createAuthorizer } from '../../reconciler/xds/authz.ts';
import { egressResolverFromSlice, startExtAuthzServer } from '../../reconciler/xds/ext-authz-server.ts';
import { ALLOW_ALL, eastSlice, makePki, policy, westSlice } from '../xds/authz-fixtures.ts';
import { row, type Benchmark, type BenchResult } from './harness.ts';

/** Runs fn repeatedly for about ms milliseconds (after a warm-up) and returns calls per second. */
function rate(fn: () => unknown, ms = 700): number {
  for (let i = 0; i < 2000; i++) fn();
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < 500; i++) fn();
    n += 500;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}

async function rateAsync(fn: () => Promise<unknown>, concurrency: number, ms = 1500): Promise<number> {
  for (let i = 0; i < 200; i++) await fn();
  let n = 0;
  const start = performance.now();
  const worker = async (): Promise<void> => {
    while (performance.now() - start < ms) {
      await fn();
      n++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return (n * 1000) / (performance.now() - start);
}

export const benchmarks: Benchmark[] = [
  {
    name: 'authz',
    description: 'Authorizer decisions/s in process (egress with 2 exporters, ingress with certificate verification) and ext_authz Check round trips/s over gRPC on loopback',
    async run(): Promise<BenchResult[]> {
      const pki = await makePki();
      const clientPolicy = policy('west', { name: 'no-batch', action: 'deny', privileged: true, from: [{ workloadSelector: { matchLabels: { 'client.clusterlink.net/labels.app': 'batch' } } }] });
      const wSlice = westSlice(pki, [clientPolicy, ALLOW_ALL('west')]);
      const eSlice = eastSlice(pki, [ALLOW_ALL('east')]);
      const client = { namespace: 'default', labels: { app: 'frontend' } };
      const west = createAuthorizer({ slice: () => wSlice, clientAttributes: () => client });
      const east = createAuthorizer({ slice: () => eSlice, clientAttributes: () => null });
      const egressCheck = { importNamespace: 'default', importName: 'db', sourceAddress: '10.0.0.1', sourcePort: 1 };
      const ingressCheck = { peerCertificateDer: toDer(pki.west.certificatePem), exportName: 'db', exportNamespace: 'default', client };
      if (!west.egress(egressCheck).allowed || !east.ingress(ingressCheck).allowed) throw new Error('benchmark fixture does not allow its own checks');

      const egressRate = rate(() => west.egress(egressCheck));
      const ingressRate = rate(() => east.ingress(ingressCheck));

      const silent = pino({ level: 'silent' });
      const wServer = await startExtAuthzServer({ authorizer: west, resolveEgress: egressResolverFromSlice(() => wSlice), logger: silent });
      const eServer = await startExtAuthzServer({ authorizer: east, resolveEgress: () => null, logger: silent });
      const wRemote = remoteAuthorizer(wServer.address);
      const eRemote = remoteAuthorizer(eServer.address);
      try {
        const grpcEgress1 = await rateAsync(() => wRemote.egress(egressCheck), 1);
        const grpcEgress16 = await rateAsync(() => wRemote.egress(egressCheck), 16);
        const grpcIngress16 = await rateAsync(() => eRemote.ingress(ingressCheck), 16);
        return [
          row('authz.egress.in-process', egressRate, 'decisions/s', '>= 200000', egressRate >= 200_000, 'microseconds per connection'),
          row('authz.ingress.in-process', ingressRate, 'decisions/s', '>= 100000', ingressRate >= 100_000, 'includes verifyPeer on a known certificate'),
          row('authz.ext-authz.egress.1-in-flight', grpcEgress1, 'checks/s', '', null, 'sequential gRPC round trips on loopback'),
          row('authz.ext-authz.egress.16-in-flight', grpcEgress16, 'checks/s', '', null),
          row('authz.ext-authz.ingress.16-in-flight', grpcIngress16, 'checks/s', '', null, 'URL-encoded PEM certificate per request'),
          row('authz.ext-authz.cost-ratio', egressRate / grpcEgress16, 'x', '', null, 'in-process decision rate / gRPC round trip rate'),
        ];
      } finally {
        wRemote.close();
        eRemote.close();
        await Promise.all([wServer.stop(), eServer.stop()]);
      }
    },
  },
];
