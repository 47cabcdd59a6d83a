import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import type { CliContext } from '../context.ts';
import { commands, modulesFor } from './index.ts';

const ctx: CliContext = { setExitCode: () => undefined, stdout: process.stdout, stderr: process.stderr };

describe('command modules', () => {
  it('each module registers exactly the top-level commands listed for it', async () => {
    for (const entry of commands) {
      const program = new Command('clgo');
      (await entry.load()).register(program, ctx);
      expect(program.commands.map((c) => c.name()).sort()).toEqual([...entry.names].sort());
    }
  });

  it('loads only the module of the command being run', () => {
    const owner = (name: string) => commands.filter((c) => c.names.includes(name));
    expect(modulesFor(['validate', 'fabric-example'])).toEqual(owner('validate'));
    expect(modulesFor(['sign', 'x.csr', '--help'])).toEqual(owner('sign'));
    expect(modulesFor(['--version'])).toEqual([]);
    expect(modulesFor(['-V'])).toEqual([]);
  });

  it('loads every module when the whole list is printed: help, no command, a mistyped command', () => {
    expect(modulesFor(['--help'])).toEqual(commands);
    expect(modulesFor([])).toEqual(commands);
    expect(modulesFor(['help'])).toEqual(commands);
    expect(modulesFor(['valdate'])).toEqual(commands);
  });
});
