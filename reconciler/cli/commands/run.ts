// `clgo run --local`: the reconciler and the embedded Node data plane for one peer on one host.
// Imports listen on a local address, the gateway on the peer's committed address (or --gateway),
// local clients' attributes come from a small file. Runs until SIGINT/SIGTERM.
import { Option, type Command } from 'commander';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { pino } from 'pino';
import { z } from 'zod';
import { UsageError, type CliContext, type RegisterCommand } from '../context.ts';
import { startAdminServer } from '../../runtime/admin-server.ts';
import { computeFlows } from '../../runtime/flows.ts';
import { clientLookup, readLocalClients } from '../../runtime/local-clients.ts';
import { startPeerRuntime } from '../../runtime/peer-runtime.ts';
import { createDirectorySource } from '../../source/directory-source.ts';
import type { FabricSource } from '../../source/types.ts';
import { createWebhookHandler } from '../../source/webhook.ts';
import { createGitSourceFromFlags, gitFlags, type GitFlags } from './source-flags.ts';

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:9090')
  .transform((s) => {
    const i = s.lastIndexOf(':');
    return { host: s.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(s.slice(i + 1)) };
  })
  .refine((e) => e.port >= 0 && e.port <= 65535, 'port must be 0-65535');

const runFlags = z.object({
  local: z.boolean().optional(),
  peer: z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'must be a peer name (DNS-1123 label)'),
  fabric: z.string().optional(),
  key: z.string().min(1),
  cert: z.string().optional(),
  egressAddress: z.string().refine((a) => isIP(a) !== 0, 'must be an IP address'),
  gateway: hostPort.optional(),
  clients: z.string().optional(),
  admin: hostPort,
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
});

function readSecretFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

async function run(raw: Record<string, unknown>, ctx: CliContext): Promise<void> {
  const parsed = runFlags.safeParse(raw);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    throw new UsageError(`--${String(i.path[0] ?? '').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: ${i.message}`);
  }
  const flags = parsed.data;
  if (!flags.local) throw new UsageError('only local mode is available from the command line: add --local (in a cluster the reconciler runs from deploy/)');
  if ((flags.fabric ? 1 : 0) + ((raw as GitFlags).git ? 1 : 0) !== 1) throw new UsageError('give exactly one fabric source: --fabric DIR or --git URL');
  const privateKeyPem = readSecretFile(flags.key, 'private key');
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(privateKeyPem)) throw new UsageError(`${flags.key} does not contain a PEM private key`);
  const certificatePem = flags.cert ? readSecretFile(flags.cert, 'certificate') : undefined;
  let clients: ReturnType<typeof clientLookup> = () => null;
  if (flags.clients) {
    try {
      clients = clientLookup(readLocalClients(flags.clients));
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  const logger = pino({ level: flags.logLevel, base: { peer: flags.peer } });
  const source: FabricSource = flags.fabric ? createDirectorySource({ dir: flags.fabric }) : createGitSourceFromFlags(raw as GitFlags, logger);
  const runtime = await startPeerRuntime({
    peer: flags.peer,
    source,
    identity: { privateKeyPem, ...(certificatePem ? { certificatePem } : {}) },
    listen: { egressAddress: flags.egressAddress, ...(flags.gateway ? { ingress: flags.gateway } : {}) },
    clientAttributes: clients,
    logger,
  });
  const admin = await startAdminServer({
    host: flags.admin.host,
    port: flags.admin.port,
    ready: () => runtime.status().ready,
    status: () => {
      const fabric = runtime.fabric();
      return { fabric: fabric ? { name: fabric.name, peers: fabric.peers.map((p) => ({ name: p.name, exports: p.exports.map((e) => ({ name: e.name, namespace: e.namespace })) })) } : null, peers: [runtime.status()], flows: fabric ? computeFlows(fabric) : [] };
    },
  });
  const secretFile = (raw as { webhookSecretFile?: string }).webhookSecretFile;
  if (secretFile) {
    if (flags.fabric) throw new UsageError('--webhook-secret-file needs --git (a directory source reacts to file changes by itself)');
    const secret = readSecretFile(secretFile, 'webhook secret').trim();
    try {
      admin.mount('/webhook', createWebhookHandler({ secret, onPush: () => void source.refresh() }));
    } catch (err) {
      throw new UsageError(`--webhook-secret-file: ${(err as Error).message}`);
    }
    logger.info({ webhook: `${admin.url}/webhook` }, 'push webhook enabled (GitHub, GitLab, Gitea)');
  }
  logger.info({ admin: admin.url }, `peer ${flags.peer} running; status page ${admin.url}/`);
  ctx.stderr.write(`clgo: peer ${flags.peer} running (status ${admin.url}/); Ctrl-C to stop\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await admin.close();
  await runtime.close();
}

export const register: RegisterCommand = (program: Command, ctx: CliContext) => {
  const cmd = program
    .command('run')
    .description('run the reconciler and the embedded data plane for one peer (local mode)')
    .option('--local', 'local mode: one peer on this host, no Kubernetes')
    .requiredOption('--peer <name>', 'this peer (peers/<name>/ in the fabric)')
    .option('--fabric <dir>', 'follow a fabric directory (development)')
    .requiredOption('--key <file>', "this peer's private key (PEM; never in the fabric repository)")
    .option('--cert <file>', "this peer's certificate (default: the committed peers/<peer>/peer.pem)")
    .option('--egress-address <ip>', 'address the import listeners bind to', '127.0.0.1')
    .option('--gateway <host:port>', "gateway bind address (default: the peer's gateway in peer.yaml)")
    .option('--clients <file>', 'attributes of local client processes by source address (YAML)')
    .option('--admin <host:port>', 'status page, /status.json, /healthz, /readyz, /metrics, /webhook', '127.0.0.1:9090')
    .option('--webhook-secret-file <file>', 'enable POST /webhook for push events (GitHub/Gitea HMAC secret, GitLab token)')
    .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'));
  gitFlags(cmd);
  cmd.action(async (opts: Record<string, unknown>) => run(opts, ctx));
};
