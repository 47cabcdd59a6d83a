// `envoy --mode validate` (the real Envoy, pinned in deploy/envoy/VERSION) on the tunnel's
// bootstrap as deploy/ renders it: the generated ConfigMap's files, the tunnel container's own
// arguments (--service-node, --config-yaml with the peer name...), the peer Secret's files. Only
// the mount paths and the xDS/admin/health addresses are moved to the host (test/fixtures/envoy.ts).
// A broken bootstrap must fail with Envoy's reason, so this check can fail.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshExampleFabric, type FreshFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { envoyBinary, hostEnvoy, type HostEnvoy } from '../fixtures/envoy.ts';

// Addresses are only parsed in validate mode (nothing binds); this file's block is 127.0.164.x.
const AT = { xds: { host: '127.0.164.1', port: 18000 }, admin: { host: '127.0.164.2', port: 9901 }, health: { host: '127.0.164.2', port: 9902 } };
const made: HostEnvoy[] = [];
let fresh: FreshFabric;

function validate(mutate?: (bootstrap: Record<string, unknown>) => void, peer = 'east'): { status: number | null; output: string; argv: string[] } {
  const secret = { 'tls.crt': fresh.peers[peer]!.certificatePem, 'tls.key': fresh.peers[peer]!.privateKeyPem, 'ca.crt': fresh.ca.certificatePem };
  const host = hostEnvoy({ peer, addresses: AT, secrets: { 'clgo-peer-key': secret } }, mutate);
  made.push(host);
  const r = spawnSync(envoyBinary(), ['--mode', 'validate', ...host.argv.slice(1)], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}`, argv: host.argv };
}

beforeAll(async () => {
  fresh = await freshExampleFabric();
});
afterAll(() => {
  for (const h of made) rmSync(h.dir, { recursive: true, force: true });
});

describe('envoy --mode validate on deploy/envoy/bootstrap.yaml, as the tunnel pod runs it', () => {
  it("accepts deploy's bootstrap with the pod's own arguments", () => {
    const r = validate();
    expect(r.argv).toContain('--config-yaml');
    expect(r.output, r.output.slice(-2000)).toMatch(/configuration '.*bootstrap\.yaml' OK/);
    expect(r.status).toBe(0);
  });

  it('refuses a bootstrap whose ADS names a cluster that does not exist, with the reason', () => {
    const r = validate((b) => {
      const ads = (b.dynamic_resources as { ads_config: { grpc_services: Array<{ envoy_grpc: { cluster_name: string } }> } }).ads_config;
      ads.grpc_services[0]!.envoy_grpc.cluster_name = 'no_such_cluster';
    });
    expect(r.status).not.toBe(0);
    expect(r.output).toMatch(/no_such_cluster/);
  });

  it('refuses a bootstrap whose xDS TLS refers to a secret nobody defines (e.g. without the --config-yaml of the pod)', () => {
    const r = validate((b) => {
      const clusters = (b.static_resources as { clusters: Array<{ name: string; transport_socket?: { typed_config: Record<string, unknown> } }> }).clusters;
      const tls = clusters.find((c) => c.name === 'xds_cluster')!.transport_socket!.typed_config as { common_tls_context: { combined_validation_context: { validation_context_sds_secret_config: { name: string } } } };
      tls.common_tls_context.combined_validation_context.validation_context_sds_secret_config.name = 'clgo_missing_secret';
    });
    expect(r.status).not.toBe(0);
    expect(r.output).toMatch(/clgo_missing_secret/);
  });
});
