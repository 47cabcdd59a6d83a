// Fault: clock skew on an exporting peer. West's identity checks run with an injected clock
// (PeerRuntimeOptions.now → authorizer → pki verifyPeer); TLS itself runs on the real clock. Set
// behind east certificate's notBefore, west must refuse east as not-yet-valid (ingress, default
// tier, counted) without ejecting itself from east's view (a 403 is a refusal, not a failure);
// perf/iperf3 must fail over to edge byte for byte; tunnels already open stay (identity is
// re-checked only when a revision changes); when the clock is right again the path is back on the
// next connection. The same with the clock past east's notAfter (expired).
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority, issuePeerCertificate } from '../../reconciler/pki/index.ts';
import { replaceCaInFabricYaml } from '../../reconciler/pki/repo.ts';
import { createRuntimeMetrics } from '../../reconciler/runtime/metrics.ts';
import { echoThrough } from '../fixtures/servers.ts';
import { blockRange, echoMany, faultTable, freshFabric, liveStream, parseMetrics, startFabric, value, type FabricHarness } from './harness.ts';

// This file's loopback range: 127.0.108.x.
const R = blockRange(108);
const DAY = 86_400_000;
const table = faultTable(import.meta.filename);
let fabric: FabricHarness;
let skewMs = 0;
let eastCert: X509Certificate;
const perf = { host: R.egress.east, port: 5201, localAddress: R.client.perf };
const web = { host: R.egress.east, port: 8080, localAddress: R.client.web };

beforeAll(async () => {
  // A CA valid since 30 days ago, so a clock a few hours behind still trusts the CA itself and the
  // refusal is about the peer certificate (the CA's own window is checked first).
  const fresh = await freshFabric(R);
  const ca = await createCertificateAuthority({ fabricName: fresh.fabricName, notBefore: new Date(Date.now() - 30 * DAY) });
  fresh.files.set('fabric.yaml', Buffer.from(replaceCaInFabricYaml(Buffer.from(fresh.files.get('fabric.yaml')!).toString('utf8'), [ca.certificatePem])));
  for (const peer of Object.keys(fresh.peers)) {
    const cert = await issuePeerCertificate({ peerName: peer, fabricName: fresh.fabricName, ca });
    fresh.files.set(`peers/${peer}/peer.pem`, Buffer.from(cert.certificatePem));
    fresh.peers[peer] = cert;
  }
  eastCert = new X509Certificate(fresh.peers.east!.certificatePem);
  fabric = await startFabric({ range: R, fresh, now: { west: () => new Date(Date.now() + skewMs) } });
});

afterAll(async () => {
  await fabric?.close();
  await table.flush();
});

async function skewCase(label: string, skew: number, reason: 'not-yet-valid' | 'expired'): Promise<void> {
  const m = createRuntimeMetrics(fabric.runtimes.west, { processMetrics: false });
  const open = await liveStream(web);
  const before = parseMetrics(await m.render());
  const westRefusals = fabric.runtimes.west.status().dataplane!.ingress.denied;
  skewMs = skew;
  // The verdict names the reason.
  const v = fabric.runtimes.west.authorizer.ingress({ peerCertificateDer: eastCert.raw, exportName: 'http', exportNamespace: 'web', client: { labels: {} } });
  expect(v.allowed).toBe(false);
  expect(!v.allowed && v.explanation.message).toContain(`(${reason})`);
  // web has only west: refused. perf fails over to edge: every connection byte-exact.
  expect(await echoThrough({ ...web, bytes: 2048, timeoutMs: 3000 })).toBe('refused');
  const perfRuns = await echoMany(4, perf);
  expect(perfRuns.ok).toBe(4);
  const after = parseMetrics(await m.render());
  const refused = fabric.runtimes.west.status().dataplane!.ingress.denied - westRefusals;
  expect(refused).toBeGreaterThanOrEqual(2); // the web attempt and at least one perf attempt (round-robin)
  expect(value(after, 'clgo_authz_decisions_total', { direction: 'ingress', result: 'denied', tier: 'default' }) - value(before, 'clgo_authz_decisions_total', { direction: 'ingress', result: 'denied', tier: 'default' })).toBe(refused);
  // A refusal is not a failure: west is not ejected on east.
  const east = fabric.runtimes.east.status().dataplane!;
  const westKey = Object.keys(east.exporters).find((k) => k.startsWith('west@'))!;
  expect(east.exporters[westKey]!.ejected).toBe(false);
  // The tunnel opened before the skew carries on (identity is checked at connect and on revision changes).
  expect(await open.drained()).toBe(true);
  // Clock right again: the next connection goes through.
  skewMs = 0;
  const t0 = performance.now();
  expect(await echoThrough({ ...web, bytes: 2048, timeoutMs: 3000 })).toBe('ok');
  const recoveryMs = performance.now() - t0;
  expect(await open.drained()).toBe(true);
  table.add({
    case: label,
    held: `east refused at west's gateway as ${reason} (${refused}× ingress deny, tier default, counted); web (west only) refused; 4/4 perf connections byte-exact via edge; west not ejected; tunnel opened before the skew untouched (${open.stats().verified} B exact)`,
    recoveryMs,
    recoveryNote: 'clock fixed → next connection through',
  });
  open.stop();
}

describe('fault: clock skew on an exporting peer', () => {
  it('west\'s clock behind east certificate\'s notBefore: not-yet-valid', async () => {
    await skewCase('clock skew: west 1 h behind east\'s certificate notBefore', Date.parse(eastCert.validFrom) - Date.now() - 3_600_000, 'not-yet-valid');
  }, 20_000);

  it('west\'s clock past east certificate\'s notAfter: expired', async () => {
    await skewCase('clock skew: west 1 day past east\'s certificate notAfter', Date.parse(eastCert.validTo) - Date.now() + DAY, 'expired');
  }, 20_000);
});
