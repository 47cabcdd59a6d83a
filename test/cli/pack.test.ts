// What `npm pack` produces installs globally with production dependencies only and runs: the
// tarball is built from a copy of the sources (prepack compiles dist/ there, not in this
// checkout), installed into a temporary prefix, and its `clgo` validates the example fabric from
// outside the repository. npm takes the dependencies from its cache (npm ci filled it); package
// metadata the cache lacks comes from the registry (--prefer-offline).
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const exec = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
// What the build reads: the sources, the build script and the package description.
const BUILD_INPUTS = ['package.json', 'package-lock.json', 'tsconfig.json', 'README.md', 'bin', 'scripts', 'schema', 'protocol', 'reconciler', 'dataplane', 'fabric-example'];

let dir: string;
let prefix: string;
let installed: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'clgo-pack-'));
  const src = join(dir, 'src');
  for (const entry of BUILD_INPUTS) cpSync(join(ROOT, entry), join(src, entry), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'));
  const { stdout } = await exec('npm', ['pack', '--pack-destination', dir, '--silent'], { cwd: src, timeout: 120_000 });
  const tarball = join(dir, stdout.trim().split('\n').at(-1)!);
  prefix = join(dir, 'prefix');
  await exec('npm', ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: dir, timeout: 240_000 });
  installed = join(prefix, 'lib', 'node_modules', 'clusterlink-gitops');
}, 360_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the npm package', () => {
  it('installs the compiled program and production dependencies only', () => {
    expect(existsSync(join(installed, 'dist', 'reconciler', 'cli.js'))).toBe(true);
    expect(existsSync(join(installed, 'reconciler'))).toBe(false);
    const deps = readdirSync(join(installed, 'node_modules'));
    expect(deps).toContain('commander');
    for (const dev of ['tsx', 'typescript', 'vitest', 'esbuild', 'eslint']) expect(deps).not.toContain(dev);
  });

  it('clgo validate runs from the installed package, outside the repository', async () => {
    const clgo = join(prefix, 'bin', 'clgo');
    const ok = await exec(clgo, ['validate', join(ROOT, 'fabric-example')], { cwd: dir });
    expect(ok.stdout).toMatch(/^valid: fabric example, 3 peer\(s\), 3 export\(s\), 3 import\(s\), 8 policies$/m);
    const version = await exec(clgo, ['--version'], { cwd: dir });
    expect(version.stdout.trim()).toBe((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
    // A broken fabric: exit 1 and the located error, as from the sources.
    const broken = join(dir, 'broken');
    cpSync(join(ROOT, 'fabric-example'), broken, { recursive: true });
    rmSync(join(broken, 'peers', 'west', 'peer.yaml'));
    const failed = await exec(clgo, ['validate', broken], { cwd: dir }).then(
      () => null,
      (err: { code: number; stdout: string }) => err,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stdout).toMatch(/^broken\/peers\/west\/.*:\d+:\d+: error\[/m);
  });
});
