#!/usr/bin/env node
// Entry point for `npx clgo`: TypeScript sources run through tsx's ESM loader, so no build step is needed.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../reconciler/cli.ts');
process.exitCode = await main(process.argv);
