// `npm run bench [-- NAME...]`: runs every benchmark (or those whose name starts with a given
// NAME), prints a table and writes bench-results.json at the repository root.
import { readdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';
import type { Benchmark, BenchResult } from './harness.ts';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

async function discover(): Promise<Benchmark[]> {
  const files = readdirSync(here).filter((f) => f.endsWith('.bench.ts')).sort();
  const all: Benchmark[] = [];
  for (const file of files) {
    const mod = (await import(pathToFileURL(join(here, file)).href)) as { benchmarks?: Benchmark[] };
    all.push(...(mod.benchmarks ?? []));
  }
  return all;
}

function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 1000) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(3);
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const benches = (await discover()).filter((b) => wanted.length === 0 || wanted.some((w) => b.name.startsWith(w)));
  if (benches.length === 0) {
    console.error(`no benchmark matches ${wanted.join(', ')}`);
    process.exitCode = 2;
    return;
  }
  const results: BenchResult[] = [];
  for (const bench of benches) {
    console.error(`\n# ${bench.name}: ${bench.description}`);
    try {
      const rows = await bench.run();
      for (const r of rows) console.error(`  ${r.name} = ${formatValue(r.value)} ${r.unit} ${r.target ? `(target ${r.target}: ${r.ok ? 'ok' : 'MISSED'})` : ''}`);
      results.push(...rows);
    } catch (err) {
      console.error(`  failed: ${(err as Error).stack ?? String(err)}`);
      results.push({ name: `${bench.name}.error`, value: Number.NaN, unit: '', target: 'runs', ok: false, note: String(err) });
    }
  }
  const widths = [Math.max(4, ...results.map((r) => r.name.length)), 12, 10, Math.max(6, ...results.map((r) => r.target.length))];
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 4)).join(' | ')} |`;
  console.log(line(['name', 'value', 'unit', 'target']) + ' ok |');
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|----|`);
  for (const r of results) console.log(line([r.name, formatValue(r.value), r.unit, r.target]) + ` ${r.ok === null ? '-' : r.ok ? 'yes' : 'NO'} |`);
  writeFileSync(join(root, 'bench-results.json'), JSON.stringify(results, null, 2) + '\n');
  console.error(`\nwrote bench-results.json (${results.length} rows)`);
}

await main();
