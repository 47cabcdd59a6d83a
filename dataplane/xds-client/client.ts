// The Node data plane's ADS client (State of the World, one bidirectional stream for all types).
// Subscribes to CDS and LDS (wildcard), then to the EDS and SDS names those refer to; ACKs what it
// accepts, NACKs a response with an invalid resource (error_detail, the previous resources of that
// type stay), and hands a DataplaneConfig to the data plane only when the whole set is consistent.
// When the control plane goes away the last good config keeps serving; the client reconnects with
// exponential back-off and jitter and resubscribes with the versions it holds.
import * as grpc from '@grpc/grpc-js';
import { readFileSync, statSync } from 'node:fs';
import { pino, type Logger } from 'pino';
import { z } from 'zod';
import type { DataplaneConfig } from '../../protocol/contracts.ts';
import {
  assembleConfig,
  decodeResource,
  ResourceError,
  wantedNames,
  type DecodedCluster,
  type DecodedEndpoints,
  type DecodedListener,
  type DecodedSecret,
  type ResourceState,
} from './decode.ts';
import { adsClientConstructor, TYPE_URL, type ResourceKind } from '../../protocol/envoy-protos.ts';

export interface XdsClientOptions {
  /** host:port of the reconciler's ADS server. */
  server: string;
  /** `<peer>` or `<peer>/<pod>`. */
  nodeId: string;
  onConfig: (cfg: DataplaneConfig) => void | Promise<void>;
  /** Default: insecure (tests of the protocol only: the control plane requires mutual TLS, see tls.ts). */
  credentials?: grpc.ChannelCredentials;
  /** TLS server name (SNI) to ask for: the peer name, whatever address the channel dials. */
  serverName?: string;
  /** State of the World (default) or incremental (delta) ADS. */
  protocol?: 'sotw' | 'delta';
  backoff?: { initialMs?: number; maxMs?: number };
  /** How often the files named by the identity secret are checked for a rotation (default 2 s). */
  identityPollMs?: number;
  random?: () => number;
  logger?: Logger;
}

export interface XdsClientStatus {
  connected: boolean;
  /** Version of the config last handed to onConfig; null before the first. */
  configVersion: string | null;
  /** Last accepted version per resource type. */
  versions: Record<ResourceKind, string>;
  acks: number;
  nacks: number;
  lastNack: { typeUrl: string; message: string } | null;
  /** What keeps the accepted resources from forming a config (empty once consistent). */
  missing: string[];
  reconnects: number;
}

export interface XdsClient {
  stop(): Promise<void>;
  status(): XdsClientStatus;
}

/** Bounds on what the control plane may send (it is trusted, but a bug must not take the data plane down). */
const LIMITS = { maxMessageBytes: 64 * 1024 * 1024, maxResourcesPerResponse: 100_000, maxIdentityFileBytes: 64 * 1024 } as const;

interface CachedFile {
  text: string | null;
  /** inode, size and mtime: a Secret volume's symlink swap changes it. */
  signature: string;
}

function readBoundedFile(path: string): CachedFile {
  try {
    const st = statSync(path);
    const signature = `${st.ino}:${st.size}:${st.mtimeMs}`;
    if (!st.isFile() || st.size > LIMITS.maxIdentityFileBytes) return { text: null, signature };
    return { text: readFileSync(path, 'utf8'), signature };
  } catch (err) {
    return { text: null, signature: `error:${(err as NodeJS.ErrnoException).code ?? ''}` };
  }
}

const discoveryResponse = z.object({
  version_info: z.string().max(256).optional(),
  type_url: z.string().max(512),
  nonce: z.string().max(256).optional(),
  resources: z.array(z.object({ type_url: z.string().max(512), value: z.instanceof(Uint8Array) })).max(LIMITS.maxResourcesPerResponse).optional(),
});

const deltaResponse = z.object({
  system_version_info: z.string().max(256).optional(),
  type_url: z.string().max(512),
  nonce: z.string().max(256).optional(),
  resources: z
    .array(z.object({ name: z.string().max(512), version: z.string().max(256).optional(), resource: z.object({ type_url: z.string().max(512), value: z.instanceof(Uint8Array) }).nullish() }))
    .max(LIMITS.maxResourcesPerResponse)
    .optional(),
  removed_resources: z.array(z.string().max(512)).max(LIMITS.maxResourcesPerResponse).optional(),
});

const KIND_OF = new Map<string, ResourceKind>(Object.entries(TYPE_URL).map(([k, v]) => [v, k as ResourceKind]));
/** Envoy's subscription order: clusters before listeners, endpoints and secrets once named. */
const ORDER: ResourceKind[] = ['cluster', 'endpoint', 'listener', 'secret'];
const WILDCARD: ReadonlySet<ResourceKind> = new Set(['cluster', 'listener']);

