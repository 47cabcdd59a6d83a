// One peer's reconciler loop: source → slice → diff → data plane configuration → revalidation.
// The source only hands on revisions that passed its gates; this loop adds the last gate (the
// revision must produce a usable configuration for this peer) and keeps the last good state
// serving when any step fails.
import type { Logger } from 'pino';
import { countDecisions } from './authz-counter.ts';
import { runRevisions } from './revision-loop.ts';
import { pino } from 'pino';
import type { ClientAttributes, DataplaneConfig, Endpoint } from '../../protocol/contracts.ts';
import { startDataplane, type Dataplane, type DataplaneLimits, type DataplaneStats } from '../../dataplane/dataplane.ts';
import { Histogram, Summary } from 'prom-client';
import type { FabricModel } from '../../schema/model.ts';
import { slice as sliceOf } from '../slice/slice.ts';
import { diffSlices, type SliceDiff } from '../slice/diff.ts';
import type { Slice } from '../slice/types.ts';
import type { AcceptedRevision, FabricSource, SourceStatus } from '../source/types.ts';
import { createAuthorizer, type SliceAuthorizer } from '../xds/authz.ts';
import { dataplaneConfigFromSlice, type PeerIdentity } from '../xds/config.ts';

export interface PeerRuntimeOptions {
  peer: string;
  source: FabricSource;
  identity: PeerIdentity;
  /** Where import listeners bind, and (optionally) where the gateway binds instead of peer.yaml's address. */
  listen: { egressAddress: string; ingress?: Endpoint | null };
  clientAttributes: (address: string) => ClientAttributes | null;
  logger?: Logger;
  dataplaneLimits?: Partial<DataplaneLimits>;
  now?: () => Date;
}

export interface AppliedState {
  revision: string;
  /** Monotonic configuration version handed to the data plane. */
  version: number;
  at: string;
  changes: { imports: number; exports: number; policies: number; members: number; tunnelsClosed: number };
}

export interface PeerRuntimeStatus {
  peer: string;
  ready: boolean;
  source: SourceStatus;
  applied: AppliedState | null;
  lastApplyError: { revision: string; message: string; at: string } | null;
  slice: SliceSummary | null;
  dataplane: DataplaneStats | null;
  addresses: ReturnType<Dataplane['addresses']> | null;
}

export interface SliceSummary {
  imports: Array<{ ref: string; port: number; lbScheme: string; sources: Array<{ peer: string; export: string; resolved: boolean }> }>;
  exports: Array<{ ref: string; target: string; importers: string[] }>;
  members: Array<{ name: string; pinned: boolean }>;
  policies: Array<{ tier: string; ref: string; action: string; location: string }>;
}

/** Cumulative counters this runtime keeps for metrics (read at scrape time; never reset). */
export interface RuntimeTelemetry {
  /** Revisions handed to this runtime by its source, applied or not. */
  reconcile: { applied: number; failed: number };
  /** Data-plane authorization decisions, keyed by direction, result and deciding tier (`unknown` for allowed verdicts, which carry no explanation). */
  authz: Array<{ direction: 'egress' | 'ingress'; result: 'allowed' | 'denied'; tier: string; count: number }>;
}

export const RECONCILE_BUCKETS_SECONDS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Bounds of the tunnel setup histogram: setup is ~1-5 ms on loopback, more across a WAN or with a time-out. */
export const SETUP_BUCKETS_SECONDS: readonly number[] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * Distributions this runtime observes as they happen (one observation per revision applied or per
 * tunnel opened, never per byte), as prom-client metrics registered in no registry: every
 * registry that exposes this runtime (runtime/metrics.ts) registers them.
 */
export interface RuntimeDistributions {
  reconcileSeconds: Histogram;
  tunnelSetupSeconds: Histogram<'import'>;
  tunnelSetupRecentSeconds: Summary<'import'>;
}

function newDistributions(): RuntimeDistributions {
  return {
    reconcileSeconds: new Histogram({
      name: 'clgo_reconcile_duration_seconds',
      help: 'Time to apply one accepted revision: slice, diff, data plane configuration and revalidation of open tunnels.',
      buckets: [...RECONCILE_BUCKETS_SECONDS],
      registers: [],
    }),
    tunnelSetupSeconds: new Histogram({
      name: 'clgo_tunnel_setup_seconds',
      help: 'Tunnel setup latency (local accept → CONNECT answered 200) of every successful tunnel of an import.',
      labelNames: ['import'],
      buckets: [...SETUP_BUCKETS_SECONDS],
      registers: [],
    }),
    tunnelSetupRecentSeconds: new Summary({
      name: 'clgo_tunnel_setup_recent_seconds',
      help: 'Tunnel setup latency (local accept → CONNECT answered 200) of the successful tunnels of an import in the last 10 minutes, as quantiles (clgo_tunnel_setup_seconds is the histogram since start).',
      labelNames: ['import'],
      percentiles: [0.5, 0.9, 0.99],
      maxAgeSeconds: 600,
      ageBuckets: 5,
      registers: [],
    }),
  };
}


export interface PeerRuntime {
  readonly peer: string;
  status(): PeerRuntimeStatus;
  /** Cumulative counters for metrics (reconcile outcomes, authorization decisions). */
  telemetry(): RuntimeTelemetry;
  /** Reconcile durations and tunnel setup latencies, observed as they happen. */
  readonly distributions: RuntimeDistributions;
  /** The fabric of the last applied revision (for the status page's graph). */
  fabric(): FabricModel | null;
  slice(): Slice | null;
  authorizer: SliceAuthorizer;
  /** Resolves after the next revision this runtime applies (or fails to apply). */
  nextApply(): Promise<void>;
  close(): Promise<void>;
}

