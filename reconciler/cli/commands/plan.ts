// `clgo plan --base REV --head REV`: the pull-request comment. Reads both trees straight from the
// repository's object store (no checkout), validates the head, and prints per peer what changes
// and which flows become allowed or denied. Exit 0 when the head is valid, 1 when it is not.
import { Option, type Command } from 'commander';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import git from 'isomorphic-git';
import { planFabrics, planToMarkdown } from '../../plan/plan.ts';
import { readCommitTree, TreeError } from '../../source/git-tree.ts';
import { EXIT, UsageError, type CliContext, type RegisterCommand } from '../context.ts';

const exec = promisify(execFile);

/** Finds the git directory of `repo` (a work tree with .git, or a bare repository). */
function gitDirOf(repo: string): string {
  const dotGit = join(repo, '.git');
  if (fs.existsSync(dotGit) && fs.statSync(dotGit).isDirectory()) return dotGit;
  if (fs.existsSync(join(repo, 'HEAD')) && fs.existsSync(join(repo, 'objects'))) return repo;
  throw new UsageError(`${repo} is not a Git repository (no .git directory)`);
}

/** Resolves a revision: full SHAs, branches, tags, remote refs; other syntax (HEAD~1) via the git CLI when present. */
async function resolveRevision(gitdir: string, rev: string): Promise<string> {
  if (/^[0-9a-f]{40}$/.test(rev)) return rev;
  try {
    return await git.resolveRef({ fs, gitdir, ref: rev });
  } catch {
    try {
      return await git.expandOid({ fs, gitdir, oid: rev });
    } catch {
      try {
        const { stdout } = await exec('git', ['--git-dir', gitdir, 'rev-parse', '--verify', `${rev}^{commit}`]);
        return stdout.trim();
      } catch {
        throw new UsageError(`cannot resolve revision "${rev}" in ${gitdir} (fetch it first, e.g. git fetch origin ${rev})`);
      }
    }
  }
}

async function treeAt(gitdir: string, rev: string): Promise<{ revision: string; files: Map<string, Uint8Array> }> {
  const revision = await resolveRevision(gitdir, rev);
  try {
    return { revision, files: await readCommitTree(gitdir, revision) };
  } catch (err) {
    if (err instanceof TreeError) throw new UsageError(`${rev} (${revision.slice(0, 12)}) cannot be a fabric: ${err.message}`);
    throw new UsageError(`cannot read ${rev} (${revision.slice(0, 12)}): ${(err as Error).message}`);
  }
}

export const register: RegisterCommand = (program: Command, ctx: CliContext) => {
  program
    .command('plan')
    .description('show what a change of the fabric repository does, per peer (for pull requests)')
    .requiredOption('--base <rev>', 'the revision the change starts from (e.g. the PR base SHA)')
    .requiredOption('--head <rev>', 'the proposed revision (e.g. the PR head SHA)')
    .option('--repo <dir>', 'repository (work tree or bare)', '.')
    .option('--path <dir>', 'fabric directory inside the repository, if not its root', '')
    .addOption(new Option('--format <format>', 'output format').choices(['markdown', 'json']).default('markdown'))
    .action(async (opts: { base: string; head: string; repo: string; path: string; format: 'markdown' | 'json' }) => {
      const gitdir = gitDirOf(resolve(opts.repo));
      const sub = opts.path.replace(/^\/+|\/+$/g, '');
      const scope = (files: Map<string, Uint8Array>): Map<string, Uint8Array> =>
        sub ? new Map([...files].filter(([p]) => p.startsWith(`${sub}/`)).map(([p, b]) => [p.slice(sub.length + 1), b])) : files;
      const base = await treeAt(gitdir, opts.base);
      const head = await treeAt(gitdir, opts.head);
      const plan = planFabrics({ baseRevision: base.revision, headRevision: head.revision, base: scope(base.files), head: scope(head.files) });
      ctx.stdout.write(opts.format === 'json' ? `${JSON.stringify(plan, null, 2)}\n` : planToMarkdown(plan));
      ctx.setExitCode(plan.head.valid ? EXIT.ok : EXIT.invalid);
    });
};
