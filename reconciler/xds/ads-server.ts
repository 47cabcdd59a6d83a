// The ADS server (envoy.service.discovery.v3.AggregatedDiscoveryService) on @grpc/grpc-js: State
// of the World and Delta, per-node snapshots, monotonically increasing versions per type, nonces,
// ACK/NACK bookkeeping (a NACKed version is recorded with the client's error; the client keeps its
// last ACKed config), subscriptions by name, pushes in warming order (CDS, EDS, SDS, then LDS),
// and only of what changed (per-resource content hashes). Besides the four types built from a
// slice, any other resource type (e.g. RouteConfiguration for gRPC xDS clients) can be served with
// setResources; such types are pushed after the listeners.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { pino } from 'pino';
import { adsClientConstructor, TYPE_URL } from '../../protocol/envoy-protos.ts';
import { listenDataplaneTls, type DataplaneTlsListener, type DataplaneTlsOptions } from './dataplane-auth.ts';
import { resourceHash, type AnyResource, type XdsResources } from './resources.ts';

/** Push order: clusters and their endpoints and secrets before the listeners that use them. */
const ORDER = [TYPE_URL.cluster, TYPE_URL.endpoint, TYPE_URL.secret, TYPE_URL.listener] as const;
type TypeUrl = (typeof ORDER)[number];
const WILDCARD_TYPES = new Set<string>([TYPE_URL.listener, TYPE_URL.cluster]);
const MAX_NAMES = 10_000;
/** Bounds the per-stream and per-node state a client can create by naming types. */
const MAX_TYPES = 32;
const TYPE_URL_RE = /^type\.googleapis\.com\/[A-Za-z0-9_.]{1,200}$/;
/** Delta resource version = prefix of the content hash (what the client echoes in initial_resource_versions). */
const deltaVersion = (hash: string): string => hash.slice(0, 16);
/** Types known to this node's snapshot, in push order (slice types first, then others by name). */
const rank = (t: string): number => {
  const i = (ORDER as readonly string[]).indexOf(t);
  return i < 0 ? ORDER.length : i;
};
const inPushOrder = (types: Iterable<string>): string[] => [...types].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));

interface TypeSnapshot {
  version: number;
  items: Map<string, { resource: AnyResource; hash: string }>;
}

export interface TypeStatus {
  sentVersion: string | null;
  ackedVersion: string | null;
  nack: { version: string; message: string; at: string } | null;
  /** Cumulative since the server started (for metrics). */
  pushes: number;
  acks: number;
  nacks: number;
}

export interface NodeStatus {
  node: string;
  streams: number;
  types: Record<string, TypeStatus>;
}

export interface AdsStatus {
  nodes: NodeStatus[];
}

