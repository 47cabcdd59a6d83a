// `clgo run`: the reconciler for one peer. Two shapes:
//  --local : reconciler and the embedded Node data plane in this process, on one host; imports
//            listen on a local address, local clients' attributes come from a small file.
//  default : the control plane as it runs in a cluster: serves the slice over ADS (--xds) and
//            answers ext_authz (--authz) for the peer's data-plane pods (Envoy, or `clgo dataplane`);
//            with --kube also applies a Service per import and maps Pod IPs to client attributes.
// Runs until SIGINT/SIGTERM.
import { Option, type Command } from 'commander';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
// What only one mode needs (the embedded data plane; gRPC, Kubernetes and Git clients) is imported
// where that mode starts, so that each mode loads only its own libraries.
import { pino, type Logger } from 'pino';
import type { ClientAttributes } from '../../../protocol/contracts.ts';
import type { KubeTarget } from '../../kube/index.ts';
import { readIdentityFiles, watchIdentityFiles } from '../../runtime/identity-files.ts';
import { z } from 'zod';
import { untilSignal, UsageError, type CliContext, type RegisterCommand } from '../context.ts';
import { startAdminServer } from '../../runtime/admin-server.ts';
import { computeFlows } from '../../runtime/flows.ts';
import { clientLookup, readLocalClients } from '../../runtime/local-clients.ts';
import { createDirectorySource } from '../../source/directory-source.ts';
import type { FabricModel } from '../../../schema/model.ts';
import { PEER_NAME } from '../../../schema/kinds.ts';
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
  peer: z.string().regex(PEER_NAME, 'must be a peer name (DNS-1123 subdomain, at most 63 characters)'),
  fabric: z.string().optional(),
  key: z.string().min(1),
  cert: z.string().optional(),
  egressAddress: z.string().refine((a) => isIP(a) !== 0, 'must be an IP address'),
  gateway: hostPort.optional(),
  clients: z.string().optional(),
  admin: hostPort,
  xds: hostPort,
  authz: hostPort,
  authzAdvertise: hostPort.optional(),
  kube: z.boolean().optional(),
  createNamespaces: z.boolean().optional(),
  namespace: z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'must be a namespace name'),
  dataplaneCert: z.string().min(1).optional(),
  dataplaneKey: z.string().min(1).optional(),
  dataplaneSelector: z.string().regex(/^[A-Za-z0-9./_-]+=[A-Za-z0-9._-]*(,[A-Za-z0-9./_-]+=[A-Za-z0-9._-]*)*$/, 'must be key=value[,key=value]'),
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
  const source: FabricSource = flags.fabric ? createDirectorySource({ dir: flags.fabric }) : await createGitSourceFromFlags(raw as GitFlags, logger);
  if (!flags.local) {
    if (certificatePem) {
      try {
        readIdentityFiles(flags.key, flags.cert);
      } catch (err) {
        throw new UsageError(`--key/--cert: ${(err as Error).message}`);
      }
    }
    await runControlPlane(flags, source, { privateKeyPem, ...(certificatePem ? { certificatePem } : {}) }, clients, logger, raw, ctx);
    return;
  }
  const [{ startPeerRuntime }, { createRuntimeMetrics }] = await Promise.all([import('../../runtime/peer-runtime.ts'), import('../../runtime/metrics.ts')]);
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
    metrics: createRuntimeMetrics(runtime),
    status: () => statusBody(runtime.fabric(), runtime.status()),
  });
  mountWebhook(raw, flags, admin, source, logger);
  logger.info({ admin: admin.url }, `peer ${flags.peer} running; status page ${admin.url}/`);
  ctx.stderr.write(`clgo: peer ${flags.peer} running (status ${admin.url}/); Ctrl-C to stop\n`);
  await untilSignal();
  await admin.close();
  await runtime.close();
}

type RunFlags = z.infer<typeof runFlags>;

