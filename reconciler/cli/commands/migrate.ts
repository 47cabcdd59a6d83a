// `clgo migrate`: reads live ClusterLink installations (one kubeconfig context per cluster) and
// writes their objects into a fabric repository, plus MIGRATION.md: what could not carry over and
// the steps left, checked against `clgo validate` on the result. Exit 0 when every validate error
// is one of the listed steps, 1 when some migrated object needs a look, 2 on usage or API errors.
import { KubeConfig } from '@kubernetes/client-node';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { peerName as peerNameSchema } from '../../../schema/kinds.ts';
import { FabricReadError, readFabricDir } from '../../../schema/read-dir.ts';
import { planMigration, REMOTE_ONLY_MARK, withPeerAttestations, type ClusterSnapshot, type MigrationPlan } from '../../migrate/convert.ts';
import { ClusterReadError, readCluster } from '../../migrate/read.ts';
import { renderReport } from '../../migrate/report.ts';
import { readFabricYaml } from '../../pki/repo.ts';
import { EXIT, UsageError, type RegisterCommand } from '../context.ts';
import { validateFiles } from './validate.ts';

export const REPORT_FILE = 'MIGRATION.md';

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** `--peer <context>=<peer>` pairs. */
function peerMap(pairs: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const pair of pairs) {
    const eq = pair.lastIndexOf('=');
    if (eq <= 0 || eq === pair.length - 1) throw new UsageError(`--peer ${JSON.stringify(pair)}: expected <context>=<peer-name>`);
    map.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return map;
}

/** A directory holding only the peer.yaml an earlier migration wrote for a peer it had not read: a migration of that peer may replace it. */
function isRemoteOnlyStub(dir: string): boolean {
  const entries = readdirSync(dir);
  if (entries.length !== 1 || entries[0] !== 'peer.yaml') return false;
  return readFileSync(join(dir, 'peer.yaml'), 'utf8').split('\n', 1)[0]!.includes(REMOTE_ONLY_MARK);
}

interface MigrateFlags {
  out: string;
  context: string[];
  peer: string[];
  kubeconfig?: string;
  clusterlinkNamespace: string;
  force?: boolean;
  requestTimeout: string;
}

