#!/usr/bin/env node
// Entry point for `npx clgo`: TypeScript sources run through tsx's ESM loader, so no build step is needed.
import { register } from 'tsx/esm/api';

register();
// The subcommands that host the Node data plane (`run`, `dataplane`) get its adaptive V8 heap tuning, set at
// run time (no re-exec; see dataplane/heap-tuning.ts). The program has no global options, so the
// subcommand is the first argument. CLGO_HEAP_TUNING=off leaves V8's heuristics alone.
const sub = process.argv[2];
if ((sub === 'run' || sub === 'dataplane') && process.env.CLGO_HEAP_TUNING !== 'off') (await import('../dataplane/heap-tuning.ts')).startRelayHeapTuning();
const { main } = await import('../reconciler/cli.ts');
process.exitCode = await main(process.argv);
