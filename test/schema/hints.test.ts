// "Did you mean" hints name a candidate only when it is plausibly a typo of what was written.
import { describe, expect, it } from 'vitest';
import { EXAMPLE_DIR } from '../../reconciler/demo/fresh-fabric.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import { readFabricDir } from '../../schema/read-dir.ts';

async function editImport(from: string, to: string) {
  const files = new Map<string, Uint8Array | string>(await readFabricDir(EXAMPLE_DIR));
  const path = 'peers/east/imports/iperf3.yaml';
  files.set(path, Buffer.from(files.get(path)!).toString().replace(from, to));
  const r = loadFabricFiles(files);
  return r.ok ? null : r.errors[0]!;
}

describe('cross-reference hints', () => {
  it('suggests a near peer name for a typo', async () => {
    expect((await editImport('peer: edge', 'peer: edgee'))?.hint).toMatch(/did you mean "edge"\?/);
  });
  it('does not suggest an unrelated peer for a peer that is gone', async () => {
    const e = await editImport('peer: edge', 'peer: north-pole');
    expect(e?.code).toBe('unknown-peer');
    expect(e?.hint).not.toMatch(/did you mean/);
    expect(e?.hint).toMatch(/remove this source if the peer left the fabric/);
  });
  it('lists what the exporter does export when no name is close', async () => {
    const e = await editImport('exportName: iperf3\n      exportNamespace: perf\n    - peer: edge', 'exportName: database\n      exportNamespace: perf\n    - peer: edge');
    expect(e?.code).toBe('unknown-export');
    expect(e?.hint).toMatch(/^peer west exports perf\/iperf3, web\/http/);
  });
});
