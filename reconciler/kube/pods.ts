// Pod watcher: podIP → client attributes (namespace, service account, labels) for egress policy.
// List, then watch from the list's resourceVersion with bookmarks so a re-watch resumes where it
// left off; 410 Gone means our resourceVersion fell out of the server's window → re-list. Every
// retry backs off (bounded) so a flapping API server is not hammered.
// The same stream also tracks the data-plane pods (one namespace, one label selector) and their
// readiness, for the EndpointSlices of import Services; onChange fires only when the set of ready
// data-plane endpoints actually changes.
import { CoreV1Api, Watch, type KubeConfig } from '@kubernetes/client-node';
import { z } from 'zod';
import type { ClientAttributes } from '../../protocol/contracts.ts';
import { errorMessage, sleep, statusCode } from './api.ts';

const PodSchema = z.object({
  metadata: z.object({
    name: z.string(),
    namespace: z.string(),
    uid: z.string().optional(),
    resourceVersion: z.string().optional(),
    labels: z.record(z.string(), z.string()).nullish(),
    deletionTimestamp: z.union([z.string(), z.date()]).nullish(),
  }),
  spec: z.object({ serviceAccountName: z.string().nullish(), hostNetwork: z.boolean().nullish(), nodeName: z.string().nullish() }).nullish(),
  status: z
    .object({
      phase: z.string().nullish(),
      podIP: z.string().nullish(),
      podIPs: z.array(z.object({ ip: z.string() })).nullish(),
      conditions: z.array(z.object({ type: z.string(), status: z.string() })).nullish(),
    })
    .nullish(),
});
type Pod = z.infer<typeof PodSchema>;

const PodListSchema = z.object({
  metadata: z.object({ resourceVersion: z.string().optional(), _continue: z.string().optional() }).optional(),
  items: z.array(PodSchema),
});

const WatchStatusSchema = z.object({ kind: z.literal('Status'), code: z.number().optional(), reason: z.string().optional(), message: z.string().optional() });
const BookmarkSchema = z.object({ metadata: z.object({ resourceVersion: z.string() }) });

/** A ready data-plane pod: what an EndpointSlice endpoint is made of. */
export interface DataplaneEndpoint {
  namespace: string;
  name: string;
  uid?: string;
  /** Sorted; IPv4 and IPv6 mixed (split by address family when the slices are built). */
  ips: string[];
  nodeName?: string;
}

export interface PodWatcherOptions {
  kubeConfig: KubeConfig;
  /** Track the ready pods matching `selector` in `namespace` (the data plane). */
  dataplane?: { namespace: string; selector: Record<string, string>; onChange?: () => void };
  /** Watch one namespace only; default all namespaces. */
  namespace?: string;
  backoff?: { initialMs?: number; maxMs?: number };
  /** Server-side watch timeout; the watch is renewed after it (bounded stream lifetime). */
  watchTimeoutSeconds?: number;
  pageSize?: number;
  onError?: (message: string) => void;
}

export interface PodWatcher {
  /** Resolves after the first complete list (the map is usable), or rejects if stopped first. */
  ready: Promise<void>;
  clientAttributes(ip: string): ClientAttributes | null;
  /** Ready data-plane pods (see options.dataplane), sorted by namespace/name; empty without that option. */
  dataplaneEndpoints(): DataplaneEndpoint[];
  size(): number;
  /** How many times the watcher re-listed (initial list included): visible for tests and metrics. */
  stats(): { lists: number; watches: number; resourceVersion: string };
  stop(): Promise<void>;
}

interface Entry {
  podKey: string;
  attrs: ClientAttributes;
}

