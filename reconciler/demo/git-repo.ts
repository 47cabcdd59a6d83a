// A fabric repository driven with the git CLI, as a platform team would: a bare repository
// served by the Git server, and a working copy where changes are committed and pushed. Used by
// the demo and the tests. Identity and settings are passed per command (never global config).
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export interface FabricRepo {
  bareDir: string;
  workDir: string;
  branch: string;
  /** Writes (content) or deletes (null) files, commits, pushes; resolves with the new commit SHA. */
  commit(changes: ReadonlyMap<string, Uint8Array | string | null>, message: string, opts?: { sign?: SshSigner }): Promise<string>;
  /** Rewrites history: resets to `ref` (e.g. HEAD~1), commits `changes` and force-pushes. */
  rewrite(ref: string, changes: ReadonlyMap<string, Uint8Array | string | null>, message: string): Promise<string>;
  head(): Promise<string>;
  git(...args: string[]): Promise<string>;
}

/** Signs commits with an SSH key (git's gpg.format=ssh); `keyFile` is the private key path. */
export interface SshSigner {
  keyFile: string;
}

const IDENTITY = ['-c', 'user.name=clgo demo', '-c', 'user.email=demo@clusterlink-gitops.invalid', '-c', 'commit.gpgsign=false', '-c', 'init.defaultBranch=main'];

async function git(cwd: string, args: string[], extra: string[] = []): Promise<string> {
  const { stdout } = await exec('git', [...IDENTITY, ...extra, ...args], { cwd, env: { ...process.env, GIT_TERMINAL_PROMPT: '0' }, maxBuffer: 64 * 1024 * 1024 });
  return stdout.trim();
}

async function writeChanges(workDir: string, changes: ReadonlyMap<string, Uint8Array | string | null>): Promise<void> {
  for (const [path, content] of changes) {
    const full = join(workDir, path);
    if (content === null) await rm(full, { force: true });
    else {
      await mkdir(dirname(full), { recursive: true });
      await writeFile(full, content);
    }
  }
}

/** Creates `<root>/<name>.git` holding `files` as its first commit on `branch`, and a working copy. */
export async function createFabricRepo(opts: { root: string; name: string; files: ReadonlyMap<string, Uint8Array | string>; branch?: string; message?: string }): Promise<FabricRepo> {
  const branch = opts.branch ?? 'main';
  const bareDir = join(opts.root, `${opts.name}.git`);
  const workDir = join(opts.root, `${opts.name}.work`);
  await mkdir(bareDir, { recursive: true });
  await git(bareDir, ['init', '--bare', '--quiet', '--initial-branch', branch]);
  await mkdir(workDir, { recursive: true });
  await git(workDir, ['init', '--quiet', '--initial-branch', branch]);
  await git(workDir, ['remote', 'add', 'origin', bareDir]);
  await writeChanges(workDir, opts.files);
  await git(workDir, ['add', '-A']);
  await git(workDir, ['commit', '--quiet', '-m', opts.message ?? 'fabric: initial import']);
  await git(workDir, ['push', '--quiet', 'origin', branch]);

  const head = (): Promise<string> => git(workDir, ['rev-parse', 'HEAD']);
  return {
    bareDir,
    workDir,
    branch,
    head,
    git: (...args) => git(workDir, args),
    async commit(changes, message, o = {}) {
      await writeChanges(workDir, changes);
      await git(workDir, ['add', '-A']);
      const sign = o.sign ? ['-c', 'gpg.format=ssh', '-c', `user.signingkey=${o.sign.keyFile}`] : [];
      await git(workDir, ['commit', '--quiet', '--allow-empty', ...(o.sign ? ['-S'] : []), '-m', message], sign);
      await git(workDir, ['push', '--quiet', 'origin', branch]);
      return head();
    },
    async rewrite(ref, changes, message) {
      await git(workDir, ['reset', '--quiet', '--hard', ref]);
      await writeChanges(workDir, changes);
      await git(workDir, ['add', '-A']);
      await git(workDir, ['commit', '--quiet', '--allow-empty', '-m', message]);
      await git(workDir, ['push', '--quiet', '--force', 'origin', branch]);
      return head();
    },
  };
}
