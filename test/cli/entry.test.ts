// bin/clgo.mjs picks what to run: dist/ when it is a complete build no older than any source
// file (or when there are no sources: an installed package), the sources through tsx otherwise.
// Checked on a scratch layout whose two programs say which one ran.
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';

const exec = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const program = (which: string) => `export async function main() { process.stdout.write('${which}\\n'); return 0; }\n`;
let dir = '';

function layout(opts: { dist: boolean; sources: boolean }): string {
  dir = mkdtempSync(join(tmpdir(), 'clgo-entry-'));
  cpSync(join(ROOT, 'bin', 'clgo.mjs'), join(dir, 'bin', 'clgo.mjs'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
  if (opts.sources) {
    mkdirSync(join(dir, 'reconciler', 'cli'), { recursive: true });
    writeFileSync(join(dir, 'reconciler', 'cli.ts'), program('sources'));
    writeFileSync(join(dir, 'reconciler', 'cli', 'context.ts'), 'export const x: number = 1;\n');
  }
  if (opts.dist) {
    mkdirSync(join(dir, 'dist', 'reconciler'), { recursive: true });
    writeFileSync(join(dir, 'dist', 'reconciler', 'cli.js'), program('dist'));
    writeFileSync(join(dir, 'dist', 'BUILT'), '');
  }
  return dir;
}

/** Sets a file's modification time `seconds` from now. */
const age = (path: string, seconds: number) => utimesSync(path, new Date(Date.now() + seconds * 1000), new Date(Date.now() + seconds * 1000));
const clgo = async (root: string) => (await exec(process.execPath, [join(root, 'bin', 'clgo.mjs'), '--version'], { cwd: root })).stdout.trim();

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('bin/clgo.mjs', () => {
  it('runs dist/ when it was built after every source file was last changed', async () => {
    const root = layout({ dist: true, sources: true });
    age(join(root, 'reconciler', 'cli.ts'), -60);
    age(join(root, 'reconciler', 'cli', 'context.ts'), -60);
    expect(await clgo(root)).toBe('dist');
  });

  it('runs the sources when one of them, however deep, changed after the build', async () => {
    const root = layout({ dist: true, sources: true });
    age(join(root, 'reconciler', 'cli.ts'), -60);
    age(join(root, 'dist', 'BUILT'), -30);
    expect(await clgo(root)).toBe('sources');
  });

  it('ignores changed tests (they are not built)', async () => {
    const root = layout({ dist: true, sources: true });
    age(join(root, 'reconciler', 'cli.ts'), -60);
    age(join(root, 'reconciler', 'cli', 'context.ts'), -60);
    writeFileSync(join(root, 'reconciler', 'cli', 'context.test.ts'), '');
    age(join(root, 'reconciler', 'cli', 'context.test.ts'), 30);
    expect(await clgo(root)).toBe('dist');
  });

  it('runs the sources without a complete build (a fresh clone; a build that failed half way has no BUILT)', async () => {
    const root = layout({ dist: false, sources: true });
    expect(await clgo(root)).toBe('sources');
    mkdirSync(join(root, 'dist', 'reconciler'), { recursive: true });
    writeFileSync(join(root, 'dist', 'reconciler', 'cli.js'), program('dist'));
    expect(await clgo(root)).toBe('sources');
  });

  it('runs dist/ in an installed package, which has no sources', async () => {
    const root = layout({ dist: true, sources: false });
    expect(await clgo(root)).toBe('dist');
  });
});
