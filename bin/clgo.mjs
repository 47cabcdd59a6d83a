#!/usr/bin/env node
// Entry point of `clgo`. Runs the compiled JavaScript in dist/ (what `npm pack` ships; `npm run
// build` makes it). In a source checkout where dist/ is missing or older than a source file, runs
// the TypeScript sources through tsx instead (a development dependency), so an edit takes effect
// without a build.
import { existsSync, readdirSync, statSync } from 'node:fs';

const root = new URL('../', import.meta.url);
const SOURCE_DIRS = ['schema', 'protocol', 'reconciler', 'dataplane'];

/** Whether a source file under `dir` (a URL ending in /) was modified after `builtAt`. */
function newerSource(dir, builtAt) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) {
      if (newerSource(new URL(`${entry.name}/`, dir), builtAt)) return true;
    } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') && statSync(new URL(entry.name, dir)).mtimeMs > builtAt) {
      return true;
    }
  }
  return false;
}

/** Whether dist/ holds a complete build at least as new as every source file (no sources: an installed package). */
function distIsCurrent() {
  const built = new URL('dist/BUILT', root);
  if (!existsSync(built) || !existsSync(new URL('dist/reconciler/cli.js', root))) return false;
  const builtAt = statSync(built).mtimeMs;
  return SOURCE_DIRS.every((dir) => !existsSync(new URL(`${dir}/`, root)) || !newerSource(new URL(`${dir}/`, root), builtAt));
}

const compiled = distIsCurrent();
if (!compiled) {
  if (existsSync(new URL('dist/BUILT', root)) && process.stderr.isTTY) process.stderr.write('clgo: dist/ is older than the sources, running them through tsx (npm run build for a fast start)\n');
  const { register } = await import('tsx/esm/api');
  register();
}
const from = (path) => new URL(compiled ? `dist/${path}.js` : `${path}.ts`, root).href;

// The subcommands that host the Node data plane (`run`, `dataplane`) get its adaptive V8 heap tuning, set at
// run time (no re-exec; see dataplane/heap-tuning.ts). The program has no global options, so the
// subcommand is the first argument. CLGO_HEAP_TUNING=off leaves V8's heuristics alone.
const sub = process.argv[2];
if ((sub === 'run' || sub === 'dataplane') && process.env.CLGO_HEAP_TUNING !== 'off') (await import(from('dataplane/heap-tuning'))).startRelayHeapTuning();
const { main } = await import(from('reconciler/cli'));
process.exitCode = await main(process.argv);
