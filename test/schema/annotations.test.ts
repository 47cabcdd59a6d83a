// Import annotations the loader understands: clusterlink.net/session-affinity.
import { describe, expect, it } from 'vitest';
import { EXAMPLE_DIR } from '../../reconciler/demo/fresh-fabric.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import { readFabricDir } from '../../schema/read-dir.ts';

const IMPORT = 'peers/east/imports/iperf3.yaml';

async function withAnnotation(value: string): Promise<ReturnType<typeof loadFabricFiles>> {
  const files = new Map<string, Uint8Array | string>(await readFabricDir(EXAMPLE_DIR));
  const text = Buffer.from(files.get(IMPORT)!).toString().replace('  namespace: perf\n', `  namespace: perf\n  annotations:\n    clusterlink.net/session-affinity: ${value}\n`);
  files.set(IMPORT, text);
  return loadFabricFiles(files);
}

describe('import annotations', () => {
  it('session affinity ClientIP reaches the model; the default is None', async () => {
    const r = await withAnnotation('ClientIP');
    expect(r.ok).toBe(true);
    const east = r.ok ? r.fabric.peers.find((p) => p.name === 'east')! : null;
    expect(east?.imports.find((i) => i.name === 'iperf3')?.sessionAffinity).toBe('ClientIP');
    expect(east?.imports.find((i) => i.name === 'http')?.sessionAffinity).toBe('None');
  });

  it('an unknown value is refused at the annotation, with the values to use', async () => {
    const r = await withAnnotation('Sticky');
    expect(r.ok).toBe(false);
    const e = r.ok ? null : r.errors[0]!;
    expect(e).toMatchObject({ file: IMPORT, code: 'bad-annotation' });
    const lines = Buffer.from((await readFabricDir(EXAMPLE_DIR)).get(IMPORT)!).toString().split('\n');
    expect(e!.line).toBe(lines.indexOf('  namespace: perf') + 3);
    expect(e!.hint).toMatch(/ClientIP/);
  });
});
