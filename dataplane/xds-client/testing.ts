// Test helpers for the xDS client: Envoy resources in the shared naming contract, and a small
// ADS server (State of the World and delta) on @grpc/grpc-js (real gRPC, real Envoy protos) whose snapshot a
// test controls and which records every ACK and NACK it receives.
import * as grpc from '@grpc/grpc-js';
import { adsClientConstructor, encodeAny, TYPE_URL } from './protos.ts';

type AnyResource = { type_url: string; value: Buffer };

const struct = (o: Record<string, string>) => ({ fields: Object.fromEntries(Object.entries(o).map(([k, v]) => [k, { stringValue: v }])) });
const sock = (address: string, port: number) => ({ socket_address: { address, port_value: port } });

export const resources = {
  egressListener(ns: string, name: string, address: string, port: number, meta: Record<string, string> = { kind: 'egress', importNamespace: ns, importName: name }): AnyResource {
    return encodeAny(TYPE_URL.listener, {
      name: `clusterlink/egress/${ns}/${name}`,
      address: sock(address, port),
      metadata: { filter_metadata: { 'clusterlink.net': struct(meta) } },
    });
  },
  ingressListener(address: string, port: number): AnyResource {
    return encodeAny(TYPE_URL.listener, {
      name: 'clusterlink/ingress',
      address: sock(address, port),
      metadata: { filter_metadata: { 'clusterlink.net': struct({ kind: 'ingress' }) } },
      filter_chains: [
        {
          transport_socket: {
            name: 'envoy.transport_sockets.tls',
            typed_config: encodeAny('type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext', {
              require_client_certificate: { value: true },
              common_tls_context: {
                tls_certificate_sds_secret_configs: [{ name: 'clusterlink/identity', sds_config: { ads: {} } }],
                validation_context_sds_secret_config: { name: 'clusterlink/fabric-ca', sds_config: { ads: {} } },
              },
            }),
          },
        },
      ],
    });
  },
  peerCluster(peer: string): AnyResource {
    return encodeAny(TYPE_URL.cluster, {
      name: `clusterlink/peer/${peer}`,
      type: 'EDS',
      eds_cluster_config: { eds_config: { ads: {} } },
      transport_socket: {
        name: 'envoy.transport_sockets.tls',
        typed_config: encodeAny('type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', {
          sni: peer,
          common_tls_context: {
            tls_certificate_sds_secret_configs: [{ name: 'clusterlink/identity', sds_config: { ads: {} } }],
            validation_context_sds_secret_config: { name: 'clusterlink/fabric-ca', sds_config: { ads: {} } },
          },
        }),
      },
    });
  },
  endpoints(peer: string, endpoints: Array<{ host: string; port: number }>): AnyResource {
    return encodeAny(TYPE_URL.endpoint, {
      cluster_name: `clusterlink/peer/${peer}`,
      endpoints: [{ lb_endpoints: endpoints.map((e) => ({ endpoint: { address: sock(e.host, e.port) } })) }],
    });
  },
  identity(certificatePem: string, privateKeyPem: string): AnyResource {
    return encodeAny(TYPE_URL.secret, {
      name: 'clusterlink/identity',
      tls_certificate: { certificate_chain: { inline_string: certificatePem }, private_key: { inline_string: privateKeyPem } },
    });
  },
  /** The identity as our control plane sends it: file names of the mounted Secret, never the key. */
  identityFiles(certificateFile: string, privateKeyFile: string): AnyResource {
    return encodeAny(TYPE_URL.secret, {
      name: 'clusterlink/identity',
      tls_certificate: { certificate_chain: { filename: certificateFile }, private_key: { filename: privateKeyFile }, watched_directory: { path: certificateFile.slice(0, certificateFile.lastIndexOf('/')) } },
    });
  },
  fabricCa(caPem: string, pins: string[]): AnyResource {
    return encodeAny(TYPE_URL.secret, {
      name: 'clusterlink/fabric-ca',
      validation_context: { trusted_ca: { inline_string: caPem }, verify_certificate_hash: pins },
    });
  },
};

export interface AdsEvent {
  typeUrl: string;
  version: string;
  nonce: string;
  names: string[];
  error: string | null;
}

export interface TestAdsServer {
  address: string;
  port: number;
  /** Replaces the resources of one type (a new version) and pushes them to every stream. */
  set(typeUrl: string, version: string, items: Array<{ name: string; resource: AnyResource }>): void;
  /** Every request received after the first of each stream (ACKs and NACKs). */
  events: AdsEvent[];
  streams(): number;
  stop(): Promise<void>;
}

interface StreamState {
  call: grpc.ServerDuplexStream<unknown, unknown>;
  names: Map<string, string[]>;
  nonce: number;
}

