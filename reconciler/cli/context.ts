// Shared plumbing for `clgo` subcommands: exit codes and usage errors.
import type { Command } from 'commander';

/** Exit codes shared by every subcommand. */
export const EXIT = {
  ok: 0,
  /** Input was read but is invalid (validate), or a check failed. */
  invalid: 1,
  /** Bad flags, unreadable files, I/O errors. */
  usage: 2,
  /** A policy decision or explanation ended in deny. */
  denied: 3,
} as const;

export interface CliContext {
  /** Set the process exit code for this invocation (the last call wins). */
  setExitCode(code: number): void;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** Thrown for a usage or I/O problem; printed as `clgo: <message>` with exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export type RegisterCommand = (program: Command, ctx: CliContext) => void;

/** Resolves on the first SIGINT or SIGTERM (long-running commands then shut down in order). */
export function untilSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