export interface AdsServer {
  address: { host: string; port: number };
  /** Replaces a node's resources; streams of that node get what changed. Node id `peer` also serves `peer/<pod>`. */
  setSnapshot(nodeId: string, resources: XdsResources): void;
  /**
   * Replaces the resources of one type for a node (any type URL, e.g. RouteConfiguration for a gRPC
   * xDS client); the node's other types are kept. Resource names are the map keys.
   */
  setResources(nodeId: string, typeUrl: string, resources: Map<string, AnyResource>): void;
  status(): AdsStatus;
  /** With tls: re-reads the server's certificate and key (after a rotation on disk). */
  refreshIdentity(): void;
  /** With tls: re-verifies connected clients against the current trust; closes those no longer accepted. */
  recheckClients(): void;
  /** Resolves when `nodeId` has ACKed the current version of every type it subscribed (or times out → false). */
  waitForAck(nodeId: string, timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

interface SotwType {
  names: string[] | null; // null = wildcard
  sentVersion: string | null;
  nonce: string | null;
  lastSentNames: string;
}

interface Stream {
  node: string | null;
  /** Ended with an error status (bad or foreign node id): further requests are ignored. */
  rejected?: boolean;
  delta: boolean;
  call: grpc.ServerDuplexStream<unknown, unknown>;
  nonce: number;
  sotw: Map<string, SotwType>;
  /** Delta: subscription (null = wildcard) and the version (deltaVersion) of each resource the client holds ('' = unknown: resend). */
  deltaSubs: Map<string, { names: Set<string> | null; held: Map<string, string>; nonce: string | null }>;
}

const typeOfResources = (r: XdsResources, type: TypeUrl): Map<string, AnyResource> =>
  type === TYPE_URL.listener ? r.listeners : type === TYPE_URL.cluster ? r.clusters : type === TYPE_URL.endpoint ? r.endpoints : r.secrets;

export interface AdsServerOptions {
  host?: string;
  port?: number;
  logger?: Logger;
  /**
   * Mutual TLS admitting only this peer's data planes (dataplane-auth.ts). Without it the server
   * speaks plaintext gRPC: only for tests and benchmarks of the protocol itself.
   */
  tls?: DataplaneTlsOptions;
  /** Checks a stream's node id (e.g. `<peer>/<pod>` of this peer); returns why it is refused, or null. */
  authorizeNode?: (nodeId: string) => string | null;
}

export async function startAdsServer(opts: AdsServerOptions = {}): Promise<AdsServer> {
  const log = opts.logger ?? pino({ level: 'silent' });
  const snapshots = new Map<string, Map<string, TypeSnapshot>>();
  const statusByNode = new Map<string, Map<string, TypeStatus>>();
  const streams = new Set<Stream>();
  const ackWaiters = new Set<() => void>();

  const snapshotFor = (node: string): Map<string, TypeSnapshot> | undefined => snapshots.get(node) ?? snapshots.get(node.split('/')[0] ?? node);
  const typeStatus = (node: string, type: string): TypeStatus => {
    let byType = statusByNode.get(node);
    if (!byType) statusByNode.set(node, (byType = new Map()));
    let st = byType.get(type);
    if (!st) byType.set(type, (st = { sentVersion: null, ackedVersion: null, nack: null, pushes: 0, acks: 0, nacks: 0 }));
    return st;
  };

  function pushSotw(s: Stream, type: string, force = false): void {
    if (!s.node) return;
    const sub = s.sotw.get(type);
    const snap = snapshotFor(s.node)?.get(type);
    if (!sub || !snap) return;
    const version = String(snap.version);
    const items = [...snap.items.entries()].filter(([name]) => sub.names === null || sub.names.includes(name));
    const namesKey = items.map(([n, i]) => `${n}@${i.hash}`).join(',');
    if (!force && sub.sentVersion === version && sub.lastSentNames === namesKey) return;
    s.nonce++;
    sub.nonce = String(s.nonce);
    sub.sentVersion = version;
    sub.lastSentNames = namesKey;
    const st = typeStatus(s.node, type);
    st.sentVersion = version;
    st.pushes++;
    s.call.write({ version_info: version, type_url: type, nonce: sub.nonce, resources: items.map(([, i]) => i.resource) });
  }

  function pushDelta(s: Stream, type: string): void {
    if (!s.node) return;
    const sub = s.deltaSubs.get(type);
    const snap = snapshotFor(s.node)?.get(type);
    if (!sub || !snap) return;
    const wants = (n: string): boolean => sub.names === null || sub.names.has(n);
    const changed = [...snap.items.entries()].filter(([name, i]) => wants(name) && sub.held.get(name) !== deltaVersion(i.hash));
    const removed = [...sub.held.keys()].filter((n) => !snap.items.has(n) || !wants(n));
    if (changed.length === 0 && removed.length === 0) return;
    for (const [name, i] of changed) sub.held.set(name, deltaVersion(i.hash));
    for (const n of removed) sub.held.delete(n);
    s.nonce++;
    sub.nonce = `d${s.nonce}`;
    const st = typeStatus(s.node, type);
    st.sentVersion = String(snap.version);
    st.pushes++;
    s.call.write({
      system_version_info: String(snap.version),
      type_url: type,
      nonce: sub.nonce,
      resources: changed.map(([name, i]) => ({ name, version: deltaVersion(i.hash), resource: i.resource })),
      removed_resources: removed,
    });
  }

  function onAckOrNack(s: Stream, type: string, version: string, error: string | undefined): void {
    if (!s.node) return;
    const st = typeStatus(s.node, type);
    if (error) {
      st.nacks++;
      st.nack = { version: st.sentVersion ?? version, message: error.slice(0, 4096), at: new Date().toISOString() };
      log.warn({ node: s.node, type, version: st.nack.version, error: st.nack.message }, 'xDS client rejected (NACK) a configuration; it keeps its last accepted one');
    } else {
      st.acks++;
      st.ackedVersion = version || st.sentVersion;
      if (st.nack && st.ackedVersion === st.sentVersion) st.nack = null;
      for (const w of ackWaiters) w();
    }
  }

  /** Ends the stream with a gRPC status (emitting 'error' on a server stream sends that status, then ends it). */
  function reject(s: Stream, code: grpc.status, message: string): false {
    s.rejected = true;
    s.call.emit('error', Object.assign(new Error(message), { code }));
    return false;
  }

  function bindNode(s: Stream, req: { node?: { id?: string } }): boolean {
    if (s.rejected) return false;
    if (s.node) return true;
    const id = req.node?.id;
    if (typeof id !== 'string' || id.length === 0 || id.length > 253) return reject(s, grpc.status.INVALID_ARGUMENT, 'the first request must carry node.id');
    const refused = opts.authorizeNode?.(id) ?? null;
    if (refused) {
      opts.tls?.refusals.refuse('xds', 'node-id', { node: id.slice(0, 64) }, refused);
      return reject(s, grpc.status.PERMISSION_DENIED, refused);
    }
    s.node = id;
    return true;
  }

  const server = new grpc.Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024 });
  server.addService(adsClientConstructor().service, {
    StreamAggregatedResources: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      const s: Stream = { node: null, delta: false, call, nonce: 0, sotw: new Map(), deltaSubs: new Map() };
      streams.add(s);
      call.on('data', (raw: unknown) => {
        const req = raw as { node?: { id?: string }; type_url?: string; version_info?: string; response_nonce?: string; resource_names?: string[]; error_detail?: { message?: string } };
        if (!bindNode(s, req)) return;
        const type = req.type_url ?? '';
        if (!TYPE_URL_RE.test(type)) return;
        let sub = s.sotw.get(type);
        const isNew = !sub;
        if (!sub) {
          if (s.sotw.size >= MAX_TYPES) return;
          s.sotw.set(type, (sub = { names: null, sentVersion: null, nonce: null, lastSentNames: '' }));
        }
        // A reply to an older response is stale: a newer one is on its way, and the client's reply
        // to that one carries its current subscription. Ignore it whole — also its names, or a
        // subscription change would be taken as already answered and never served.
        // The first request of a type on this stream is a subscription even if it carries a nonce
        // (a client resuming after a reconnect): that nonce is of another stream.
        const reply = !isNew && Boolean(req.response_nonce);
        if (reply && req.response_nonce !== sub.nonce) return;
        const names = (req.resource_names ?? []).slice(0, MAX_NAMES).sort();
        const newNames = names.length === 0 && WILDCARD_TYPES.has(type) ? null : names;
        const namesChanged = JSON.stringify(newNames) !== JSON.stringify(sub.names);
        sub.names = newNames;
        if (reply) {
          onAckOrNack(s, type, req.version_info ?? '', req.error_detail?.message);
          if (!namesChanged) return;
        }
        pushSotw(s, type, isNew || namesChanged);
      });
      call.on('end', () => call.end());
      call.on('error', () => undefined);
      call.on('close', () => streams.delete(s));
    },
    DeltaAggregatedResources: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      const s: Stream = { node: null, delta: true, call, nonce: 0, sotw: new Map(), deltaSubs: new Map() };
      streams.add(s);
      call.on('data', (raw: unknown) => {
        const req = raw as { node?: { id?: string }; type_url?: string; response_nonce?: string; resource_names_subscribe?: string[]; resource_names_unsubscribe?: string[]; initial_resource_versions?: Record<string, string>; error_detail?: { message?: string } };
        if (!bindNode(s, req)) return;
        const type = req.type_url ?? '';
        if (!TYPE_URL_RE.test(type)) return;
        const subscribe = (req.resource_names_subscribe ?? []).slice(0, MAX_NAMES);
        const unsubscribe = (req.resource_names_unsubscribe ?? []).slice(0, MAX_NAMES);
        let sub = s.deltaSubs.get(type);
        if (!sub) {
          if (s.deltaSubs.size >= MAX_TYPES) return;
          // An empty first subscription is the legacy wildcard (Listener and Cluster only).
          const wildcard = subscribe.includes('*') || (subscribe.length === 0 && WILDCARD_TYPES.has(type));
          sub = { names: wildcard ? null : new Set(subscribe), held: new Map(), nonce: null };
          // Versions the client says it holds are our deltaVersion of the content: matching ones are not resent.
          for (const [n, v] of Object.entries(req.initial_resource_versions ?? {}).slice(0, MAX_NAMES)) sub.held.set(n, v);
          s.deltaSubs.set(type, sub);
        } else {
          for (const n of subscribe) {
            if (n === '*') sub.names = null;
            else if (sub.names !== null && sub.names.size < MAX_NAMES) sub.names.add(n);
          }
          for (const n of unsubscribe) {
            if (n === '*') sub.names ??= new Set();
            else if (sub.names !== null) {
              sub.names.delete(n);
              sub.held.delete(n);
            }
          }
        }
        if (req.response_nonce) {
          if (req.response_nonce === sub.nonce) {
            const snap = s.node ? snapshotFor(s.node)?.get(type) : undefined;
            onAckOrNack(s, type, snap ? String(snap.version) : '', req.error_detail?.message);
            if (req.error_detail?.message) {
              // The client kept its previous versions, which we do not know: mark what we sent as
              // unknown so the next snapshot resends it, but keep the names so removals still reach it.
              for (const n of sub.held.keys()) sub.held.set(n, '');
            }
          }
          if (subscribe.length === 0 && unsubscribe.length === 0) return;
        }
        pushDelta(s, type);
      });
      call.on('end', () => call.end());
      call.on('error', () => undefined);
      call.on('close', () => streams.delete(s));
    },
  });

  /** Replaces the given types of a node's snapshot; bumps the version of, and pushes, only those that changed. */
  function update(nodeId: string, types: Array<[string, Map<string, AnyResource>]>): void {
    let byType = snapshots.get(nodeId);
    if (!byType) snapshots.set(nodeId, (byType = new Map()));
    const changedTypes: string[] = [];
    for (const [type, resources] of types) {
      const next = new Map([...resources].map(([name, r]) => [name, { resource: r, hash: resourceHash(r) }]));
      const prev = byType.get(type);
      const same = prev !== undefined && prev.items.size === next.size && [...next].every(([n, i]) => prev.items.get(n)?.hash === i.hash);
      if (same) continue;
      if (!prev && byType.size >= MAX_TYPES) throw new Error(`node ${nodeId}: more than ${MAX_TYPES} resource types`);
      byType.set(type, { version: (prev?.version ?? 0) + 1, items: next });
      changedTypes.push(type);
    }
    if (changedTypes.length === 0) return;
    const ordered = inPushOrder(changedTypes);
    for (const s of streams) {
      if (!s.node || (s.node !== nodeId && s.node.split('/')[0] !== nodeId)) continue;
      for (const type of ordered) (s.delta ? pushDelta : pushSotw)(s, type);
    }
  }

  const host = opts.host ?? '127.0.0.1';
  let listener: DataplaneTlsListener | null = null;
  let port: number;
  if (opts.tls) {
    listener = await listenDataplaneTls(server, 'xds', host, opts.port ?? 0, opts.tls);
    port = listener.port;
  } else {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${opts.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
  }

  return {
    address: { host, port },
    refreshIdentity: () => listener?.refreshIdentity(),
    recheckClients: () => listener?.recheck(),
    setSnapshot(nodeId, resources) {
      update(nodeId, ORDER.map((type) => [type, typeOfResources(resources, type)]));
    },
    setResources(nodeId, typeUrl, resources) {
      if (!TYPE_URL_RE.test(typeUrl)) throw new Error(`not a type URL: ${typeUrl}`);
      update(nodeId, [[typeUrl, resources]]);
    },
    status() {
      const nodes = new Set([...statusByNode.keys(), ...[...streams].map((s) => s.node).filter((n): n is string => n !== null)]);
      return {
        nodes: [...nodes].sort().map((node) => ({
          node,
          streams: [...streams].filter((s) => s.node === node).length,
          types: Object.fromEntries([...(statusByNode.get(node) ?? new Map<string, TypeStatus>())].map(([t, st]) => [t, { ...st, nack: st.nack ? { ...st.nack } : null }])),
        })),
      };
    },
    waitForAck(nodeId, timeoutMs = 5000) {
      const acked = (): boolean => {
        const byType = statusByNode.get(nodeId);
        const subscribed = [...streams].filter((s) => s.node === nodeId);
        if (!byType || subscribed.length === 0) return false;
        return [...byType.values()].every((st) => st.sentVersion === null || st.ackedVersion === st.sentVersion);
      };
      if (acked()) return Promise.resolve(true);
      return new Promise((resolve) => {
        const check = (): void => {
          if (acked()) done(true);
        };
        const timer = setTimeout(() => done(false), timeoutMs);
        const done = (v: boolean): void => {
          clearTimeout(timer);
          ackWaiters.delete(check);
          resolve(v);
        };
        ackWaiters.add(check);
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of streams) s.call.end();
        void listener?.close();
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000).unref();
      }),
  };
}
