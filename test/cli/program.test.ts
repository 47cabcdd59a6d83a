// The program as a user meets it: version, the list of commands, suggestions for a typo, and a
// command's own help, with only the needed command modules loaded (reconciler/cli/commands/index.ts).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runClgo } from '../fixtures/cli.ts';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

describe('clgo program', () => {
  it('--version prints the package version', async () => {
    const r = await runClgo('--version');
    expect(r).toMatchObject({ code: 0, out: `${pkg.version}\n` });
  });

  it('--help lists every command', async () => {
    const r = await runClgo('--help');
    expect(r.code).toBe(0);
    for (const name of ['validate', 'plan', 'policy', 'explain', 'run', 'dataplane', 'status', 'demo', 'create', 'sign', 'rotate']) expect(r.out).toMatch(new RegExp(`^  ${name}\\b`, 'm'));
  });

  it('a mistyped command gets a suggestion and exit code 2', async () => {
    const r = await runClgo('valdate', 'fabric-example');
    expect(r.code).toBe(2);
    expect(r.err).toContain("Did you mean validate?");
  });

  it("a command's help shows its options", async () => {
    const r = await runClgo('validate', '--help');
    expect(r.code).toBe(0);
    expect(r.out).toContain('--format <format>');
    expect(r.out).toContain('--strict');
  });
});
