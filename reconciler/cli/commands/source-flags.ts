// Flags that select a Git fabric source, shared by `clgo run` (and anything else that follows a
// repository). Credentials come from a file or the environment, never from a flag value that
// would show in `ps` or shell history.
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { UsageError } from '../context.ts';
import type { GitRef } from '../../source/git-source.ts';
import type { FabricSource } from '../../source/types.ts';

export interface GitFlags {
  git?: string;
  ref?: string;
  cache?: string;
  poll?: string;
  tokenFile?: string;
  allowNonFastForward?: boolean;
}

const env = z.object({
  CLGO_GIT_TOKEN: z.string().min(1).optional(),
  CLGO_GIT_USERNAME: z.string().min(1).optional(),
  CLGO_GIT_PASSWORD: z.string().optional(),
});

export function gitFlags(cmd: Command): Command {
  return cmd
    .option('--git <url>', 'follow a fabric Git repository (http:// or https://)')
    .option('--ref <ref>', 'branch:NAME, tag:NAME or commit:SHA', 'branch:main')
    .option('--cache <dir>', 'persistent object cache (restarts do not re-clone)')
    .option('--poll <duration>', 'poll interval, e.g. 30s, 500ms, 5m', '30s')
    .option('--token-file <file>', 'file holding an access token (or set CLGO_GIT_TOKEN; basic auth: CLGO_GIT_USERNAME/CLGO_GIT_PASSWORD)')
    .option('--allow-non-fast-forward', 'accept history rewrites and rollbacks (refused by default)');
}

export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim());
  if (!m) throw new UsageError(`invalid duration "${text}" (use e.g. 500ms, 30s, 5m)`);
  const n = Number(m[1]);
  return Math.round(n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h']);
}

export function parseRef(text: string): GitRef {
  const m = /^(branch|tag|commit):(.+)$/.exec(text);
  if (!m) throw new UsageError(`invalid --ref "${text}" (use branch:main, tag:v1.2.0 or commit:<40-hex sha>)`);
  const value = m[2]!;
  if (m[1] === 'commit') {
    if (!/^[0-9a-f]{40}$/.test(value)) throw new UsageError('--ref commit: needs a full 40-hex SHA');
    return { commit: value };
  }
  return m[1] === 'tag' ? { tag: value } : { branch: value };
}

export async function createGitSourceFromFlags(flags: GitFlags, logger: Logger): Promise<FabricSource> {
  if (!flags.git) throw new UsageError('--git URL is required');
  let url: URL;
  try {
    url = new URL(flags.git);
  } catch {
    throw new UsageError(`--git: not a URL: ${flags.git}`);
  }
  if (url.username || url.password) throw new UsageError('--git: do not put credentials in the URL; use --token-file or CLGO_GIT_TOKEN');
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError('--git: only http:// and https:// (smart HTTP) are supported');
  const e = env.parse(process.env);
  let token = e.CLGO_GIT_TOKEN;
  if (flags.tokenFile) {
    try {
      token = readFileSync(flags.tokenFile, 'utf8').trim();
    } catch (err) {
      throw new UsageError(`cannot read --token-file ${flags.tokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  const auth = token ? { token } : e.CLGO_GIT_USERNAME ? { username: e.CLGO_GIT_USERNAME, password: e.CLGO_GIT_PASSWORD ?? '' } : undefined;
  const cacheDir = flags.cache ?? join(homedir(), '.cache', 'clusterlink-gitops', url.host.replace(/[^a-zA-Z0-9.-]/g, '_'), url.pathname.replace(/[^a-zA-Z0-9.-]/g, '_'));
  // Loaded here, not at the top: a directory source never needs the Git client and OpenPGP.
  const { createGitSource } = await import('../../source/git-source.ts');
  return createGitSource({
    url: flags.git,
    ref: parseRef(flags.ref ?? 'branch:main'),
    cacheDir,
    pollIntervalMs: parseDuration(flags.poll ?? '30s'),
    ...(auth ? { auth } : {}),
    allowNonFastForward: flags.allowNonFastForward === true,
    logger: logger.child({ component: 'git-source' }),
  });
}
