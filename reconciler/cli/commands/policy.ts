// `clgo policy eval` (one request against policy files) and `clgo explain` (the whole path of one
// would-be connection in a fabric). Exit 0 allow, 3 deny, 1 invalid input files, 2 usage.
import { Option, type Command } from 'commander';
import { stat } from 'node:fs/promises';
import { readFile } from 'node:fs/promises';
import { basename, relative, resolve } from 'node:path';
import { loadPolicyFiles } from '../../../schema/load.ts';
import { FabricReadError, readFabricDir } from '../../../schema/read-dir.ts';
import { compilePolicies, decideAttributes, parseAttributeList, parseClientSpec } from '../../policy/index.ts';
import { explainPath, explanationToText } from '../../policy/explain-path.ts';
import { EXIT, UsageError, type CliContext, type RegisterCommand } from '../context.ts';
// validate.ts (certificate checks: the x509 stack) is imported where a whole fabric is checked or
// diagnostics are printed, so that `clgo policy eval` on valid files does not load it.
type Validate = typeof import('./validate.ts');
const validate = (): Promise<Validate> => import('./validate.ts');

type Format = 'text' | 'json';

/** Policy YAML from files and directories (recursively), keyed by a path relative to the working directory. */
async function readPolicyPaths(paths: string[]): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  const display = (p: string): string => relative(process.cwd(), resolve(p)).split('\\').join('/') || basename(resolve(p));
  for (const p of paths) {
    const st = await stat(p).catch(() => null);
    if (!st) throw new UsageError(`${p}: no such file or directory`);
    if (st.isDirectory()) {
      let files: Map<string, Uint8Array>;
      try {
        files = await readFabricDir(p);
      } catch (err) {
        throw new UsageError(err instanceof FabricReadError ? err.message : `cannot read ${p}: ${(err as Error).message}`);
      }
      for (const [rel, bytes] of files) if (/\.ya?ml$/.test(rel)) out.set(`${display(p)}/${rel}`, bytes);
    } else {
      out.set(display(p), await readFile(p));
    }
  }
  return out;
}

function attributes(flag: string, text: string): Record<string, string> {
  const parsed = parseAttributeList(text);
  if (!parsed.ok) throw new UsageError(`${flag}: ${parsed.error} (expected key=value[,key=value...])`);
  return parsed.attributes;
}

export const register: RegisterCommand = (program: Command, ctx: CliContext) => {
  const policy = program.command('policy').description('evaluate access policies');
  policy
    .command('eval')
    .description('evaluate one request against AccessPolicy/PrivilegedAccessPolicy files (exit 0 allow, 3 deny)')
    .requiredOption('--policies <paths...>', 'policy files or directories')
    .addOption(new Option('--direction <direction>', 'egress (importing peer) or ingress (exporting peer)').choices(['egress', 'ingress']).makeOptionMandatory())
    .requiredOption('--namespace <ns>', "namespace whose user policies apply: the import's on egress, the export's on ingress")
    .option('--src <attrs>', 'source attributes, e.g. client.clusterlink.net/namespace=web (empty: an unknown client)', '')
    .option('--dst <attrs>', 'destination attributes, e.g. export.clusterlink.net/name=http', '')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (opts: { policies: string[]; direction: 'egress' | 'ingress'; namespace: string; src: string; dst: string; format: Format }) => {
      const src = attributes('--src', opts.src);
      const dst = attributes('--dst', opts.dst);
      const files = await readPolicyPaths(opts.policies);
      const loaded = loadPolicyFiles(files);
      if (!loaded.ok) {
        ctx.stderr.write((await validate()).formatDiagnostics({ ok: false, errors: loaded.errors, warnings: loaded.warnings, fabric: null }, 'text', ''));
        ctx.setExitCode(EXIT.invalid);
        return;
      }
      const d = decideAttributes(compilePolicies(loaded.policies), opts.namespace, src, dst, `${opts.direction} request`, 'the given policies');
      if (opts.format === 'json') {
        ctx.stdout.write(`${JSON.stringify({ decision: d.allowed ? 'allow' : 'deny', tier: d.tier, policy: d.policy, location: d.location, matched: d.matched })}\n`);
      } else {
        ctx.stdout.write(`${d.allowed ? 'allow' : 'deny'}: ${d.message}${d.matched ? `\n  matched ${d.matched}` : ''}\n`);
      }
      ctx.setExitCode(d.allowed ? EXIT.ok : EXIT.denied);
    });

  program
    .command('explain')
    .description('why a connection through an import would be allowed or refused: egress, each exporter, ingress (exit 0 allowed, 3 refused)')
    .requiredOption('--fabric <dir>', 'fabric repository root')
    .requiredOption('--from <peer>', 'the importing peer')
    .requiredOption('--import <namespace/name>', 'the import the client connects to')
    .option('--client <attrs>', 'the client: namespace=..,serviceAccount=..,labels.<k>=.. (empty: unknown client)', '')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (opts: { fabric: string; from: string; import: string; client: string; format: Format }) => {
      const client = parseClientSpec(opts.client);
      if (!client.ok) throw new UsageError(`--client: ${client.error}`);
      if (!/^[^/]+\/[^/]+$/.test(opts.import)) throw new UsageError(`--import must be <namespace>/<name>, got "${opts.import}"`);
      let files: Map<string, Uint8Array>;
      try {
        files = await readFabricDir(opts.fabric);
      } catch (err) {
        throw new UsageError(err instanceof FabricReadError ? err.message : `cannot read ${opts.fabric}: ${(err as Error).message}`);
      }
      const { formatDiagnostics, validateFiles } = await validate();
      const report = validateFiles(files);
      if (!report.ok || !report.fabric) {
        ctx.stderr.write(formatDiagnostics(report, 'text', relative(process.cwd(), resolve(opts.fabric))));
        ctx.stderr.write('the fabric is invalid: fix the errors above first (clgo validate)\n');
        ctx.setExitCode(EXIT.invalid);
        return;
      }
      const e = explainPath(report.fabric, opts.from, opts.import, client.client);
      if ('error' in e) {
        throw new UsageError(e.error === 'no-such-peer' ? `no peer "${opts.from}" in the fabric (peers: ${e.peers.join(', ')})` : `peer ${opts.from} has no import ${opts.import} (its imports: ${e.imports.join(', ') || 'none'})`);
      }
      ctx.stdout.write(opts.format === 'json' ? `${JSON.stringify(e, null, 2)}\n` : explanationToText(e));
      ctx.setExitCode(e.allowed ? EXIT.ok : EXIT.denied);
    });
};
