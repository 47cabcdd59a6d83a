// Fault: arbitrary damage to valid fabric YAML. 10,000 seeded mutations of the example fabric's
// files go through the validator (schema/load.ts loadFabricFiles), which must never throw and must
// answer either ok, or errors whose file:line points inside the file it was given (1 ≤ line ≤ the
// file's line count, column ≥ 1). Each case validates the mutated file alone (the per-file gates);
// every 50th case validates the whole fabric with it (cross-references, ownership, certificates).
import { afterAll, describe, expect, it } from 'vitest';
import { freshExampleFabric } from '../../reconciler/demo/fresh-fabric.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import { faultTable } from './harness.ts';
import { mutateBytes, mutateText, prng } from './mutate.ts';

const table = faultTable(import.meta.filename);
afterAll(() => table.flush());

const CASES = 10_000;
const SEED = Number(process.env.CLGO_FUZZ_SEED ?? 20251126);

function lineCount(bytes: Uint8Array): number {
  const text = Buffer.from(bytes).toString('utf8');
  // YAML line breaks are \n, \r\n and a lone \r: take the larger count so either numbering fits.
  return Math.max(text.split('\n').length, text.split(/\r\n|\r|\n/).length);
}

describe('fault: random mutations of valid fabric YAML', () => {
  it(`${CASES} seeded mutations: no throw, every error inside its file`, async () => {
    const t0 = performance.now();
    const fresh = await freshExampleFabric();
    const files = new Map([...fresh.files].filter(([p]) => p === 'fabric.yaml' || p.startsWith('peers/')));
    expect(loadFabricFiles(files).ok).toBe(true);
    const paths = [...files.keys()].filter((p) => p.endsWith('.yaml'));
    const rnd = prng(SEED);
    let ok = 0;
    let refused = 0;
    const problems: string[] = [];
    for (let i = 0; i < CASES && problems.length < 5; i++) {
      const path = paths[Math.floor(rnd() * paths.length)]!;
      let bytes: Uint8Array = files.get(path)!;
      for (let k = Math.floor(rnd() * 3) + 1; k > 0; k--) bytes = rnd() < 0.15 ? mutateBytes(bytes, rnd) : Buffer.from(mutateText(Buffer.from(bytes).toString('utf8'), rnd));
      const whole = i % 50 === 0;
      const input = whole ? new Map([...files, [path, bytes]]) : new Map([['fabric.yaml', files.get('fabric.yaml')!], [path, bytes]]);
      let result;
      try {
        result = loadFabricFiles(input);
      } catch (err) {
        problems.push(`case ${i} (seed ${SEED}) ${path}: threw ${(err as Error).stack ?? String(err)}\n--- input ---\n${Buffer.from(bytes).toString('utf8').slice(0, 2000)}`);
        continue;
      }
      if (result.ok) {
        ok++;
        continue;
      }
      refused++;
      if (result.errors.length === 0) problems.push(`case ${i} ${path}: not ok but no errors\n--- input ---\n${Buffer.from(bytes).toString('utf8').slice(0, 2000)}`);
      for (const e of result.errors) {
        const f = input.get(e.file);
        if (!f) {
          // Only a file the fabric lacks may be named without being given (e.g. a peer's peer.yaml).
          if (/missing|has no /.test(e.message) && !input.has(e.file)) continue;
          problems.push(`case ${i} ${path}: error names ${e.file}, not a given file: ${e.message}`);
          continue;
        }
        const n = lineCount(f);
        if (!(Number.isInteger(e.line) && e.line >= 1 && e.line <= n && e.column >= 1)) problems.push(`case ${i} ${path}: ${e.file}:${e.line}:${e.column} outside 1..${n} lines: ${e.message}\n--- input ---\n${Buffer.from(f).toString('utf8').slice(0, 2000)}`);
      }
    }
    const ms = performance.now() - t0;
    expect(problems, problems.join('\n\n')).toEqual([]);
    expect(ok + refused).toBe(CASES);
    expect(refused).toBeGreaterThan(CASES / 2);
    table.add({ case: `fabric YAML fuzz: ${CASES} seeded mutations (seed ${SEED})`, held: `${refused} refused with file:line inside the file, ${ok} still valid; no throw, no refusal without a diagnostic`, recoveryMs: null, recoveryNote: `n/a (${(ms / 1000).toFixed(1)} s for the run)` });
  }, 60_000);
});

// The two bugs the fuzzer found (fixed in schema/load.ts), pinned.
describe('validator bugs found by the fuzzer', () => {
  const fabricYaml = (): Promise<Uint8Array> => freshExampleFabric().then((f) => f.files.get('fabric.yaml')!);
  it('an alias bomb is refused with a diagnostic at its file', async () => {
    const bomb = 'a0: &a0 [x, x, x, x]\n' + Array.from({ length: 6 }, (_, d) => `a${d + 1}: &a${d + 1} [${Array(6).fill(`*a${d}`).join(', ')}]`).join('\n') + '\n';
    const r = loadFabricFiles(new Map<string, Uint8Array | string>([['fabric.yaml', await fabricYaml()], ['peers/east/policies/bomb.yaml', bomb]]));
    expect(r.ok).toBe(false);
    expect(!r.ok && r.errors.some((e) => e.file === 'peers/east/policies/bomb.yaml' && e.code === 'yaml-alias')).toBe(true);
  });
  it('a comment-only fabric.yaml is refused with a diagnostic', () => {
    const r = loadFabricFiles(new Map([['fabric.yaml', '# nothing here\n']]));
    expect(r.ok === false && r.errors.length > 0).toBe(true);
  });
});