export function summarizeSlice(s: Slice): SliceSummary {
  return {
    imports: s.imports.map((i) => ({
      ref: `${i.namespace}/${i.name}`,
      port: i.listenPort,
      lbScheme: i.lbScheme,
      sources: i.sources.map((src) => ({ peer: src.peer, export: `${src.exportNamespace}/${src.exportName}`, resolved: src.resolved })),
    })),
    exports: s.exports.map((e) => ({ ref: `${e.namespace}/${e.name}`, target: `${e.host}:${e.port}`, importers: [...e.importers] })),
    members: s.members.map((m) => ({ name: m.name, pinned: m.certificateFingerprint !== null })),
    policies: s.policies.map((p) => ({ tier: p.tier, ref: p.namespace ? `${p.namespace}/${p.name}` : p.name, action: p.action, location: `${p.source.file}:${p.source.line}` })),
  };
}

function countChanges(d: SliceDiff): Omit<AppliedState['changes'], 'tunnelsClosed'> {
  const n = (k: { added: string[]; changed: string[]; removed: string[] }): number => k.added.length + k.changed.length + k.removed.length;
  return { imports: n(d.imports), exports: n(d.exports), policies: n(d.policies), members: n(d.members) };
}

export async function startPeerRuntime(opts: PeerRuntimeOptions): Promise<PeerRuntime> {
  const log = opts.logger ?? pino({ level: 'silent' });
  let currentSlice: Slice | null = null;
  let currentFabric: FabricModel | null = null;
  let dataplane: Dataplane | null = null;
  let applied: AppliedState | null = null;
  let version = 0;

  const authorizer = createAuthorizer({
    slice: () => currentSlice ?? emptySlice(opts.peer),
    clientAttributes: opts.clientAttributes,
    now: opts.now,
  });
  const reconcile: RuntimeTelemetry['reconcile'] = { applied: 0, failed: 0 };
  const distributions = newDistributions();
  const onTunnelSetup = (importRef: string, seconds: number): void => {
    distributions.tunnelSetupSeconds.observe({ import: importRef }, seconds);
    distributions.tunnelSetupRecentSeconds.observe({ import: importRef }, seconds);
  };
  // Decisions the data plane asked for (new connections, and re-checks of open tunnels after a
  // revision change). The exported `authorizer` stays uncounted for explain/status callers.
  const counted = countDecisions(authorizer);

  async function apply(rev: AcceptedRevision): Promise<void> {
    const next = sliceOf(rev.fabric, opts.peer);
    if (!rev.fabric.peers.some((p) => p.name === opts.peer)) {
      throw new Error(`peer ${opts.peer} is not a member of the fabric at this revision (no peers/${opts.peer}/peer.yaml); keeping the last good configuration`);
    }
    const diff = diffSlices(currentSlice, next);
    const nextVersion = version + 1;
    // Building the config validates what this peer needs (certificate, gateway) before anything changes.
    const config: DataplaneConfig = dataplaneConfigFromSlice(next, opts.identity, opts.listen, String(nextVersion));
    const previousSlice = currentSlice;
    currentSlice = next;
    try {
      if (dataplane) await dataplane.update(config);
      else dataplane = await startDataplane({ config, authorizer: counted.authorizer, logger: log.child({ component: 'dataplane' }), limits: opts.dataplaneLimits, onTunnelSetup });
    } catch (err) {
      currentSlice = previousSlice;
      throw err;
    }
    version = nextVersion;
    currentFabric = rev.fabric;
    // Tunnels whose right this revision revoked (peer removed, pin changed, policy now denies) close now.
    const tunnelsClosed = diff.empty ? 0 : await dataplane.revalidate();
    applied = { revision: rev.revision, version, at: new Date().toISOString(), changes: { ...countChanges(diff), tunnelsClosed } };
    log.info({ revision: rev.revision, version, changes: applied.changes }, diff.empty ? 'revision applied (no change for this peer)' : 'revision applied');
  }

  const loop = runRevisions(opts.source, apply, log, ({ ok, seconds }) => {
    if (ok) reconcile.applied++;
    else reconcile.failed++;
    distributions.reconcileSeconds.observe(seconds);
  });

  await opts.source.start();

  return {
    peer: opts.peer,
    authorizer,
    distributions,
    fabric: () => currentFabric,
    slice: () => currentSlice,
    nextApply: () => loop.nextApply(),
    telemetry: () => ({
      reconcile: { applied: reconcile.applied, failed: reconcile.failed },
      authz: counted.counts(),
    }),
    status: () => ({
      peer: opts.peer,
      ready: applied !== null,
      source: opts.source.status(),
      applied,
      lastApplyError: loop.lastApplyError(),
      slice: currentSlice ? summarizeSlice(currentSlice) : null,
      dataplane: dataplane ? dataplane.stats() : null,
      addresses: dataplane ? dataplane.addresses() : null,
    }),
    async close() {
      await opts.source.stop();
      await loop.close();
      if (dataplane) await dataplane.close();
    },
  };
}

function emptySlice(peer: string): Slice {
  return { fabric: '', self: { name: peer, labels: {}, gateways: [], certificatePem: null }, caCertificates: [], revoked: { serials: [], fingerprints: [] }, members: [], exports: [], imports: [], policies: [] };
}