/** The admin server's /status.json for one peer: the fabric's peers and exports, this peer's status, the fabric's flows. */
function statusBody<S>(fabric: FabricModel | null, peer: S): { fabric: { name: string; peers: Array<{ name: string; exports: Array<{ name: string; namespace: string }> }> } | null; peers: S[]; flows: ReturnType<typeof computeFlows> } {
  return {
    fabric: fabric ? { name: fabric.name, peers: fabric.peers.map((p) => ({ name: p.name, exports: p.exports.map((e) => ({ name: e.name, namespace: e.namespace })) })) } : null,
    peers: [peer],
    flows: fabric ? computeFlows(fabric) : [],
  };
}

function mountWebhook(raw: Record<string, unknown>, flags: RunFlags, admin: Awaited<ReturnType<typeof startAdminServer>>, source: FabricSource, logger: Logger): void {
  const secretFile = (raw as { webhookSecretFile?: string }).webhookSecretFile;
  if (!secretFile) return;
  if (flags.fabric) throw new UsageError('--webhook-secret-file needs --git (a directory source reacts to file changes by itself)');
  const secret = readSecretFile(secretFile, 'webhook secret').trim();
  try {
    admin.mount('/webhook', createWebhookHandler({ secret, onPush: () => void source.refresh() }));
  } catch (err) {
    throw new UsageError(`--webhook-secret-file: ${(err as Error).message}`);
  }
  logger.info({ webhook: `${admin.url}/webhook` }, 'push webhook enabled (GitHub, GitLab, Gitea)');
}

const parseSelector = (s: string): Record<string, string> => Object.fromEntries(s.split(',').map((kv) => kv.split('=') as [string, string]));

/** Cluster shape: ADS + ext_authz for the peer's data-plane pods, and (--kube) Services for imports. */
async function runControlPlane(
  flags: RunFlags,
  source: FabricSource,
  identity: { privateKeyPem: string; certificatePem?: string },
  localClients: (address: string) => ClientAttributes | null,
  logger: Logger,
  raw: Record<string, unknown>,
  ctx: CliContext,
): Promise<void> {
  let kube: KubeTarget | null = null;
  if (flags.kube) {
    const [{ KubeConfig }, { startKubeTarget }] = await Promise.all([import('@kubernetes/client-node'), import('../../kube/index.ts')]);
    const kubeConfig = new KubeConfig();
    try {
      // In a pod: the ServiceAccount; elsewhere: $KUBECONFIG or ~/.kube/config.
      kubeConfig.loadFromDefault();
    } catch (err) {
      throw new UsageError(`--kube: cannot load a Kubernetes configuration: ${(err as Error).message}`);
    }
    kube = startKubeTarget({
      kubeConfig,
      peer: flags.peer,
      namespace: flags.namespace,
      dataplaneSelector: parseSelector(flags.dataplaneSelector),
      createNamespaces: flags.createNamespaces === true,
      onLeadershipChange: (leader) => logger.info({ leader }, leader ? 'leading: this replica applies Services' : 'standing by: another replica applies Services'),
      onError: (message) => logger.error({ err: message }, 'kubernetes'),
    });
  }
  const clientAttributes = kube ? (ip: string) => kube.clientAttributes(ip) ?? localClients(ip) : localClients;
  const [{ startControlPlane }, { createControlPlaneMetrics }] = await Promise.all([import('../../runtime/control-plane.ts'), import('../../runtime/control-plane-metrics.ts')]);
  // What the data planes read (the same Secret, mounted in their pods): named over xDS, never sent.
  const dataplaneCert = flags.dataplaneCert ?? flags.cert;
  if (!dataplaneCert) throw new UsageError('control-plane mode needs --cert FILE (or --dataplane-cert FILE): the peer certificate the data planes also mount');
  const plane = await startControlPlane({
    peer: flags.peer,
    source,
    identity,
    identityFiles: { certificateFile: resolve(dataplaneCert), privateKeyFile: resolve(flags.dataplaneKey ?? flags.key) },
    xds: flags.xds,
    authz: { ...flags.authz, ...(flags.authzAdvertise ? { advertise: flags.authzAdvertise } : {}) },
    egressAddress: flags.egressAddress,
    ...(flags.gateway ? { gateway: { address: flags.gateway.host, port: flags.gateway.port } } : {}),
    clientAttributes,
    ...(kube ? { target: kube } : {}),
    logger,
  });
  const admin = await startAdminServer({
    host: flags.admin.host,
    port: flags.admin.port,
    // Ready: a revision is served over xDS (and, with --kube, applied or held by a standby).
    ready: () => plane.status().ready,
    metrics: createControlPlaneMetrics(plane),
    status: () => statusBody(plane.fabric(), plane.status()),
  });
  mountWebhook(raw, flags, admin, source, logger);
  // A rotated Secret (or files replaced on a host) is presented and accepted without a restart.
  const watcher = watchIdentityFiles({
    keyFile: flags.key,
    ...(flags.cert ? { certFile: flags.cert } : {}),
    onChange: (next) => plane.updateIdentity(next),
    onError: (message) => logger.error({ err: message }, 'peer certificate or key changed on disk but cannot be used'),
  });
  logger.info({ xds: plane.xdsAddress, authz: plane.authzAddress, admin: admin.url, kube: flags.kube === true }, `control plane for peer ${flags.peer} running`);
  ctx.stderr.write(`clgo: control plane for peer ${flags.peer}: xDS ${plane.xdsAddress.host}:${plane.xdsAddress.port}, ext_authz ${plane.authzAddress}, status ${admin.url}/; Ctrl-C to stop\n`);
  await untilSignal();
  watcher.stop();
  await admin.close();
  await plane.close();
  if (kube) await kube.stop();
}