function ipsOf(p: Pod): string[] {
  // Host-network pods share the node's IP: attributing that IP to one pod would be wrong.
  if (p.spec?.hostNetwork) return [];
  // A finished pod's IP can be handed to a new pod; it no longer identifies this one.
  if (p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') return [];
  const ips = new Set<string>();
  if (p.status?.podIP) ips.add(p.status.podIP);
  for (const i of p.status?.podIPs ?? []) ips.add(i.ip);
  return [...ips];
}

/** Ready as the EndpointSlice controller sees it: condition Ready=True, running, not being deleted. */
export function isPodReady(p: Pod): boolean {
  if (p.metadata.deletionTimestamp) return false;
  if (p.status?.phase !== undefined && p.status?.phase !== null && p.status.phase !== 'Running') return false;
  return (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

function matchesSelector(labels: Record<string, string> | null | undefined, selector: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

export function startPodWatcher(opts: PodWatcherOptions): PodWatcher {
  const core = opts.kubeConfig.makeApiClient(CoreV1Api);
  const watch = new Watch(opts.kubeConfig);
  const initialMs = opts.backoff?.initialMs ?? 200;
  const maxMs = opts.backoff?.maxMs ?? 30_000;
  const stopper = new AbortController();
  let byIp = new Map<string, Entry>();
  let ipsByPod = new Map<string, string[]>();
  let dataplane = new Map<string, DataplaneEndpoint>();
  let dataplaneSignature = '';
  let resourceVersion = '';
  let lists = 0;
  let watches = 0;
  let current: AbortController | undefined;
  let resolveReady!: () => void;
  let rejectReady!: (e: Error) => void;
  const ready = new Promise<void>((res, rej) => {
    resolveReady = res;
    rejectReady = rej;
  });
  ready.catch(() => undefined);

  const report = (m: string) => opts.onError?.(m);

  function upsert(p: Pod, intoIp = byIp, intoPod = ipsByPod, intoDp = dataplane): void {
    const podKey = `${p.metadata.namespace}/${p.metadata.name}`;
    remove(podKey, intoIp, intoPod, intoDp);
    const ips = ipsOf(p);
    const attrs: ClientAttributes = { namespace: p.metadata.namespace, labels: { ...(p.metadata.labels ?? {}) } };
    if (p.spec?.serviceAccountName) attrs.serviceAccount = p.spec.serviceAccountName;
    for (const ip of ips) {
      // The API server sends a deleted pod's MODIFIED (deletionTimestamp set) before its DELETED;
      // if a newer pod already has the IP, that update must not take it back, or the DELETED
      // that follows would leave the new pod's clients without attributes.
      const holder = intoIp.get(ip);
      if (holder && holder.podKey !== podKey && p.metadata.deletionTimestamp) continue;
      intoIp.set(ip, { podKey, attrs });
    }
    intoPod.set(podKey, ips);
    const dp = opts.dataplane;
    // Unlike client attribution, a host-network data-plane pod is a fine endpoint (at the node's IP).
    const dpIps = [...new Set([p.status?.podIP, ...(p.status?.podIPs ?? []).map((i) => i.ip)].filter((ip): ip is string => !!ip))];
    if (dp && p.metadata.namespace === dp.namespace && matchesSelector(p.metadata.labels, dp.selector) && dpIps.length > 0 && isPodReady(p)) {
      const e: DataplaneEndpoint = { namespace: p.metadata.namespace, name: p.metadata.name, ips: dpIps.sort() };
      if (p.metadata.uid) e.uid = p.metadata.uid;
      if (p.spec?.nodeName) e.nodeName = p.spec.nodeName;
      intoDp.set(podKey, e);
    }
  }

  function remove(podKey: string, intoIp = byIp, intoPod = ipsByPod, intoDp = dataplane): void {
    for (const ip of intoPod.get(podKey) ?? []) {
      // Only if the IP still points at this pod: a new pod may already have taken it over.
      if (intoIp.get(ip)?.podKey === podKey) intoIp.delete(ip);
    }
    intoPod.delete(podKey);
    intoDp.delete(podKey);
  }

  const sortedDataplane = () => [...dataplane.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, e]) => e);

  /** Fires onChange when the ready data-plane set differs from what was last announced. */
  function announceDataplane(): void {
    if (!opts.dataplane) return;
    const sig = JSON.stringify(sortedDataplane());
    if (sig === dataplaneSignature) return;
    dataplaneSignature = sig;
    try {
      opts.dataplane.onChange?.();
    } catch (err) {
      report(`data-plane change callback failed: ${errorMessage(err)}`);
    }
  }

  async function list(): Promise<void> {
    const nextIp = new Map<string, Entry>();
    const nextPod = new Map<string, string[]>();
    const nextDp = new Map<string, DataplaneEndpoint>();
    let cont: string | undefined;
    let rv = '';
    do {
      const raw = opts.namespace
        ? await core.listNamespacedPod({ namespace: opts.namespace, limit: opts.pageSize ?? 500, _continue: cont })
        : await core.listPodForAllNamespaces({ limit: opts.pageSize ?? 500, _continue: cont });
      const page = PodListSchema.parse(raw);
      for (const p of page.items) upsert(p, nextIp, nextPod, nextDp);
      rv = page.metadata?.resourceVersion ?? rv;
      cont = page.metadata?._continue || undefined;
    } while (cont);
    // Swap in one step so lookups never see a half-built map.
    byIp = nextIp;
    ipsByPod = nextPod;
    dataplane = nextDp;
    resourceVersion = rv;
    lists++;
    // The first list always announces ('' never equals a signature): an empty set is news too.
    announceDataplane();
  }

  type WatchEnd = { kind: 'gone' } | { kind: 'ended'; error?: string };

  function watchOnce(): Promise<WatchEnd> {
    return new Promise<WatchEnd>((resolve) => {
      let gone = false;
      let settled = false;
      const settle = (v: WatchEnd) => {
        if (!settled) {
          settled = true;
          resolve(v);
        }
      };
      const path = opts.namespace ? `/api/v1/namespaces/${encodeURIComponent(opts.namespace)}/pods` : '/api/v1/pods';
      watches++;
      watch
        .watch(
          path,
          { resourceVersion, allowWatchBookmarks: true, timeoutSeconds: opts.watchTimeoutSeconds ?? 300 },
          (type: string, obj: unknown) => {
            if (type === 'BOOKMARK') {
              const b = BookmarkSchema.safeParse(obj);
              if (b.success) resourceVersion = b.data.metadata.resourceVersion;
              return;
            }
            if (type === 'ERROR') {
              const s = WatchStatusSchema.safeParse(obj);
              if (s.success && s.data.code === 410) gone = true;
              else report(`pod watch error event: ${s.success ? (s.data.message ?? s.data.reason ?? 'unknown') : 'unparseable'}`);
              current?.abort();
              return;
            }
            const parsed = PodSchema.safeParse(obj);
            if (!parsed.success) {
              report(`pod watch: ignoring an object that does not parse: ${parsed.error.message}`);
              return;
            }
            const p = parsed.data;
            if (type === 'DELETED') remove(`${p.metadata.namespace}/${p.metadata.name}`);
            else if (type === 'ADDED' || type === 'MODIFIED') upsert(p);
            if (p.metadata.resourceVersion) resourceVersion = p.metadata.resourceVersion;
            announceDataplane();
          },
          (err: unknown) => {
            if (gone || statusCode(err) === 410) settle({ kind: 'gone' });
            else settle(err ? { kind: 'ended', error: errorMessage(err) } : { kind: 'ended' });
          },
        )
        .then((ctl) => {
          current = ctl;
          if (stopper.signal.aborted) ctl.abort();
        })
        .catch((err: unknown) => settle({ kind: 'ended', error: errorMessage(err) }));
    });
  }

  async function run(): Promise<void> {
    let delay = initialMs;
    let needList = true;
    while (!stopper.signal.aborted) {
      if (needList) {
        try {
          await list();
          needList = false;
          resolveReady();
        } catch (err) {
          report(`pod list failed: ${errorMessage(err)}`);
          await sleep(delay, stopper.signal);
          delay = Math.min(maxMs, delay * 2);
          continue;
        }
      }
      const startedAt = Date.now();
      const end = await watchOnce();
      if (stopper.signal.aborted) break;
      if (end.kind === 'gone') {
        // Our resourceVersion is older than the server keeps: only a fresh list is consistent.
        needList = true;
        // Gone again right after a list: back off rather than list in a tight loop.
        if (Date.now() - startedAt < 5_000) {
          await sleep(delay, stopper.signal);
          delay = Math.min(maxMs, delay * 2);
        } else delay = initialMs;
        continue;
      }
      if (end.error) report(`pod watch ended: ${end.error}`);
      // A stream that lived a while was healthy: start backoff over; one that died at once backs off.
      if (Date.now() - startedAt > 5_000) delay = initialMs;
      await sleep(delay, stopper.signal);
      delay = Math.min(maxMs, delay * 2);
    }
  }

  const loop = run().catch((err: unknown) => report(`pod watcher stopped: ${errorMessage(err)}`));

  return {
    ready,
    clientAttributes(ip) {
      const e = byIp.get(ip);
      return e ? { ...e.attrs, labels: { ...e.attrs.labels } } : null;
    },
    dataplaneEndpoints: () => sortedDataplane().map((e) => ({ ...e, ips: [...e.ips] })),
    size: () => byIp.size,
    stats: () => ({ lists, watches, resourceVersion }),
    async stop() {
      stopper.abort();
      current?.abort();
      rejectReady(new Error('pod watcher stopped'));
      await loop;
    },
  };
}
