// Every `clgo` subcommand is listed here: the top-level command names a module registers, and how
// to load that module. Only the module of the command being run is imported (`clgo validate`
// never loads the gRPC, Kubernetes or OpenPGP libraries; `clgo --version` loads no command at
// all), so a command module may import what its command needs at the top. A new command: a module
// exporting `register` (see validate.ts) and one line here.
import type { RegisterCommand } from '../context.ts';

export interface CommandModule {
  /** The top-level command names the module's `register` adds (checked by index.test.ts). */
  names: readonly string[];
  load: () => Promise<{ register: RegisterCommand }>;
}

export const commands: readonly CommandModule[] = [
  { names: ['dataplane'], load: () => import('./dataplane.ts') },
  { names: ['demo'], load: () => import('./demo.ts') },
  { names: ['migrate'], load: () => import('./migrate.ts') },
  { names: ['create', 'sign', 'rotate'], load: () => import('./pki.ts') },
  { names: ['plan'], load: () => import('./plan.ts') },
  { names: ['policy', 'explain'], load: () => import('./policy.ts') },
  { names: ['run'], load: () => import('./run.ts') },
  { names: ['status'], load: () => import('./status.ts') },
  { names: ['validate'], load: () => import('./validate.ts') },
];

/**
 * The modules to register for one invocation: the one owning the command in `args` (process
 * argv without node and script); none for `clgo --version`; every one when help or a
 * suggestion for a mistyped command has to list them all.
 */
export function modulesFor(args: readonly string[]): readonly CommandModule[] {
  // The program has no options taking a value, so the first operand is the command.
  const name = args.find((a) => !a.startsWith('-'));
  if (name === undefined) return args.some((a) => a === '-V' || a === '--version') && !args.some((a) => a === '-h' || a === '--help') ? [] : commands;
  const owner = commands.find((c) => c.names.includes(name));
  return owner ? [owner] : commands;
}
