// `clgo dataplane`: the Node data plane as its own process (a tunnel pod's container): an xDS
// client of the peer's reconciler, asking its ext_authz service about every connection. Health on
// --health: /healthz, /readyz (a config from the control plane is serving), /status.json.
import { Option, type Command } from 'commander';
import { existsSync } from 'node:fs';
import { pino } from 'pino';
import { z } from 'zod';
import { startXdsDataplane } from '../../../dataplane/xds-dataplane.ts';
import { startAdminServer } from '../../runtime/admin-server.ts';
import { untilSignal, UsageError, type CliContext, type RegisterCommand } from '../context.ts';

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'must be host:port');
const flagsSchema = z.object({
  xds: hostPort,
  authz: hostPort.optional(),
  node: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?(\/[A-Za-z0-9._-]{1,253})?$/, 'must be <peer> or <peer>/<pod>'),
  protocol: z.enum(['sotw', 'delta']),
  health: hostPort,
  cert: z.string().min(1),
  key: z.string().min(1),
  ca: z.string().min(1),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
});

export const register: RegisterCommand = (program: Command, ctx: CliContext) => {
  program
    .command('dataplane')
    .description("run the Node data plane for a peer, configured by the peer's reconciler over xDS")
    .requiredOption('--xds <host:port>', "the reconciler's ADS address (e.g. clgo-reconciler.clusterlink-system.svc:18000)")
    .option('--authz <host:port>', "the reconciler's ext_authz address (default: the --xds host, port 18001)")
    .requiredOption('--node <peer[/pod]>', 'xDS node id: the peer name, optionally /<pod name>')
    .addOption(new Option('--protocol <p>', 'ADS variant').choices(['sotw', 'delta']).default('sotw'))
    .option('--cert <file>', "the peer certificate (the mounted Secret's tls.crt): presented to the control plane and used by the gateway", '/var/run/clgo/peer/tls.crt')
    .option('--key <file>', "its private key (tls.key); read from disk, never received over xDS", '/var/run/clgo/peer/tls.key')
    .option('--ca <file>', "the fabric CA bundle (ca.crt): the control plane's certificate must chain to it and name this peer", '/var/run/clgo/peer/ca.crt')
    .option('--health <host:port>', '/healthz, /readyz, /status.json', '127.0.0.1:9902')
    .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'))
    .action(async (raw: Record<string, unknown>) => {
      const parsed = flagsSchema.safeParse(raw);
      if (!parsed.success) {
        const i = parsed.error.issues[0]!;
        throw new UsageError(`--${String(i.path[0] ?? '')}: ${i.message}`);
      }
      const f = parsed.data;
      const xdsHost = f.xds.slice(0, f.xds.lastIndexOf(':'));
      const logger = pino({ level: f.logLevel, base: { node: f.node } });
      for (const [flag, file] of [['--cert', f.cert], ['--key', f.key], ['--ca', f.ca]] as const) {
        if (!existsSync(file)) throw new UsageError(`${flag} ${file}: no such file (mount the peer Secret with tls.crt, tls.key and ca.crt; see deploy/README.md)`);
      }
      const dp = startXdsDataplane({ xds: f.xds, authz: f.authz ?? `${xdsHost}:18001`, nodeId: f.node, protocol: f.protocol, tls: { certificateFile: f.cert, privateKeyFile: f.key, caFile: f.ca }, logger });
      const [host, port] = [f.health.slice(0, f.health.lastIndexOf(':')).replace(/^\[|\]$/g, ''), Number(f.health.slice(f.health.lastIndexOf(':') + 1))];
      const health = await startAdminServer({ host, port, ready: () => dp.ready(), status: () => ({ node: f.node, ...dp.status() }) });
      ctx.stderr.write(`clgo: data plane ${f.node} following ${f.xds}; health ${health.url}/readyz; Ctrl-C to stop\n`);
      await untilSignal();
      await health.close();
      await dp.close();
    });
};
