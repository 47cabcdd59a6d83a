// The slice core: what one peer learns of the fabric, determinism, and the diff that drives updates.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EXAMPLE_DIR } from '../demo/fresh-fabric.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import type { FabricModel } from '../../schema/model.ts';
import { readFabricDir } from '../../schema/read-dir.ts';
import { generateFabricFiles, peerName } from '../../test/fixtures/generate-fabric.ts';
import { diffSlices } from './diff.ts';
import { slice, sliceAll } from './slice.ts';

function load(files: ReadonlyMap<string, Uint8Array | string>): FabricModel {
  const r = loadFabricFiles(files);
  if (!r.ok) throw new Error(r.errors.map((e) => `${e.file}:${e.line}: ${e.message}`).join('\n'));
  return r.fabric;
}

const example = async (): Promise<Map<string, Uint8Array>> => readFabricDir(EXAMPLE_DIR);

describe('slice of the example fabric', () => {
  it("resolves east's imports to the exporters' gateways and export ports, in written order", async () => {
    const s = slice(load(await example()), 'east');
    const iperf = s.imports.find((i) => i.name === 'iperf3')!;
    expect(iperf.sources.map((x) => [x.peer, x.resolved, x.exportPort, x.gateways.map((g) => `${g.host}:${g.port}`)])).toEqual([
      ['west', true, 5201, ['127.0.10.2:4443']],
      ['edge', true, 5201, ['127.0.10.3:4443']],
    ]);
    expect(s.exports).toEqual([]);
    expect(s.policies.every((p) => p.peer === 'east')).toBe(true);
  });

  it('gives an exporter its importers (for ingress) but not their gateways', async () => {
    const s = slice(load(await example()), 'west');
    const http = s.exports.find((e) => e.name === 'http')!;
    expect(http.importers).toEqual(['east', 'edge']);
    expect(s.members.find((m) => m.name === 'east')?.gateways).toEqual([]);
    expect(s.members.every((m) => m.certificateFingerprint?.length === 64)).toBe(true);
  });

  it('tells a peer nothing about pairs that do not involve it', async () => {
    const fabric = load(await example());
    for (const [name, s] of sliceAll(fabric)) {
      const related = new Set<string>([...s.imports.flatMap((i) => i.sources.map((x) => x.peer)), ...s.exports.flatMap((e) => e.importers)]);
      expect(s.members.map((m) => m.name).every((m) => related.has(m)), name).toBe(true);
      // No other peer's exports, imports or policies appear anywhere in the slice.
      const text = JSON.stringify({ exports: s.exports, imports: s.imports, policies: s.policies });
      for (const other of fabric.peers.filter((p) => p.name !== name && !related.has(p.name))) expect(text).not.toContain(`"${other.name}"`);
      for (const p of s.policies) expect(p.peer).toBe(name);
    }
  });

  it('treats a revoked exporter as absent and a removed peer as an empty slice', async () => {
    const fabric = load(await example());
    const west = fabric.peers.find((p) => p.name === 'west')!;
    const { X509Certificate } = await import('node:crypto');
    const fp = new X509Certificate(west.certificatePem!).fingerprint256;
    const revoked: FabricModel = { ...fabric, revoked: { serials: [], fingerprints: [fp] } };
    const s = slice(revoked, 'east');
    expect(s.imports.flatMap((i) => i.sources).filter((x) => x.peer === 'west').every((x) => !x.resolved)).toBe(true);
    expect(s.members.map((m) => m.name)).not.toContain('west');
    // Revoked by serial (as `clgo`'s revocation list may name it, with colons): the same.
    const serial = new X509Certificate(west.certificatePem!).serialNumber.match(/../g)!.join(':');
    const bySerial = slice({ ...fabric, revoked: { serials: [serial], fingerprints: [] } }, 'east');
    expect(bySerial.members.map((m) => m.name)).not.toContain('west');
    expect(bySerial.imports.flatMap((i) => i.sources).filter((x) => x.peer === 'west').every((x) => !x.resolved)).toBe(true);
    const gone = slice(fabric, 'nobody');
    expect([gone.imports, gone.exports, gone.members, gone.policies]).toEqual([[], [], [], []]);
  });
});

