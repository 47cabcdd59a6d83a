// The flow table of fabric-example/README.md, computed by the policy engine over the real fabric.
import { beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLE_DIR } from '../../reconciler/demo/fresh-fabric.ts';
import { computeFlows, profileName, type Flow } from '../../reconciler/runtime/flows.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import type { FabricModel } from '../../schema/model.ts';
import { readFabricDir } from '../../schema/read-dir.ts';

let fabric: FabricModel;
let flows: Flow[];
beforeAll(async () => {
  const r = loadFabricFiles(await readFabricDir(EXAMPLE_DIR));
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  fabric = r.fabric;
  flows = computeFlows(fabric);
});

const find = (importer: string, imp: string, client: string, exporter: string): Flow | undefined =>
  flows.find((f) => f.importer === importer && f.import === imp && f.client === client && f.exporter === exporter);

describe('flows of the example fabric', () => {
  it('names client profiles by namespace and sorted labels', () => {
    expect(profileName({ namespace: 'perf', labels: { trust: 'untrusted', app: 'iperf-client' } })).toBe('perf/app=iperf-client/trust=untrusted');
  });

  it('allows east iperf clients to both exporters, on both sides', () => {
    for (const exporter of ['west', 'edge']) {
      const f = find('east', 'perf/iperf3', 'perf/app=iperf-client', exporter);
      expect(f?.allowed).toBe(true);
      expect(f?.egress.explanation.policy).toBe('perf/allow-iperf-clients');
    }
  });

  it('denies untrusted clients at east egress by the privileged policy, before any user allow', () => {
    const f = find('east', 'perf/iperf3', 'perf/app=iperf-client/trust=untrusted', 'west');
    expect(f?.allowed).toBe(false);
    expect(f?.ingress).toBeNull();
    expect(f?.egress.explanation.tier).toBe('privileged');
    expect(f?.egress.explanation.location).toMatch(/^peers\/east\/policies\/deny-untrusted-clients\.yaml:\d+$/);
  });

  it('denies edge web clients at west ingress while east web clients pass', () => {
    const edge = flows.filter((f) => f.importer === 'edge' && f.import === 'web/http');
    expect(edge.length).toBeGreaterThan(0);
    for (const f of edge) {
      expect(f.egress.allowed).toBe(true);
      expect(f.ingress?.allowed).toBe(false);
      expect(f.ingress?.explanation.policy).toBe('deny-edge-web');
    }
    expect(flows.some((f) => f.importer === 'east' && f.import === 'web/http' && f.allowed)).toBe(true);
  });

  it('default-denies a client no policy names', () => {
    const f = find('east', 'perf/iperf3', 'perf', 'west');
    expect(f?.allowed).toBe(false);
    expect(f?.egress.explanation.tier).toBe('default');
  });
});
