// The Kubernetes target: selector-less Services for imports and their EndpointSlices (only while
// leader), Pod attributes (always: every replica's data plane asks its own reconciler), leader
// election, status. applySlice calls and endpoint syncs are serialized; a slice handed in while
// standby is kept and applied on becoming leader. When the set of ready data-plane pods changes,
// every owned EndpointSlice is brought up to date (debounced, leader only).
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { KubeConfig } from '@kubernetes/client-node';
import type { ClientAttributes } from '../../protocol/contracts.ts';
import type { Slice } from '../slice/types.ts';
import { ServiceApplier, type ServiceApplyResult } from './apply.ts';
import { errorMessage, sleep } from './api.ts';
import { withConnectionReuse } from './client.ts';
import { EndpointSliceApplier, type EndpointSliceApplyResult, type EndpointSliceTarget } from './endpointslices.ts';
import { startLeaderElection, type LeaderElector } from './leader.ts';
import { startPodWatcher, type PodWatcher } from './pods.ts';
import { StatusWriter } from './status.ts';
import type { ObjectRef } from './services.ts';

export { planServices, serviceManifest, specHash, FIELD_MANAGER, LABEL_MANAGED_BY, LABEL_PEER, ANNOTATION_IMPORT, ANNOTATION_SOURCE, ANNOTATION_SPEC_HASH } from './services.ts';
export type { ServiceManifest, ServiceObject, ServicePlan, ObjectRef, ServiceConflict } from './services.ts';
export { statusConfigMapName } from './status.ts';
export type { ServiceApplyError } from './apply.ts';
export { endpointSliceManifest, planEndpointSlices, sliceName, LABEL_SERVICE_NAME, LABEL_SLICE_MANAGED_BY } from './endpointslices.ts';
export type { EndpointSliceManifest, EndpointSliceTarget } from './endpointslices.ts';

export interface KubeTargetOptions {
  kubeConfig: KubeConfig;
  /** This cluster's peer name (ownership label value). */
  peer: string;
  /** The reconciler's own namespace: Lease and status ConfigMap live here. */
  namespace: string;
  /** Labels of the data-plane pods (in `namespace`); their ready IPs are every import Service's endpoints. */
  dataplaneSelector: Record<string, string>;
  createNamespaces?: boolean;
  /** Unique per replica; default hostname + random suffix. */
  identity?: string;
  /** Default `clgo-reconciler-<peer>`. */
  leaseName?: string;
  leaseDurationSeconds?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /**
   * Watch Pods cluster-wide for client attributes (default true). When false, Pods are still
   * watched in `namespace` alone for the EndpointSlices (unless endpointSlices is false).
   */
  watchPods?: boolean;
  /** Manage an EndpointSlice per import Service (default true). */
  endpointSlices?: boolean;
  /** Coalescing window for data-plane pod changes before the slices are updated (default 200 ms). */
  endpointsDebounceMs?: number;
  /** How long an apply waits for the first Pod list before deferring the slices to it (default 10 s). */
  podListTimeoutMs?: number;
  podWatchBackoff?: { initialMs?: number; maxMs?: number };
  applyConcurrency?: number;
  onLeadershipChange?: (leader: boolean) => void;
  onError?: (message: string) => void;
  /** Every completed apply, including the catch-up apply on takeover (which has no caller to return to). */
  onApplied?: (report: KubeApplyReport) => void;
  /** Every EndpointSlice update caused by a data-plane pod change (not those made by applySlice). */
  onEndpointsSynced?: (report: EndpointSyncReport) => void;
}

export interface EndpointSyncReport extends EndpointSliceApplyResult {
  durationMs: number;
}

/** The Service pass's outcome (see ServiceApplyResult) plus what the target did around it. */
export interface KubeApplyReport extends Pick<ServiceApplyResult, 'applied' | 'pruned' | 'unchanged' | 'conflicts' | 'errors' | 'missingNamespaces' | 'createdNamespaces'> {
  revision: string;
  /** False when this replica is standby: nothing was written (the slice is applied on takeover). */
  leader: boolean;
  /** Write requests for Services and namespaces (status, Events and EndpointSlices excluded). */
  serviceWrites: number;
  /** EndpointSlices written/deleted; conflicts and errors are in `conflicts`/`errors` (ref = the Service). */
  endpointSlices: { applied: ObjectRef[]; pruned: ObjectRef[]; unchanged: number; deferred: boolean };
  /** Write requests for EndpointSlices (apply, delete). */
  endpointSliceWrites: number;
  statusWritten: boolean;
  events: number;
  durationMs: number;
  /** Summary of this pass's apply errors (also in the status ConfigMap and logged through onError), or null. */
  lastError: string | null;
}

