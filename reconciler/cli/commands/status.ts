// `clgo status`: asks a running reconciler's local admin endpoint (/status.json) and prints its
// revision, last good revision, errors, imports with their exporters' health, and counters; for a
// control plane (`clgo run` without --local), its data planes' xDS state (NACKs with their reason)
// and the clients its mutual TLS refused.
import { Option, type Command } from 'commander';
import { z } from 'zod';
import { EXIT, UsageError, type CliContext, type RegisterCommand } from '../context.ts';

// Only what is printed is validated; the document carries more (flows, the fabric graph).
const peerStatus = z.object({
  peer: z.string(),
  ready: z.boolean(),
  // version: the embedded data plane's config version (local mode); a control plane has none.
  applied: z.object({ revision: z.string(), version: z.number().optional(), at: z.string() }).nullable(),
  lastApplyError: z.object({ revision: z.string(), message: z.string() }).nullable(),
  source: z.object({
    kind: z.string(),
    url: z.string(),
    lastAttemptedRevision: z.string().nullable(),
    lastAppliedRevision: z.string().nullable(),
    lastFetchTime: z.string().nullable(),
    suspended: z.boolean(),
    lastError: z.object({ revision: z.string().nullable(), stage: z.string(), message: z.string(), file: z.string().optional(), line: z.number().optional() }).nullable(),
  }),
  slice: z.object({ imports: z.array(z.object({ ref: z.string(), port: z.number(), lbScheme: z.string(), sources: z.array(z.object({ peer: z.string(), export: z.string(), resolved: z.boolean() })) })), exports: z.array(z.object({ ref: z.string(), target: z.string(), importers: z.array(z.string()) })) }).nullish(),
  dataplane: z
    .object({
      egress: z.record(z.string(), z.object({ connections: z.number(), active: z.number(), denied: z.number(), failed: z.number(), failovers: z.number(), bytesIn: z.number(), bytesOut: z.number() })),
      exporters: z.record(z.string(), z.object({ connections: z.number(), failures: z.number(), ejected: z.boolean() })),
      // requests: absent from runtimes older than preconnect (then connections were requests).
      ingress: z.object({ connections: z.number(), requests: z.number().optional(), active: z.number(), denied: z.number() }),
    })
    .nullish(),
  // Control-plane mode only.
  xds: z
    .object({
      nodes: z.array(z.object({ node: z.string(), streams: z.number(), types: z.record(z.string(), z.object({ sentVersion: z.string().nullable(), ackedVersion: z.string().nullable(), nack: z.object({ version: z.string(), message: z.string() }).nullable() })) })),
    })
    .optional(),
  xdsAccepted: z.object({ status: z.enum(['True', 'False']), reason: z.string(), message: z.string() }).optional(),
  refusedClients: z.array(z.object({ server: z.string(), reason: z.string(), count: z.number() })).optional(),
});
const statusDoc = z.object({ peers: z.array(peerStatus) });

const short = (r: string | null | undefined): string => (r ? r.slice(0, 12) : '—');

