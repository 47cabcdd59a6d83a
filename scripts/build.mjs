// `npm run build` (also run by `npm pack` through prepack): bundles the sources into dist/ with
// esbuild. Why a bundle and not tsc's one-file-per-module output: `clgo validate` then loaded
// ~300 modules (213 for the x509 stack alone) and Node's module loader (resolution, the CJS
// export lexer, one compile per file) was most of its start-up; a bundle split per command
// (dynamic imports become chunks, see reconciler/cli/commands/index.ts) loads a few files.
// Types are checked by `npm run typecheck`, not here.
// dist/ is replaced only when the build succeeds, and dist/BUILT records when it started reading
// the sources: bin/clgo.mjs runs dist/ only while no source is newer than that.
import { build } from 'esbuild';
import { existsSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const next = join(root, 'dist.next');
const startedAt = new Date();
rmSync(next, { recursive: true, force: true });
try {
  await build({
    absWorkingDir: root,
    entryPoints: ['reconciler/cli.ts', 'dataplane/heap-tuning.ts'],
    outbase: '.',
    outdir: next,
    chunkNames: 'chunks/[name]-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // ESM builds where a package has one: esbuild can then drop what is not imported.
    mainFields: ['module', 'main'],
    minifySyntax: true,
    // Stack traces map back to the sources with NODE_OPTIONS=--enable-source-maps.
    sourcemap: 'linked',
    sourcesContent: false,
    logLevel: 'warning',
    // Loaded from node_modules at run time (they stay dependencies): grpc-js reads its own .proto
    // files relative to __dirname (channelz, ORCA), which a bundle would move; the Kubernetes
    // client is large and needed only by `run --kube`.
    external: ['@grpc/grpc-js', '@grpc/grpc-js-xds', '@kubernetes/client-node'],
    // CommonJS packages inside an ESM bundle call require() for Node's built-ins.
    banner: { js: "import { createRequire as __clgoCreateRequire } from 'node:module'; const require = __clgoCreateRequire(import.meta.url);" },
  });
} catch (err) {
  rmSync(next, { recursive: true, force: true });
  console.error(`build failed: dist/ left as it was (${err.message.split('\n')[0]})`);
  process.exit(1);
}
const stamp = join(next, 'BUILT');
writeFileSync(stamp, `${startedAt.toISOString()}\n`);
utimesSync(stamp, startedAt, startedAt);
const old = join(root, 'dist.old');
rmSync(old, { recursive: true, force: true });
if (existsSync(join(root, 'dist'))) renameSync(join(root, 'dist'), old);
renameSync(next, join(root, 'dist'));
rmSync(old, { recursive: true, force: true });
