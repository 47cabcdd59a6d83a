// The Envoy pair of the tunnel benchmark, in the cluster shape: per peer the reconciler as control
// plane (`clgo run` without --local, its own process: ADS + ext_authz over mutual TLS) and a real
// Envoy started as deploy/ starts the tunnel pod (test/fixtures/envoy.ts) with `--concurrency 1`,
// reading the peer Secret's files as the pod does, configured only by our xDS. East's Envoy is the egress (import listeners), west's the gateway; both control
// planes decide every tunnel over ext_authz, as in production.
// Addresses (127.0.170-172.*, apart from the other pairs): control planes 127.0.170.1 (east) and
// .2 (west), Envoy admin/health 127.0.170.11 (east) and .12 (west), west's gateway 127.0.171.2
// (the fabric's gateways moved from 127.0.91.*), east's import listeners on 127.0.172.1.
// Services are the benchmark's own (127.0.92.2).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import type { Endpoint } from '../../protocol/contracts.ts';
import { startEnvoy, type EnvoyProcess } from '../fixtures/envoy.ts';
import { writePeerSecret } from '../fixtures/peer-secret.ts';
import { LOCAL_CLIENTS, NET, spawnTracked, waitListening, type PemIdentity, type Proc } from './tunnel-refs.ts';

/** Where deploy/base/tunnel.yaml mounts the peer Secret. */
export const PEER_SECRET_MOUNT = '/var/run/clgo/peer';

export const ENVOY_NET = {
  cp: { east: '127.0.170.1', west: '127.0.170.2' },
  admin: { east: '127.0.170.11', west: '127.0.170.12' },
  gatewayRange: '127.0.171.',
  egress: '127.0.172.1',
} as const;

export interface EnvoyPair {
  egress: EnvoyProcess;
  gateway: EnvoyProcess;
  /** The two reconcilers (control planes), whose ext_authz is on every tunnel's path. */
  controlPlanes: Proc[];
  iperf: Endpoint;
  echo: Endpoint;
  note: string;
  /** Envoy counters worth printing beside the figures (ext_authz, TLS handshakes and resumptions, connections). */
  counters(): Promise<{ egress: Record<string, number>; gateway: Record<string, number> }>;
  close(): Promise<void>;
}

/** Counters (not gauges or histograms) of an Envoy whose names match `re`. */
async function counters(e: EnvoyProcess, re: RegExp): Promise<Record<string, number>> {
  const text = await e.admin('/stats?usedonly');
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(\S+): (\d+)$/.exec(line);
    if (m && re.test(m[1]!)) out[m[1]!] = Number(m[2]);
  }
  return out;
}

/**
 * `files` is the benchmark's fabric (gateways in NET.gatewayRange); west's gateway moves to this
 * pair's range so the Node data plane's gateway and Envoy's do not collide.
 */
export async function startEnvoyPair(dir: string, files: ReadonlyMap<string, Uint8Array>, identities: { east: PemIdentity; west: PemIdentity }, caPem: string): Promise<EnvoyPair> {
  const fabricDir = join(dir, 'envoy-fabric');
  for (const [path, bytes] of files) {
    const text = Buffer.from(bytes).toString('utf8');
    mkdirSync(dirname(join(fabricDir, path)), { recursive: true });
    writeFileSync(join(fabricDir, path), /^peers\/[^/]+\/peer\.yaml$/.test(path) ? text.replaceAll(NET.gatewayRange, ENVOY_NET.gatewayRange) : text);
  }
  const clientsFile = join(dir, 'envoy-clients.yaml');
  writeFileSync(clientsFile, stringify(LOCAL_CLIENTS));
  const controlPlanes: Proc[] = [];
  const envoys: EnvoyProcess[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(envoys.map((e) => e.stop(2000)));
    for (const p of controlPlanes) p.child.kill('SIGKILL');
  };
  // The peer Secret (tls.crt, tls.key, ca.crt) as deploy/ mounts it into both pods.
  const secrets = { east: await writePeerSecret(join(dir, 'envoy-east-secret'), identities.east, caPem), west: await writePeerSecret(join(dir, 'envoy-west-secret'), identities.west, caPem) };
  try {
    for (const peer of ['east', 'west'] as const) {
      const cp = ENVOY_NET.cp[peer];
      controlPlanes.push(
        spawnTracked(`control plane ${peer}`, process.execPath, [
          'bin/clgo.mjs', 'run', '--peer', peer, '--fabric', fabricDir, '--key', secrets[peer].privateKeyFile, '--cert', secrets[peer].certificateFile,
          '--xds', `${cp}:18000`, '--authz', `${cp}:18001`, '--egress-address', ENVOY_NET.egress,
          '--clients', clientsFile, '--admin', `${cp}:9090`, '--log-level', 'warn',
        ]),
      );
    }
    await Promise.all(controlPlanes.map((p, i) => waitListening({ host: Object.values(ENVOY_NET.cp)[i]!, port: 18000 }, 60_000, p)));
    for (const peer of ['west', 'east'] as const) {
      const admin = ENVOY_NET.admin[peer];
      envoys.push(
        await startEnvoy({
          peer,
          pod: 'bench',
          addresses: { xds: { host: ENVOY_NET.cp[peer], port: 18000 }, admin: { host: admin, port: 9901 }, health: { host: admin, port: 9902 } },
          mountDirs: { [PEER_SECRET_MOUNT]: secrets[peer].dir },
          extraArgs: ['--concurrency', '1'],
          readyTimeoutMs: 60_000,
        }),
      );
    }
    const [gateway, egress] = envoys as [EnvoyProcess, EnvoyProcess];
    const echo = { host: ENVOY_NET.egress, port: NET.echoPort };
    const iperf = { host: ENVOY_NET.egress, port: NET.iperfPort };
    await waitListening(echo, 30_000);
    await waitListening(iperf, 30_000);
    return {
      egress,
      gateway,
      controlPlanes,
      iperf,
      echo,
      note: 'Envoy pair: deploy/ bootstrap and flags + --concurrency 1, configured by our control planes (clgo run) over ADS, ext_authz on both sides',
      counters: async () => ({
        egress: await counters(egress, /^(ext_authz\.|cluster\.clusterlink\/import\/web\/http\.(ssl\.(handshake|session_reused|connection_error)|upstream_cx_(total|connect_fail))|listener\.127\.0\.172\.1_8080\.downstream_cx_total)/),
        gateway: await counters(gateway, /^(http\.clusterlink_ingress\.ext_authz\.|listener\.127\.0\.171\.2_\d+\.(ssl\.(handshake|session_reused|connection_error)|downstream_cx_total))/),
      }),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
