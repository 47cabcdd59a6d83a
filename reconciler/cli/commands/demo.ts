// `clgo demo` (what `npm start` runs): the example fabric, live, on this machine. `--once` runs
// every step non-interactively and exits 0 only if each behaved as expected (CI runs it).
import type { Command } from 'commander';
import { EXIT, untilSignal, UsageError, type CliContext, type RegisterCommand } from '../context.ts';
import { runDemo } from '../../demo/demo.ts';

export const register: RegisterCommand = (program: Command, ctx: CliContext) => {
  program
    .command('demo')
    .description('run the example fabric locally: Git server, three peers, traffic, policy changes (no cluster needed)')
    .option('--once', 'run the steps, print the result and exit (0 only if every step behaved as expected)')
    .option('--status-port <port>', 'status page port on 127.0.0.1', '8080')
    .action(async (opts: { once?: boolean; statusPort: string }) => {
      const port = Number(opts.statusPort);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--status-port: not a port: ${opts.statusPort}`);
      const stdout = ctx.stdout as NodeJS.WritableStream & { isTTY?: boolean };
      const result = await runDemo({
        once: opts.once === true,
        out: ctx.stdout,
        color: stdout.isTTY === true && !process.env.NO_COLOR,
        statusPort: port,
        untilStopped: untilSignal,
      });
      ctx.setExitCode(result.ok ? EXIT.ok : EXIT.invalid);
    });
};