export function formatStatus(doc: z.infer<typeof statusDoc>): string {
  const lines: string[] = [];
  for (const p of doc.peers) {
    lines.push(`peer ${p.peer}: ${p.ready ? 'ready' : 'NOT READY'}${p.source.suspended ? ' (source suspended)' : ''}`);
    lines.push(`  source      ${p.source.kind} ${p.source.url}`);
    lines.push(`  applied     ${short(p.applied?.revision)}${p.applied ? ` (${p.applied.version !== undefined ? `config v${p.applied.version}, ` : ''}${p.applied.at})` : ''}`);
    lines.push(`  attempted   ${short(p.source.lastAttemptedRevision)}  last fetch ${p.source.lastFetchTime ?? '—'}`);
    const e = p.source.lastError;
    if (e) lines.push(`  last error  [${e.stage}] ${e.revision ? `${short(e.revision)} ` : ''}${e.file ? `${e.file}:${e.line ?? 1}: ` : ''}${e.message}`);
    if (p.lastApplyError) lines.push(`  apply error ${short(p.lastApplyError.revision)}: ${p.lastApplyError.message}`);
    for (const imp of p.slice?.imports ?? []) {
      const s = p.dataplane?.egress[imp.ref];
      lines.push(`  import ${imp.ref} :${imp.port} (${imp.lbScheme})  connections ${s?.connections ?? 0}, active ${s?.active ?? 0}, denied ${s?.denied ?? 0}, failovers ${s?.failovers ?? 0}, bytes ${(s?.bytesIn ?? 0) + (s?.bytesOut ?? 0)}`);
      for (const src of imp.sources) {
        const health = Object.entries(p.dataplane?.exporters ?? {}).filter(([k]) => k.startsWith(`${src.peer}@`) || k === src.peer || k.startsWith(`${src.peer}/`));
        const ejected = health.some(([, h]) => h.ejected);
        const failures = health.reduce((n, [, h]) => n + h.failures, 0);
        lines.push(`    ← ${src.peer} ${src.export}${src.resolved ? '' : ' (UNRESOLVED)'}${ejected ? ' EJECTED' : ''}${failures ? ` (${failures} failures)` : ''}`);
      }
    }
    for (const ex of p.slice?.exports ?? []) lines.push(`  export ${ex.ref} → ${ex.target}  importers: ${ex.importers.join(', ') || '—'}`);
    if (p.xds) {
      for (const n of p.xds.nodes) {
        const types = Object.values(n.types);
        const synced = types.length > 0 && types.every((t) => t.sentVersion !== null && t.ackedVersion === t.sentVersion);
        lines.push(`  xds node    ${n.node}: ${n.streams} stream(s), ${synced ? 'in sync' : types.some((t) => t.nack) ? 'REJECTED a version' : 'push outstanding'}`);
      }
      if (p.xds.nodes.length === 0) lines.push('  xds node    none connected');
    }
    if (p.xdsAccepted?.status === 'False') lines.push(`  xds NACK    ${p.xdsAccepted.message}`);
    const refused = (p.refusedClients ?? []).filter((r) => r.count > 0);
    if (refused.length > 0) lines.push(`  refused     ${refused.map((r) => `${r.server}/${r.reason} ×${r.count}`).join(', ')} (clients without this peer's certificate)`);
    if (p.dataplane) lines.push(`  gateway     requests ${p.dataplane.ingress.requests ?? p.dataplane.ingress.connections} (connections ${p.dataplane.ingress.connections}), active ${p.dataplane.ingress.active}, denied ${p.dataplane.ingress.denied}`);
  }
  return `${lines.join('\n')}\n`;
}

export const register: RegisterCommand = (program: Command, ctx: CliContext) => {
  program
    .command('status')
    .description("show a running reconciler's revision, errors, imports and counters")
    .option('--admin <url>', 'admin endpoint of the reconciler', 'http://127.0.0.1:9090')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (opts: { admin: string; format: 'text' | 'json' }) => {
      let body: unknown;
      try {
        const res = await fetch(new URL('/status.json', opts.admin), { signal: AbortSignal.timeout(5000) });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        body = await res.json();
      } catch (err) {
        throw new UsageError(`cannot reach the reconciler at ${opts.admin}: ${(err as Error).message} (is clgo run running? see --admin)`);
      }
      const parsed = statusDoc.safeParse(body);
      if (!parsed.success) throw new UsageError(`${opts.admin}/status.json is not a clgo status document: ${parsed.error.issues[0]?.message ?? ''}`);
      ctx.stdout.write(opts.format === 'json' ? `${JSON.stringify(body, null, 2)}\n` : formatStatus(parsed.data));
      ctx.setExitCode(parsed.data.peers.every((p) => p.ready) ? EXIT.ok : EXIT.invalid);
    });
};