interface AdsStream {
  write(msg: unknown): boolean;
  end(): void;
  cancel(): void;
  on(event: 'data', cb: (msg: unknown) => void): void;
  on(event: 'error', cb: (err: Error) => void): void;
  on(event: 'end' | 'close', cb: () => void): void;
  on(event: 'status', cb: (s: grpc.StatusObject) => void): void;
}

export function startXdsClient(opts: XdsClientOptions): XdsClient {
  const log = opts.logger ?? pino({ name: 'xds-client' });
  const random = opts.random ?? Math.random;
  const initialMs = opts.backoff?.initialMs ?? 250;
  const maxMs = opts.backoff?.maxMs ?? 30_000;
  const self = opts.nodeId.split('/')[0] ?? opts.nodeId;
  const Ads = adsClientConstructor();
  const client = new Ads(opts.server, opts.credentials ?? grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': LIMITS.maxMessageBytes,
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.initial_reconnect_backoff_ms': initialMs,
    'grpc.max_reconnect_backoff_ms': maxMs,
    ...(opts.serverName ? { 'grpc.ssl_target_name_override': opts.serverName } : {}),
  });

  const state: ResourceState = { listeners: new Map(), clusters: new Map(), endpoints: new Map(), secrets: new Map() };
  const versions: Record<ResourceKind, string> = { cluster: '', endpoint: '', listener: '', secret: '' };
  const nonces: Record<ResourceKind, string> = { cluster: '', endpoint: '', listener: '', secret: '' };
  let subscribed: Record<'endpoint' | 'secret', string[]> = { endpoint: [], secret: [] };
  const delta = opts.protocol === 'delta';
  /** Delta: the version of every resource held, announced on reconnect (initial_resource_versions). */
  const resourceVersions: Record<ResourceKind, Map<string, string>> = { cluster: new Map(), endpoint: new Map(), listener: new Map(), secret: new Map() };
  let stream: AdsStream | null = null;
  let connected = false;
  let stopped = false;
  let attempt = 0;
  let reconnects = 0;
  let retryTimer: NodeJS.Timeout | null = null;
  let acks = 0;
  let nacks = 0;
  let lastNack: XdsClientStatus['lastNack'] = null;
  let missing: string[] = [];
  let appliedJson: string | null = null;
  let configVersion: string | null = null;
  /** onConfig calls run one at a time, in order. */
  let applying: Promise<void> = Promise.resolve();
  /** Files the identity secret names (the mounted peer Secret), re-read when they change on disk. */
  const identityFiles = new Map<string, CachedFile>();
  const readIdentityFile = (path: string): string | null => {
    let f = identityFiles.get(path);
    if (!f) {
      identityFiles.set(path, (f = readBoundedFile(path)));
      if (f.text === null) log.warn({ file: path, error: f.signature }, 'cannot read a file the identity secret names (missing, unreadable or over 64 KiB); retrying');
    }
    return f.text;
  };
  const identityPoll = setInterval(() => {
    let changed = false;
    for (const [path, f] of identityFiles) {
      const next = readBoundedFile(path);
      if (next.signature === f.signature && next.text === f.text) continue;
      identityFiles.set(path, next);
      changed = true;
    }
    if (changed) {
      log.info({ files: [...identityFiles.keys()] }, 'identity files changed on disk: reloading the peer certificate and key');
      tryApply();
    }
  }, opts.identityPollMs ?? 2000);
  identityPoll.unref();

  const node = { id: opts.nodeId, cluster: 'clusterlink', user_agent_name: 'clusterlink-node-dataplane' };

  const namesFor = (kind: ResourceKind): string[] => (WILDCARD.has(kind) ? [] : subscribed[kind as 'endpoint' | 'secret']);

  function send(s: AdsStream, kind: ResourceKind, extra: { error_detail?: { code: number; message: string } } = {}): void {
    if (delta) {
      // Delta: an ACK/NACK carries only the nonce; subscriptions change through subscribeDelta.
      s.write({ node, type_url: TYPE_URL[kind], response_nonce: nonces[kind], ...extra });
      return;
    }
    s.write({ node, type_url: TYPE_URL[kind], version_info: versions[kind], response_nonce: nonces[kind], resource_names: namesFor(kind), ...extra });
  }

  /** Delta: the first request of a type on a stream (wildcard for LDS/CDS: an empty subscription list). */
  function openDelta(s: AdsStream, kind: ResourceKind): void {
    s.write({
      node,
      type_url: TYPE_URL[kind],
      resource_names_subscribe: namesFor(kind),
      initial_resource_versions: Object.fromEntries(resourceVersions[kind]),
    });
  }

  function subscribeDelta(s: AdsStream, kind: 'endpoint' | 'secret', before: string[], after: string[]): void {
    const add = after.filter((n) => !before.includes(n));
    const remove = before.filter((n) => !after.includes(n));
    if (before.length === 0) return openDelta(s, kind);
    s.write({ node, type_url: TYPE_URL[kind], resource_names_subscribe: add, resource_names_unsubscribe: remove });
  }

  function connect(): void {
    if (stopped) return;
    const ads = client as unknown as { StreamAggregatedResources(): AdsStream; DeltaAggregatedResources(): AdsStream };
    const s = delta ? ads.DeltaAggregatedResources() : ads.StreamAggregatedResources();
    stream = s;
    let sawResponse = false;
    s.on('data', (raw) => {
      if (!sawResponse) {
        sawResponse = true;
        connected = true;
        attempt = 0;
        log.info({ server: opts.server }, 'xDS stream established');
      }
      if (delta) handleDelta(s, raw);
      else handleResponse(s, raw);
    });
    s.on('error', () => {
      /* reported through 'status' */
    });
    s.on('status', (st) => {
      if (stream !== s) return;
      stream = null;
      connected = false;
      if (stopped) return;
      const delay = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 20)) * (0.5 + random() * 0.5);
      attempt++;
      reconnects++;
      log.warn({ code: st.code, details: st.details, retryInMs: Math.round(delay), configVersion }, 'xDS stream closed; serving the last good config, reconnecting');
      retryTimer = setTimeout(() => {
        retryTimer = null;
        connect();
      }, delay);
    });
    // A fresh stream: no nonces; the versions we hold tell the server what we have.
    for (const k of ORDER) nonces[k] = '';
    const open = delta ? openDelta : (st: AdsStream, k: ResourceKind) => send(st, k);
    open(s, 'cluster');
    open(s, 'listener');
    if (subscribed.endpoint.length > 0) open(s, 'endpoint');
    if (subscribed.secret.length > 0) open(s, 'secret');
  }

  /** Parses a response and records its nonce; null (logged) when it is malformed or of an unknown type. */
  function accepted<T extends { type_url: string; nonce?: string | undefined }>(schema: z.ZodType<T>, raw: unknown, what: string): { res: T; kind: ResourceKind } | null {
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      log.error({ issue: parsed.error.issues[0]?.message }, `malformed ${what} ignored`);
      return null;
    }
    const res = parsed.data;
    const kind = KIND_OF.get(res.type_url);
    if (!kind) {
      log.warn({ typeUrl: res.type_url }, 'response of an unsubscribed type ignored');
      return null;
    }
    nonces[kind] = res.nonce ?? '';
    return { res, kind };
  }

  function handleResponse(s: AdsStream, raw: unknown): void {
    const got = accepted(discoveryResponse, raw, 'DiscoveryResponse');
    if (!got) return;
    const { res, kind } = got;
    const decoded: Array<DecodedListener | DecodedCluster | DecodedEndpoints | DecodedSecret> = [];
    try {
      const seen = new Set<string>();
      for (const any of res.resources ?? []) {
        const d = decodeResource(res.type_url, any);
        if (seen.has(d.value.name)) throw new ResourceError(`duplicate ${kind} ${d.value.name}`);
        seen.add(d.value.name);
        decoded.push(d.value);
      }
    } catch (err) {
      nack(s, kind, res.type_url, res.version_info, err instanceof ResourceError ? err.message : `cannot decode: ${(err as Error).message}`);
      return;
    }
    accept(kind, decoded);
    versions[kind] = res.version_info ?? '';
    acks++;
    send(s, kind);
    followSubscriptions(s);
    tryApply();
  }

  /** New clusters or listeners may name other endpoints or secrets: follow them. */
  function followSubscriptions(s: AdsStream): void {
    const wanted = wantedNames(state);
    for (const k of ['endpoint', 'secret'] as const) {
      const before = subscribed[k];
      if (wanted[k].join('\n') === before.join('\n')) continue;
      subscribed = { ...subscribed, [k]: wanted[k] };
      const held = k === 'endpoint' ? state.endpoints : state.secrets;
      for (const name of [...held.keys()]) {
        if (!wanted[k].includes(name)) {
          held.delete(name);
          resourceVersions[k].delete(name);
        }
      }
      if (delta) subscribeDelta(s, k, before, wanted[k]);
      else send(s, k);
    }
  }

  function nack(s: AdsStream, kind: ResourceKind, typeUrl: string, version: string | undefined, message: string): void {
    nacks++;
    lastNack = { typeUrl, message };
    log.error({ typeUrl, version, error: message, kept: versions[kind] }, 'xDS resource rejected (NACK); keeping the last good config');
    send(s, kind, { error_detail: { code: grpc.status.INVALID_ARGUMENT, message } });
  }

  function handleDelta(s: AdsStream, raw: unknown): void {
    const got = accepted(deltaResponse, raw, 'DeltaDiscoveryResponse');
    if (!got) return;
    const { res, kind } = got;
    const upserts: Array<{ version: string; value: DecodedListener | DecodedCluster | DecodedEndpoints | DecodedSecret }> = [];
    try {
      for (const r of res.resources ?? []) {
        if (!r.resource) throw new ResourceError(`resource ${r.name} without a body`);
        const d = decodeResource(res.type_url, r.resource);
        if (d.value.name !== r.name) throw new ResourceError(`resource named ${r.name} holds ${d.value.name}`);
        upserts.push({ version: r.version ?? '', value: d.value });
      }
    } catch (err) {
      nack(s, kind, res.type_url, res.system_version_info, err instanceof ResourceError ? err.message : `cannot decode: ${(err as Error).message}`);
      return;
    }
    const held = mapOf(kind);
    for (const name of res.removed_resources ?? []) {
      held.delete(name);
      resourceVersions[kind].delete(name);
    }
    for (const u of upserts) {
      held.set(u.value.name, u.value);
      resourceVersions[kind].set(u.value.name, u.version);
    }
    versions[kind] = res.system_version_info || versions[kind];
    acks++;
    send(s, kind);
    followSubscriptions(s);
    tryApply();
  }

  function mapOf(kind: ResourceKind): Map<string, DecodedListener | DecodedCluster | DecodedEndpoints | DecodedSecret> {
    switch (kind) {
      case 'listener':
        return state.listeners as Map<string, DecodedListener | DecodedCluster | DecodedEndpoints | DecodedSecret>;
      case 'cluster':
        return state.clusters as Map<string, DecodedListener | DecodedCluster | DecodedEndpoints | DecodedSecret>;
      case 'endpoint':
        return state.endpoints as Map<string, DecodedListener | DecodedCluster | DecodedEndpoints | DecodedSecret>;
      case 'secret':
        return state.secrets as Map<string, DecodedListener | DecodedCluster | DecodedEndpoints | DecodedSecret>;
    }
  }

  function accept(kind: ResourceKind, decoded: Array<DecodedListener | DecodedCluster | DecodedEndpoints | DecodedSecret>): void {
    if (kind === 'listener') state.listeners = new Map((decoded as DecodedListener[]).map((d) => [d.name, d]));
    else if (kind === 'cluster') state.clusters = new Map((decoded as DecodedCluster[]).map((d) => [d.name, d]));
    // SotW for EDS/SDS: a response carries the named resources it updates; others stay.
    else if (kind === 'endpoint') for (const d of decoded as DecodedEndpoints[]) state.endpoints.set(d.name, d);
    else for (const d of decoded as DecodedSecret[]) state.secrets.set(d.name, d);
  }

  function tryApply(): void {
    const version = `cds=${versions.cluster},eds=${versions.endpoint},lds=${versions.listener},sds=${versions.secret}`;
    const result = assembleConfig(state, self, version, readIdentityFile);
    if (!result.ok) {
      missing = result.missing;
      return;
    }
    missing = [];
    const { version: _v, ...content } = result.config;
    const json = JSON.stringify(content);
    if (json === appliedJson) return;
    appliedJson = json;
    const cfg = result.config;
    applying = applying.then(async () => {
      try {
        await opts.onConfig(cfg);
        configVersion = cfg.version;
        log.info({ version: cfg.version, egress: cfg.egress.length, upstreams: cfg.upstreams.length }, 'data plane config applied');
      } catch (err) {
        log.error({ err, version: cfg.version }, 'data plane could not apply the config');
      }
    });
  }

  connect();

  return {
    status: () => ({ connected, configVersion, versions: { ...versions }, acks, nacks, lastNack, missing: [...missing], reconnects }),
    stop: async () => {
      stopped = true;
      clearInterval(identityPoll);
      if (retryTimer) clearTimeout(retryTimer);
      const s = stream;
      stream = null;
      connected = false;
      s?.cancel();
      client.close();
      await applying;
    },
  };
}