export const register: RegisterCommand = (program: Command, ctx: CliContext) => {
  const cmd = program
    .command('run')
    .description('run the reconciler for one peer: with --local together with the embedded data plane; otherwise as a control plane (xDS + ext_authz) for data-plane pods')
    .option('--local', 'local mode: one peer on this host with the embedded data plane, no Kubernetes')
    .requiredOption('--peer <name>', 'this peer (peers/<name>/ in the fabric)')
    .option('--fabric <dir>', 'follow a fabric directory (development)')
    .requiredOption('--key <file>', "this peer's private key (PEM; never in the fabric repository)")
    .option('--cert <file>', "this peer's certificate (default: the committed peers/<peer>/peer.pem)")
    .option('--egress-address <ip>', 'address the import listeners bind to (0.0.0.0 in a pod)', '127.0.0.1')
    .option('--gateway <host:port>', "gateway bind address (default: the peer's gateway in peer.yaml; 0.0.0.0:8443 in a pod)")
    .option('--xds <host:port>', 'control plane: ADS listen address (mutual TLS; 0.0.0.0:18000 in a pod)', '127.0.0.1:18000')
    .option('--authz <host:port>', 'control plane: ext_authz listen address (mutual TLS; 0.0.0.0:18001 in a pod)', '127.0.0.1:18001')
    .option('--authz-advertise <host:port>', 'control plane: ext_authz address as data planes reach it (e.g. clgo-reconciler.clusterlink-system.svc:18001)')
    .option('--kube', 'control plane: apply a Service per import and watch Pods for client attributes (in-cluster config or $KUBECONFIG)')
    .option('--create-namespaces', "control plane (--kube): create an import's namespace when it is missing (default: report it; needs namespaces:create in RBAC)")
    .option('--namespace <ns>', "control plane: the reconciler's own namespace (Lease, status ConfigMap)", process.env.POD_NAMESPACE ?? 'clusterlink-system')
    .option('--dataplane-selector <k=v,...>', 'control plane: labels of the data-plane pods', 'app.kubernetes.io/name=clgo-tunnel')
    .option('--dataplane-cert <file>', "control plane: the peer certificate as the data planes' pods mount it, named in the SDS identity secret (default: --cert)")
    .option('--dataplane-key <file>', 'control plane: its key as the data planes mount it; only the file name goes over xDS, never the key (default: --key)')
    .option('--clients <file>', 'attributes of local client processes by source address (YAML)')
    .option('--admin <host:port>', 'status page, /status.json, /healthz, /readyz, /metrics, /webhook', '127.0.0.1:9090')
    .option('--webhook-secret-file <file>', 'enable POST /webhook for push events (GitHub/Gitea HMAC secret, GitLab token)')
    .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'));
  gitFlags(cmd);
  cmd.action(async (opts: Record<string, unknown>) => run(opts, ctx));
};
