// `npm run build` (also run by `npm pack` through prepack): compiles the sources into dist/.
// dist/ is replaced only when the compiler succeeds, and dist/BUILT records when the compiler
// started reading the sources: bin/clgo.mjs runs dist/ only while no source is newer than that.
import { spawnSync } from 'node:child_process';
import { existsSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const next = join(root, 'dist.next');
const startedAt = new Date();
rmSync(next, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const result = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', next], { stdio: 'inherit' });
if (result.status !== 0) {
  rmSync(next, { recursive: true, force: true });
  console.error('build failed: dist/ left as it was');
  process.exit(result.status ?? 1);
}
const stamp = join(next, 'BUILT');
writeFileSync(stamp, `${startedAt.toISOString()}\n`);
utimesSync(stamp, startedAt, startedAt);
const old = join(root, 'dist.old');
rmSync(old, { recursive: true, force: true });
if (existsSync(join(root, 'dist'))) renameSync(join(root, 'dist'), old);
renameSync(next, join(root, 'dist'));
rmSync(old, { recursive: true, force: true });