export interface KubeTarget {
  applySlice(slice: Slice, revision: string): Promise<KubeApplyReport>;
  clientAttributes(ip: string): ClientAttributes | null;
  isLeader(): boolean;
  /** Resolves when Pods have been listed once (immediately if neither watchPods nor endpointSlices). */
  ready(): Promise<void>;
  stop(): Promise<void>;
}

export function startKubeTarget(options: KubeTargetOptions): KubeTarget {
  // Pooled keep-alive connections: a third of the CPU per request on both sides (docs/kube.md).
  const connections = withConnectionReuse(options.kubeConfig);
  const opts = { ...options, kubeConfig: connections.kubeConfig };
  const onError = opts.onError ?? (() => undefined);
  const applier = new ServiceApplier(opts.kubeConfig, {
    peer: opts.peer,
    createNamespaces: opts.createNamespaces ?? false,
    concurrency: opts.applyConcurrency,
  });
  const status = new StatusWriter(opts.kubeConfig, { peer: opts.peer, namespace: opts.namespace, onError });
  const manageSlices = opts.endpointSlices !== false;
  const slices = manageSlices ? new EndpointSliceApplier(opts.kubeConfig, { peer: opts.peer, concurrency: opts.applyConcurrency, namespace: opts.namespace }) : undefined;
  const debounceMs = opts.endpointsDebounceMs ?? 200;
  const pods: PodWatcher | undefined =
    opts.watchPods === false && !manageSlices
      ? undefined
      : startPodWatcher({
          kubeConfig: opts.kubeConfig,
          backoff: opts.podWatchBackoff,
          onError,
          // Without client attributes, only the data plane's own namespace is of interest.
          ...(opts.watchPods === false ? { namespace: opts.namespace } : {}),
          ...(manageSlices ? { dataplane: { namespace: opts.namespace, selector: opts.dataplaneSelector, onChange: scheduleEndpointSync } } : {}),
        });
  let podsListed = false;
  void pods?.ready.then(() => (podsListed = true), () => undefined);
  // The Services in place after the last leader apply: what the slices are written for.
  let sliceTargets: EndpointSliceTarget[] | undefined;
  let syncTimer: NodeJS.Timeout | undefined;
  const stopper = new AbortController();

  // The newest slice, leader or not: re-applied on every takeover (cheap when nothing changed, and
  // the previous leader may have left things half done).
  let latest: { slice: Slice; revision: string } | undefined;
  let chain: Promise<unknown> = Promise.resolve();
  let stopped = false;

  function scheduleEndpointSync(): void {
    // Coalesce: the first change arms the timer, later ones ride along (bounded latency even
    // while pods keep flapping); the sync reads the newest state when it runs.
    if (stopped || syncTimer || !sliceTargets || !elector.isLeader()) return;
    syncTimer = setTimeout(() => {
      syncTimer = undefined;
      void serialize(syncEndpoints).catch((err: unknown) => onError(`endpoint sync: ${errorMessage(err)}`));
    }, debounceMs);
  }

  async function syncEndpoints(): Promise<void> {
    const targets = sliceTargets;
    if (stopped || !slices || !pods || !targets || !podsListed || !elector.isLeader()) return;
    const t0 = performance.now();
    const r = await slices.reconcile(targets, pods.dataplaneEndpoints());
    for (const e of r.errors) onError(`${e.op} ${e.namespace}/${e.name}: ${e.message}`);
    for (const c of r.conflicts) onError(`EndpointSlice conflict for ${c.namespace}/${c.name}: ${c.reason}`);
    opts.onEndpointsSynced?.({ ...r, durationMs: performance.now() - t0 });
  }

  async function podsListedWithin(ms: number): Promise<boolean> {
    if (podsListed || !pods) return podsListed;
    const done = new AbortController();
    const onStop = () => done.abort();
    stopper.signal.addEventListener('abort', onStop, { once: true });
    try {
      await Promise.race([pods.ready.catch(() => undefined), sleep(ms, done.signal)]);
    } finally {
      done.abort(); // clears the timer when the list came first
      stopper.signal.removeEventListener('abort', onStop);
    }
    return podsListed;
  }

  const serialize = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = chain.then(fn, fn);
    chain = p.catch(() => undefined);
    return p;
  };

  const elector: LeaderElector = startLeaderElection({
    kubeConfig: opts.kubeConfig,
    namespace: opts.namespace,
    name: opts.leaseName ?? `clgo-reconciler-${opts.peer}`,
    identity: opts.identity ?? `${hostname()}-${randomBytes(4).toString('hex')}`,
    leaseDurationSeconds: opts.leaseDurationSeconds,
    renewDeadlineMs: opts.renewDeadlineMs,
    retryPeriodMs: opts.retryPeriodMs,
    onError,
    onStartedLeading() {
      opts.onLeadershipChange?.(true);
      // Catch up with the newest slice seen while standby.
      const p = latest;
      if (p) void serialize(() => reconcile(p.slice, p.revision)).catch((err: unknown) => onError(`apply on takeover: ${errorMessage(err)}`));
    },
    onStoppedLeading() {
      opts.onLeadershipChange?.(false);
    },
  });

  async function reconcile(slice: Slice, revision: string): Promise<KubeApplyReport> {
    const t0 = performance.now();
    const empty: KubeApplyReport = {
      revision,
      leader: false,
      applied: [],
      pruned: [],
      unchanged: 0,
      conflicts: [],
      errors: [],
      missingNamespaces: [],
      createdNamespaces: [],
      serviceWrites: 0,
      endpointSlices: { applied: [], pruned: [], unchanged: 0, deferred: false },
      endpointSliceWrites: 0,
      statusWritten: false,
      events: 0,
      durationMs: 0,
      lastError: null,
    };
    if (stopped || !elector.isLeader()) return { ...empty, durationMs: performance.now() - t0 };
    const svc = await applier.reconcile(slice.imports, revision);
    const r = { ...svc, conflicts: [...svc.conflicts], errors: [...svc.errors] };
    let sliceReport = empty.endpointSlices;
    let endpointSliceWrites = 0;
    if (slices && pods) {
      const firstImport = new Map<string, (typeof slice.imports)[number]>();
      for (const i of slice.imports) if (!firstImport.has(`${i.namespace}/${i.name}`)) firstImport.set(`${i.namespace}/${i.name}`, i);
      const targets: EndpointSliceTarget[] = [];
      for (const l of svc.live) {
        const i = firstImport.get(`${l.namespace}/${l.name}`);
        if (i) targets.push({ namespace: l.namespace, name: l.name, uid: l.uid, port: i.listenPort });
      }
      sliceTargets = targets;
      if (await podsListedWithin(opts.podListTimeoutMs ?? 10_000)) {
        const sr = await slices.reconcile(targets, pods.dataplaneEndpoints());
        sliceReport = { applied: sr.applied, pruned: sr.pruned, unchanged: sr.unchanged, deferred: false };
        endpointSliceWrites = sr.writes;
        r.conflicts.push(...sr.conflicts);
        r.errors.push(...sr.errors);
      } else {
        // Writing slices from an unknown pod set would empty them; the first list announces a
        // change, which syncs them then.
        sliceReport = { ...sliceReport, deferred: true };
        onError('EndpointSlices deferred: the data-plane pods have not been listed yet');
      }
    }
    const lastError = r.errors.length > 0 ? `${r.errors.length} error(s); first: ${r.errors[0]?.namespace}/${r.errors[0]?.name}: ${r.errors[0]?.message}` : null;
    // One line per pass, not per object: a missing RBAC rule fails every object the same way.
    if (lastError) onError(`applying revision ${revision}: ${lastError}`);
    let statusWritten = false;
    let events = 0;
    try {
      const s = await status.write({
        revision,
        lastError,
        appliedImports: r.inEffect.map((x) => `${x.namespace}/${x.name}`),
        conflicts: r.conflicts,
        applyErrors: r.errors.map((e) => ({ namespace: e.namespace, name: e.name, message: `${e.op}: ${e.message}` })),
      });
      statusWritten = s.configMapWritten;
      events = s.events;
    } catch (err) {
      onError(`status: ${errorMessage(err)}`);
    }
    const report: KubeApplyReport = {
      revision,
      leader: true,
      applied: r.applied,
      pruned: r.pruned,
      unchanged: r.unchanged,
      conflicts: r.conflicts,
      errors: r.errors,
      missingNamespaces: r.missingNamespaces,
      createdNamespaces: r.createdNamespaces,
      serviceWrites: r.writes,
      endpointSlices: sliceReport,
      endpointSliceWrites,
      statusWritten,
      events,
      durationMs: performance.now() - t0,
      lastError,
    };
    opts.onApplied?.(report);
    return report;
  }

  return {
    applySlice(slice, revision) {
      latest = { slice, revision };
      return serialize(() => reconcile(slice, revision));
    },
    clientAttributes: (ip) => (opts.watchPods === false ? null : (pods?.clientAttributes(ip) ?? null)),
    isLeader: () => elector.isLeader(),
    ready: () => pods?.ready ?? Promise.resolve(),
    async stop() {
      stopped = true;
      stopper.abort();
      if (syncTimer) clearTimeout(syncTimer);
      syncTimer = undefined;
      await Promise.all([elector.stop(), pods?.stop()]);
      await chain;
      connections.close();
    },
  };
}