export async function startTestAdsServer(port = 0): Promise<TestAdsServer> {
  const snapshot = new Map<string, { version: string; items: Array<{ name: string; resource: AnyResource }> }>();
  const streams = new Set<StreamState>();
  const events: AdsEvent[] = [];
  const wildcard = new Set<string>([TYPE_URL.listener, TYPE_URL.cluster]);

  const push = (st: StreamState, typeUrl: string): void => {
    const snap = snapshot.get(typeUrl);
    if (!snap) return;
    const wanted = st.names.get(typeUrl) ?? [];
    const items = wildcard.has(typeUrl) ? snap.items : snap.items.filter((i) => wanted.includes(i.name));
    st.nonce++;
    st.call.write({ version_info: snap.version, type_url: typeUrl, nonce: String(st.nonce), resources: items.map((i) => i.resource) });
  };

  const server = new grpc.Server();
  server.addService(adsClientConstructor().service, {
    StreamAggregatedResources: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      const st: StreamState = { call, names: new Map(), nonce: 0 };
      streams.add(st);
      call.on('data', (raw: unknown) => {
        const req = raw as { type_url: string; version_info?: string; response_nonce?: string; resource_names?: string[]; error_detail?: { message?: string } };
        const reqNames = [...(req.resource_names ?? [])].sort();
        const before = st.names.get(req.type_url);
        st.names.set(req.type_url, reqNames);
        if (req.response_nonce) {
          events.push({ typeUrl: req.type_url, version: req.version_info ?? '', nonce: req.response_nonce, names: reqNames, error: req.error_detail?.message ?? null });
          // An ACK or NACK: answer only a changed subscription.
          if (before && before.join() === reqNames.join()) return;
        }
        push(st, req.type_url);
      });
      call.on('end', () => call.end());
      call.on('error', () => undefined);
      call.on('close', () => streams.delete(st));
    },
    DeltaAggregatedResources: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      const st: DeltaState = { call, subs: new Map(), held: new Map(), nonce: 0 };
      deltaStreams.add(st);
      call.on('data', (raw: unknown) => {
        const req = raw as {
          type_url: string;
          response_nonce?: string;
          resource_names_subscribe?: string[];
          resource_names_unsubscribe?: string[];
          initial_resource_versions?: Record<string, string>;
          error_detail?: { message?: string };
        };
        const subscribe = req.resource_names_subscribe ?? [];
        const unsubscribe = req.resource_names_unsubscribe ?? [];
        if (req.response_nonce) {
          events.push({ typeUrl: req.type_url, version: '', nonce: req.response_nonce, names: subscribe, error: req.error_detail?.message ?? null });
          if (subscribe.length === 0 && unsubscribe.length === 0) return;
        }
        let sub = st.subs.get(req.type_url);
        if (sub === undefined) {
          sub = subscribe.length === 0 || subscribe.includes('*') ? 'wildcard' : new Set(subscribe);
          st.held.set(req.type_url, new Map(Object.entries(req.initial_resource_versions ?? {})));
        } else if (sub !== 'wildcard') {
          for (const n of subscribe) sub.add(n);
          for (const n of unsubscribe) {
            sub.delete(n);
            st.held.get(req.type_url)?.delete(n);
          }
        }
        st.subs.set(req.type_url, sub);
        pushDelta(st, req.type_url);
      });
      call.on('end', () => call.end());
      call.on('error', () => undefined);
      call.on('close', () => deltaStreams.delete(st));
    },
  });
  // Delta: per stream, which names of each type it subscribed and which version of each it holds.
  interface DeltaState {
    call: grpc.ServerDuplexStream<unknown, unknown>;
    subs: Map<string, Set<string> | 'wildcard'>;
    held: Map<string, Map<string, string>>;
    nonce: number;
  }
  const deltaStreams = new Set<DeltaState>();
  const pushDelta = (st: DeltaState, typeUrl: string): void => {
    const snap = snapshot.get(typeUrl);
    const sub = st.subs.get(typeUrl);
    if (!snap || !sub) return;
    const held = st.held.get(typeUrl) ?? new Map<string, string>();
    st.held.set(typeUrl, held);
    const wants = (n: string) => sub === 'wildcard' || sub.has(n);
    const changed = snap.items.filter((i) => wants(i.name) && held.get(i.name) !== snap.version);
    const removed = [...held.keys()].filter((n) => wants(n) && !snap.items.some((i) => i.name === n));
    if (changed.length === 0 && removed.length === 0) return;
    for (const i of changed) held.set(i.name, snap.version);
    for (const n of removed) held.delete(n);
    st.nonce++;
    st.call.write({
      system_version_info: snap.version,
      type_url: typeUrl,
      nonce: `d${st.nonce}`,
      resources: changed.map((i) => ({ name: i.name, version: snap.version, resource: i.resource })),
      removed_resources: removed,
    });
  };
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    address: `127.0.0.1:${bound}`,
    port: bound,
    events,
    streams: () => streams.size + deltaStreams.size,
    set(typeUrl, version, items) {
      snapshot.set(typeUrl, { version, items });
      for (const st of streams) if (st.names.has(typeUrl)) push(st, typeUrl);
      for (const st of deltaStreams) pushDelta(st, typeUrl);
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const st of streams) st.call.end();
        for (const st of deltaStreams) st.call.end();
        server.forceShutdown();
        resolve();
      }),
  };
}
