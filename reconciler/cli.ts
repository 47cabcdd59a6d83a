// The `clgo` command: parses flags (commander) and dispatches to subcommands, which own no logic
// beyond calling the modules that do the work.
import { Command, CommanderError } from 'commander';
import { modulesFor } from './cli/commands/index.ts';
import { UsageError, type CliContext } from './cli/context.ts';
import { packageVersion } from './package-root.ts';

/** The program with the subcommands `argv` needs registered (see modulesFor: only the one being run is loaded). */
export async function buildProgram(ctx: CliContext, argv: readonly string[]): Promise<Command> {
  const program = new Command('clgo')
    .description('clusterlink-gitops: multi-cluster service connectivity driven from a Git repository')
    .version(packageVersion())
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.stdout.write(s),
      writeErr: (s) => ctx.stderr.write(s),
    });
  const modules = await Promise.all(modulesFor(argv.slice(2)).map((m) => m.load()));
  for (const { register } of modules) register(program, ctx);
  return program;
}

/** Runs `clgo` with process-style argv and returns the exit code. */
export async function main(
  argv: string[],
  io: { stdout?: NodeJS.WritableStream; stderr?: NodeJS.WritableStream } = {},
): Promise<number> {
  let exitCode = 0;
  const ctx: CliContext = {
    setExitCode: (code) => {
      exitCode = code;
    },
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
  };
  const program = await buildProgram(ctx, argv);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      return 2;
    }
    if (err instanceof UsageError) {
      ctx.stderr.write(`clgo: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  return exitCode;
}
