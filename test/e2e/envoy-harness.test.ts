// The Envoy harness (test/fixtures/envoy.ts) runs Envoy as deploy/ does: the bootstrap and the
// command line it derives from the rendered kustomization differ from deploy's only where a host
// must differ (addresses, mount paths, $(VAR) values). Envoy itself is started by the Envoy e2e tests.
import { describe, expect, it } from 'vitest';
import { bootstrapDifferences, deployedTunnel, envoyBinary, expandArgs, hostBootstrap } from '../fixtures/envoy.ts';

const AT = { xds: { host: '127.0.165.200', port: 18000 }, admin: { host: '127.0.165.201', port: 9901 }, health: { host: '127.0.165.201', port: 9902 } };

describe('Envoy harness', () => {
  it('finds the pinned Envoy ($ENVOY_BIN, envoy on PATH, or test/envoy/install.sh\'s cached copy)', () => {
    expect(envoyBinary()).toBeTruthy();
  });

  it("changes deploy's bootstrap only in the xDS, admin and health addresses and in mounted paths", () => {
    const tunnel = deployedTunnel();
    const paths = new Map(tunnel.mounts.map((m, i) => [m.mountPath, `/tmp/host-mount-${i}`]));
    const host = hostBootstrap(tunnel.bootstrap, AT, paths);
    const allowed = new Set([
      'static_resources.clusters[name=xds_cluster].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address',
      'static_resources.clusters[name=envoy_admin].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address',
      'static_resources.listeners[name=health].address.socket_address.address',
      'admin.address.socket_address.address',
    ]);
    const differences = bootstrapDifferences(tunnel.bootstrap, host);
    // Ports stay as deploy/ has them (each test Envoy gets its own loopback address); strings under a mount path move to the host directory.
    const unexplained = differences.filter((d) => !allowed.has(d)).filter((d) => {
      const at = (o: unknown): unknown => d.split(/\.(?![^[]*\])/).reduce<unknown>((v, k) => {
        const m = /^(.*?)\[(?:name=(.+)|(\d+))\]$/.exec(k);
        const field = m ? m[1]! : k;
        let next = field ? (v as Record<string, unknown> | undefined)?.[field] : v;
        if (m?.[2] !== undefined) next = (next as Array<{ name: string }>).find((e) => e.name === m[2]);
        else if (m?.[3] !== undefined) next = (next as unknown[])[Number(m[3])];
        return next;
      }, o);
      const before = at(tunnel.bootstrap);
      return !(typeof before === 'string' && [...paths.keys()].some((p) => before.startsWith(p + '/')));
    });
    expect(unexplained).toEqual([]);
    expect(differences.length).toBeGreaterThanOrEqual(allowed.size);
  });

  it("runs deploy's command line with only the bootstrap path and $(VAR) references replaced", () => {
    const tunnel = deployedTunnel();
    expect(tunnel.argv[0]).toBe('envoy');
    const argv = expandArgs(tunnel.argv, { PEER_NAME: 'east', POD_NAME: 'east-envoy' });
    const differs = argv.map((a, i) => [tunnel.argv[i], a] as const).filter(([a, b]) => a !== b);
    expect(differs.every(([before]) => /\$\((PEER_NAME|POD_NAME)\)/.test(before!))).toBe(true);
    expect(argv).toContain('east/east-envoy');
    expect(() => expandArgs(['--x', '$(UNKNOWN)'], {})).toThrow(/UNKNOWN/);
  });
});