describe('slice determinism and isolation', () => {
  it('the same fabric gives byte-identical slices whatever order the files come in', () => {
    const files = generateFabricFiles({ peers: 30, exports: 90, imports: 150, policies: 60 });
    const a = sliceAll(load(files));
    const b = sliceAll(load(new Map([...files].reverse())));
    for (const [name, s] of a) expect(JSON.stringify(b.get(name)), name).toBe(JSON.stringify(s));
  });

  it('adding an unrelated peer never changes another peer’s slice (property)', () => {
    const base = generateFabricFiles({ peers: 12, exports: 30, imports: 40, policies: 20, seed: 7 });
    const fabric = load(base);
    const before = sliceAll(fabric);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 11 }), fc.integer({ min: 0, max: 11 }), (watched, target) => {
        fc.pre(watched !== target);
        // A newcomer that imports one of target's exports (never watched's) and has its own exports and policies.
        const exp = fabric.peers.find((p) => p.name === peerName(target))?.exports[0];
        fc.pre(exp !== undefined);
        const files = new Map(base);
        files.set('peers/newcomer/peer.yaml', 'apiVersion: clusterlink.net/v1alpha1\nkind: Peer\nmetadata:\n  name: newcomer\nspec:\n  gateways:\n    - host: 10.250.0.1\n      port: 443\n');
        files.set('peers/newcomer/exports/x.yaml', 'apiVersion: clusterlink.net/v1alpha1\nkind: Export\nmetadata:\n  name: x\n  namespace: web\nspec:\n  port: 80\n');
        files.set(
          'peers/newcomer/imports/y.yaml',
          `apiVersion: clusterlink.net/v1alpha1\nkind: Import\nmetadata:\n  name: y\n  namespace: web\nspec:\n  port: 80\n  sources:\n    - peer: ${peerName(target)}\n      exportName: ${exp!.name}\n      exportNamespace: ${exp!.namespace}\n`,
        );
        files.set('peers/newcomer/policies/all.yaml', 'apiVersion: clusterlink.net/v1alpha1\nkind: PrivilegedAccessPolicy\nmetadata:\n  name: all\nspec:\n  action: allow\n  from:\n    - workloadSelector: {}\n  to:\n    - workloadSelector: {}\n');
        const after = sliceAll(load(files));
        expect(JSON.stringify(after.get(peerName(watched)))).toBe(JSON.stringify(before.get(peerName(watched))));
        // ...while the target does learn of its new importer.
        expect(after.get(peerName(target))?.members.map((m) => m.name)).toContain('newcomer');
      }),
      { numRuns: 25 },
    );
  });
});

describe('diffSlices', () => {
  it('reports nothing for equal slices and exactly the changed keys otherwise', async () => {
    const files = await example();
    const fabric = load(files);
    expect(diffSlices(slice(fabric, 'west'), slice(fabric, 'west')).empty).toBe(true);

    const edited = new Map<string, Uint8Array | string>(files);
    const path = 'peers/west/policies/allow-web.yaml';
    edited.set(path, Buffer.from(files.get(path)!).toString().replace('values: [east, edge]', 'values: [east]'));
    const exp = 'peers/west/exports/iperf3.yaml';
    edited.set(exp, Buffer.from(files.get(exp)!).toString().replace(/port: \d+/, 'port: 5299'));
    const d = diffSlices(slice(fabric, 'west'), slice(load(edited), 'west'));
    expect(d.policies).toEqual({ added: [], changed: ['AccessPolicy/web/allow-web'], removed: [] });
    expect(d.exports).toEqual({ added: [], changed: ['perf/iperf3'], removed: [] });
    expect(d.imports).toEqual({ added: [], changed: [], removed: [] });
    expect(d.empty).toBe(false);
    const first = diffSlices(null, slice(fabric, 'east'));
    expect(first.imports.added).toEqual(['web/http', 'perf/iperf3'].sort());
  });
});