export const register: RegisterCommand = (program, ctx) => {
  program
    .command('migrate')
    .description('read live ClusterLink installations (Peers, Exports, Imports, access policies) through the Kubernetes API and write them into a fabric repository, with MIGRATION.md listing what is left to do')
    .requiredOption('--out <dir>', 'fabric repository to write into; must hold fabric.yaml (`clgo create fabric --name <name> --out <dir>` first)')
    .option('--context <context>', 'kubeconfig context of one ClusterLink cluster (repeat for each cluster; default: the current context)', collect, [])
    .option('--peer <context=peer>', "peer name of a context's cluster, when it cannot be read from ClusterLink's peer certificate (Secret cl-peer) or without reading that Secret (repeatable)", collect, [])
    .option('--kubeconfig <path>', 'kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)')
    .option('--clusterlink-namespace <ns>', "namespace ClusterLink runs in (its Peers, the cl-peer Secret, the cl-controlplane Deployment)", 'clusterlink-system')
    .option('--request-timeout <ms>', 'time-out of each Kubernetes API request', '15000')
    .option('--force', 'replace files already under peers/<peer>/ for the migrated peers')
    .action(async (flags: MigrateFlags) => {
      const fabricPath = join(flags.out, 'fabric.yaml');
      if (!existsSync(fabricPath)) throw new UsageError(`${fabricPath} is missing: create the fabric first (\`clgo create fabric --name <name> --out ${flags.out}\`), then migrate into it`);
      let fabricText: string;
      let fabricName: string;
      try {
        fabricText = readFileSync(fabricPath, 'utf8');
        fabricName = readFabricYaml(fabricText).name;
      } catch (err) {
        throw new UsageError(`${fabricPath}: ${(err as Error).message}`);
      }
      const timeout = Number(flags.requestTimeout);
      if (!Number.isInteger(timeout) || timeout < 100 || timeout > 600_000) throw new UsageError(`--request-timeout must be milliseconds in 100..600000, got ${flags.requestTimeout}`);

      const kubeConfig = new KubeConfig();
      try {
        if (flags.kubeconfig) kubeConfig.loadFromFile(flags.kubeconfig);
        else kubeConfig.loadFromDefault();
      } catch (err) {
        throw new UsageError(`cannot load the kubeconfig${flags.kubeconfig ? ` ${flags.kubeconfig}` : ''}: ${(err as Error).message}`);
      }
      const contexts = flags.context.length > 0 ? [...new Set(flags.context)] : [kubeConfig.getCurrentContext()].filter((c) => c !== '');
      if (contexts.length === 0) throw new UsageError('no --context given and the kubeconfig has no current context');
      const names = peerMap(flags.peer);
      for (const c of names.keys()) if (!contexts.includes(c)) throw new UsageError(`--peer ${c}=${names.get(c)}: context ${c} is not among the contexts being migrated (${contexts.join(', ')})`);

      const snapshots: ClusterSnapshot[] = [];
      for (const context of contexts) {
        try {
          snapshots.push(await readCluster({ kubeConfig, context, peerName: names.get(context), namespace: flags.clusterlinkNamespace, requestTimeoutMs: timeout }));
        } catch (err) {
          if (err instanceof ClusterReadError) throw new UsageError(err.message);
          throw err;
        }
        const s = snapshots[snapshots.length - 1]!;
        const name = peerNameSchema.safeParse(s.peer.name);
        if (!name.success) throw new UsageError(`context ${context}: peer name ${JSON.stringify(s.peer.name)} (from ${s.peer.source}) cannot name a fabric peer: ${name.error.issues[0]?.message ?? ''} — pass --peer ${context}=<peer-name>`);
        ctx.stderr.write(`read context ${context}: peer ${s.peer.name} (${s.peer.source}), ${s.peers.length} Peer object(s), ${Object.values(s.objects).reduce((n, l) => n + l.length, 0)} other object(s)\n`);
      }

      const existingPeers = new Set(existsSync(join(flags.out, 'peers')) ? readdirSync(join(flags.out, 'peers')) : []);
      let plan: MigrationPlan;
      try {
        plan = planMigration(snapshots, { fabricName, repoDir: flags.out, existingPeers });
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      if (!flags.force) {
        const taken = plan.peers.filter((p) => p.context !== null && existingPeers.has(p.name) && !isRemoteOnlyStub(join(flags.out, 'peers', p.name))).map((p) => `peers/${p.name}/`);
        if (taken.length > 0) throw new UsageError(`${taken.join(', ')} already in ${flags.out}: use --force to replace the files migrate writes there`);
      }
      const items = [...plan.items];
      if (plan.attestations.size > 0) {
        const edited = withPeerAttestations(fabricText, plan.attestations);
        items.push(...edited.items);
        writeFileSync(fabricPath, edited.text);
      }
      for (const [path, text] of plan.files) {
        const full = join(flags.out, path);
        mkdirSync(dirname(full), { recursive: true });
        writeFileSync(full, text);
      }

      let files: Map<string, Uint8Array>;
      try {
        files = await readFabricDir(flags.out);
      } catch (err) {
        throw new UsageError(err instanceof FabricReadError ? err.message : `cannot read ${flags.out}: ${(err as Error).message}`);
      }
      const validation = validateFiles(files);
      const { text, checked } = renderReport({ peers: plan.peers, items }, validation, { repoDir: flags.out, readAt: new Date(), fabricName });
      const reportPath = join(flags.out, REPORT_FILE);
      writeFileSync(reportPath, text);

      const todos = items.filter((i) => i.severity === 'todo').length;
      ctx.stdout.write(
        `migrated ${plan.peers.filter((p) => p.context !== null).length} cluster(s) into ${flags.out} (fabric ${fabricName}): ${plan.peers.map((p) => p.name).join(', ')}\n` +
          `  ${plan.files.size} file(s) written${plan.attestations.size > 0 ? `, peer labels of ${[...plan.attestations.keys()].join(', ')} added to fabric.yaml for the admin to attest` : ''}\n` +
          `  ${todos} step(s) to do by hand, listed in ${reportPath}\n` +
          `  clgo validate: ${validation.ok ? 'valid' : `${validation.errors.length} error(s), ${validation.errors.length - checked.unexplained.length} of them listed steps`}\n` +
          (checked.unexplained.length > 0 ? `  ${checked.unexplained.length} error(s) are not listed steps: the migrated objects need a look (see ${reportPath})\n` : ''),
      );
      ctx.setExitCode(checked.unexplained.length > 0 ? EXIT.invalid : EXIT.ok);
    });
};
