// Slice → Envoy xDS resources (Listener, Cluster, ClusterLoadAssignment, Secret) in the naming
// contract of docs/xds.md, encoded with Envoy's own protos. The same resources drive a real Envoy
// tunnel pod and the Node data plane's xDS client (which reads the subset it needs; a test holds
// its decoding equal to dataplaneConfigFromSlice). The mapping table is in docs/xds.md.
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { dirname } from 'node:path';
import { encodeAny, TYPE_URL } from '../../protocol/envoy-protos.ts';
import { TUNNEL } from '../../protocol/contracts.ts';
import type { Slice } from '../slice/types.ts';
import { authzInputsHash } from './authz-inputs.ts';

export type AnyResource = { type_url: string; value: Buffer };

export interface XdsResources {
  listeners: Map<string, AnyResource>;
  clusters: Map<string, AnyResource>;
  endpoints: Map<string, AnyResource>;
  secrets: Map<string, AnyResource>;
  /** RouteConfigurations (ROUTE_TYPE_URL): the gateway's routes, by RDS so a new export does not change (and drain) the gateway's filter chain. */
  routes?: Map<string, AnyResource>;
}

export const ROUTE_TYPE_URL = 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration';

export interface ResourceOptions {
  /** Gateway bind address (0.0.0.0:443 in a pod); default: the peer's first gateway. */
  ingress?: { address: string; port: number } | null;
  /** Import listeners bind here (0.0.0.0 in a pod, a loopback address in local mode). */
  egressAddress: string;
  /** The reconciler's ext_authz gRPC endpoint as the data plane reaches it. */
  authz: { host: string; port: number };
  /**
   * Where data planes read this peer's certificate and key (the mounted Secret): the identity
   * secret names these files, never the key itself. watchedDirectory (default: the key's
   * directory) is what Envoy watches to reload both after a Kubernetes Secret update.
   */
  identityFiles: IdentityFiles;
  /** Per-connection idle time-out of tunnels (s). */
  idleTimeoutSeconds?: number;
}

export interface IdentityFiles {
  certificateFile: string;
  privateKeyFile: string;
  watchedDirectory?: string;
}

export const XDS_NAMES = {
  egress: (ns: string, name: string) => `clusterlink/egress/${ns}/${name}`,
  ingress: 'clusterlink/ingress',
  peer: (peer: string) => `clusterlink/peer/${peer}`,
  import: (ns: string, name: string) => `clusterlink/import/${ns}/${name}`,
  export: (ns: string, name: string) => `clusterlink/export/${ns}/${name}`,
  authz: 'clusterlink/authz',
  identity: 'clusterlink/identity',
  fabricCa: 'clusterlink/fabric-ca',
} as const;

const T = {
  downstreamTls: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
  upstreamTls: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
  networkExtAuthz: 'type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz',
  httpExtAuthz: 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
  setFilterState: 'type.googleapis.com/envoy.extensions.filters.network.set_filter_state.v3.Config',
  tcpProxy: 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
  hcm: 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  router: 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
  httpOptions: 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
} as const;

/** Dynamic metadata the egress ext_authz check returns (reconciler/xds/ext-authz-server.ts), read by the filters below. */
const AUTHZ_NS = 'envoy.filters.network.ext_authz';
const dyn = (key: string): string => `%DYNAMIC_METADATA(${AUTHZ_NS}:${key})%`;

const struct = (o: Record<string, string>) => ({ fields: Object.fromEntries(Object.entries(o).map(([k, v]) => [k, { stringValue: v }])) });
const sock = (address: string, port: number) => ({ socket_address: { address, port_value: port } });
const seconds = (s: number) => ({ seconds: String(s) });
const ads = { ads: {}, resource_api_version: 'V3' };
const sds = (name: string) => ({ name, sds_config: ads });
const tlsParams = { tls_minimum_protocol_version: 'TLSv1_3', tls_maximum_protocol_version: 'TLSv1_3' };

/**
 * Envoy's default circuit breakers allow 1,024 connections, pending requests and requests per
 * cluster: a tunnel pod refused the 1,025th open tunnel of one import (egress) or one export
 * (gateway), and the 1,025th concurrent ext_authz check. Each tunnel holds one upstream connection
 * (and, through the gateway, one request) for its whole life, so these caps are really caps on open
 * tunnels; the pod's own bound (memory, file descriptors) is the one that should decide.
 */
const CLUSTER_LIMITS = { thresholds: [{ priority: 'DEFAULT', max_connections: { value: 1_000_000 }, max_pending_requests: { value: 1_000_000 }, max_requests: { value: 1_000_000 } }] };

function authzGrpcService(timeoutSeconds = 2) {
  // Envoy's default :authority is the cluster name, and a '/' in it makes the gRPC server (Node's
  // HTTP/2) reset the stream as a protocol error: name a valid authority.
  return { envoy_grpc: { cluster_name: XDS_NAMES.authz, authority: 'clusterlink-authz' }, timeout: seconds(timeoutSeconds) };
}

/**
 * The exporters an Envoy egress listener balances over: the import's resolved sources with
 * gateways that name the same export as the first one (the CONNECT authority is one per
 * connection), in the order written. The ext_authz server refuses an Envoy connection that egress
 * policy allows to only some of them (Envoy's load balancer, not the check, picks the exporter).
 */
export function envoyExporters(imp: Slice['imports'][number]): Slice['imports'][number]['sources'] {
  const resolved = imp.sources.filter((s) => s.resolved && s.gateways.length > 0);
  const first = resolved[0];
  return first ? resolved.filter((s) => s.exportName === first.exportName && s.exportNamespace === first.exportNamespace) : [];
}

/** SHA-256 of the empty string: a pin no certificate matches. */
const NO_CERTIFICATE = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

const pinsOf = (slice: Slice, peers: Iterable<string>): string[] => {
  const want = new Set(peers);
  return slice.members.filter((m) => want.has(m.name) && m.certificateFingerprint !== null).map((m) => `${m.name}=${m.certificateFingerprint}`);
};

/**
 * The peers this peer's Envoy tunnels to at all: every import's exporters, sorted. Each import
 * cluster carries a TLS match for every one of them and each egress filter chain their pins, so a
 * commit that moves imports between peers already in this set changes endpoints (EDS) only: no
 * cluster and no listener, which Envoy takes in cheaply (docs/xds.md "Closing open tunnels").
 */
export function importedPeers(slice: Slice): string[] {
  return [...new Set(slice.imports.flatMap((imp) => envoyExporters(imp).map((e) => e.peer)))].sort();
}

function egressListener(slice: Slice, imp: Slice['imports'][number], opts: ResourceOptions, peers: string[]): AnyResource {
  const exporters = envoyExporters(imp);
  // The check allows or denies; the import's cluster (importCluster) picks the exporter by the
  // import's lbScheme. tcp_proxy waits for the first downstream bytes, so the check has answered
  // before the CONNECT (authority and client headers from its metadata) is sent.
  const clientHeaders = [
    [TUNNEL.headers.clientNamespace, 'clientNamespace'],
    [TUNNEL.headers.clientServiceAccount, 'clientServiceAccount'],
    [TUNNEL.headers.clientLabels, 'clientLabels'],
    [TUNNEL.headers.importRef, 'importRef'],
  ] as const;
  return encodeAny(TYPE_URL.listener, {
    name: XDS_NAMES.egress(imp.namespace, imp.name),
    address: sock(opts.egressAddress, imp.listenPort),
    metadata: { filter_metadata: { 'clusterlink.net': struct({ kind: 'egress', importNamespace: imp.namespace, importName: imp.name, peer: slice.self.name }) } },
    filter_chains: [
      {
        // What authorises the exporters (the pinned certificates of every peer this peer imports
        // from, not only this import's: moving imports between them changes no listener): a
        // revocation, a removal or a new certificate changes this filter chain, and Envoy drains
        // its open tunnels (--drain-time-s in deploy/base/tunnel.yaml; docs/xds.md "Closing open tunnels").
        metadata: { filter_metadata: { 'clusterlink.net': struct({ exporters: pinsOf(slice, peers).join(',') }) } },
        filters: [
          {
            name: 'envoy.filters.network.ext_authz',
            typed_config: encodeAny(T.networkExtAuthz, { stat_prefix: 'clusterlink_egress', grpc_service: authzGrpcService(), transport_api_version: 'V3', failure_mode_allow: false }),
          },
          {
            name: 'envoy.filters.network.tcp_proxy',
            typed_config: encodeAny(T.tcpProxy, {
              stat_prefix: `clusterlink_egress_${imp.namespace}_${imp.name}`,
              cluster: exporters.length > 0 ? XDS_NAMES.import(imp.namespace, imp.name) : XDS_NAMES.authz,
              upstream_connect_mode: 'ON_DOWNSTREAM_DATA',
              max_early_data_bytes: { value: 64 * 1024 },
              check_drain_close: { value: true },
              ...(imp.sessionAffinity === 'ClientIP' ? { hash_policy: [{ source_ip: {} }] } : {}),
              tunneling_config: {
                hostname: dyn('authority'),
                headers_to_add: clientHeaders.map(([header, key]) => ({ header: { key: header, value: dyn(key) }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' })),
              },
              idle_timeout: seconds(opts.idleTimeoutSeconds ?? 3600),
              // A refused connection ejects that gateway (outlier detection below): the second
              // attempt goes to the next exporter (round-robin) or the next priority (static).
              max_connect_attempts: { value: 2 },
            }),
          },
        ],
      },
    ],
  });
}

function upstreamTls(peer: string, pin: string | null) {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: encodeAny(T.upstreamTls, {
      sni: peer,
      common_tls_context: {
        tls_params: tlsParams,
        tls_certificate_sds_secret_configs: [sds(XDS_NAMES.identity)],
        // The CA bundle comes by SDS; the SAN must name this very peer, and its committed
        // certificate is pinned here too (a new pin changes the cluster).
        combined_validation_context: {
          default_validation_context: { match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: peer } }], ...(pin ? { verify_certificate_hash: [pin] } : {}) },
          validation_context_sds_secret_config: sds(XDS_NAMES.fabricCa),
        },
      },
    }),
  };
}

const HTTP1_UPSTREAM = { 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': encodeAny(T.httpOptions, { explicit_http_config: { http_protocol_options: {} } }) };

/** The import's gateways as Envoy balances them, each tagged with its peer (which selects the TLS match). */
function importAssignment(name: string, imp: Slice['imports'][number], exporters: ReturnType<typeof envoyExporters>) {
  const endpoint = (peer: string, g: { host: string; port: number }) => ({
    endpoint: { address: sock(g.host, g.port) },
    metadata: { filter_metadata: { 'envoy.transport_socket_match': struct({ peer }) } },
  });
  return {
    cluster_name: name,
    endpoints:
      imp.lbScheme === 'static'
        ? exporters.map((e, i) => ({ priority: i, lb_endpoints: e.gateways.map((g) => endpoint(e.peer, g)) }))
        : [{ lb_endpoints: exporters.flatMap((e) => e.gateways.map((g) => endpoint(e.peer, g))) }],
  };
}

/**
 * One cluster per import for Envoy. Its definition does not depend on which exporters the import
 * uses: the endpoints come by EDS (importAssignment, a ClusterLoadAssignment of the same name),
 * and transport_socket_matches holds one TLS context (SNI, SAN, pin) per peer in `peers` (the same
 * list in every import cluster), chosen by each endpoint's peer metadata. Moving an import between
 * exporters therefore changes only its ClusterLoadAssignment; Envoy skips identical clusters
 * instead of rebuilding them and their TLS contexts. An exporter with a gateway named by DNS (EDS
 * takes IP addresses only) keeps the endpoints inline in a STRICT_DNS cluster, which does change.
 * lbScheme round-robin / random balance over all gateways; static puts source i at priority i, so
 * traffic moves to the next exporter when the first one's gateways are ejected (a refused
 * connection ejects at once, a failed CONNECT after 3).
 */
function importCluster(slice: Slice, imp: Slice['imports'][number], peers: string[]): { cluster: AnyResource; endpoints: AnyResource | null } | null {
  const exporters = envoyExporters(imp);
  if (exporters.length === 0) return null;
  const pin = (peer: string): string | null => slice.members.find((m) => m.name === peer)?.certificateFingerprint ?? null;
  const name = XDS_NAMES.import(imp.namespace, imp.name);
  const allIps = exporters.every((e) => e.gateways.every((g) => isIP(g.host) !== 0));
  const assignment = importAssignment(name, imp, exporters);
  const cluster = encodeAny(TYPE_URL.cluster, {
    name,
    // Envoy 1.40 did not fail over to a gateway that an EDS update moved to another priority in
    // place (it kept sending to the ejected priority 0; test/e2e/envoy-e2e.test.ts, static
    // failover): the priority order of a static import is part of the cluster, so a change of it
    // builds the cluster afresh. Round-robin and random imports have one priority.
    metadata: { filter_metadata: { 'clusterlink.net': struct({ lbScheme: imp.lbScheme, ...(imp.lbScheme === 'static' ? { priorities: exporters.map((e) => e.peer).join(',') } : {}) }) } },
    ...(allIps ? { type: 'EDS', eds_cluster_config: { eds_config: ads } } : { type: 'STRICT_DNS', load_assignment: assignment }),
    connect_timeout: seconds(5),
    circuit_breakers: CLUSTER_LIMITS,
    lb_policy: imp.sessionAffinity === 'ClientIP' ? 'RING_HASH' : imp.lbScheme === 'random' ? 'RANDOM' : 'ROUND_ROBIN',
    transport_socket_matches: peers.map((peer) => ({ name: `peer/${peer}`, match: struct({ peer }), transport_socket: upstreamTls(peer, pin(peer)) })),
    // Never plaintext, and never another peer's TLS: an endpoint without a match (none is built
    // without one) gets a context whose pin no certificate has.
    transport_socket: upstreamTls('clusterlink.invalid', NO_CERTIFICATE),
    typed_extension_protocol_options: HTTP1_UPSTREAM,
    outlier_detection: {
      split_external_local_origin_errors: true,
      consecutive_local_origin_failure: { value: 1 },
      consecutive_5xx: { value: 3 },
      consecutive_gateway_failure: { value: 3 },
      base_ejection_time: seconds(10),
      max_ejection_percent: { value: 100 },
    },
  });
  return { cluster, endpoints: allIps ? encodeAny(TYPE_URL.endpoint, assignment) : null };
}

function ingressListener(slice: Slice, bind: { address: string; port: number }, opts: ResourceOptions): AnyResource {
  // The peers that may connect: importers of this peer's exports that are current members (a
  // revoked or removed peer is not a member), pinned to their committed certificates.
  const importers = pinsOf(slice, slice.exports.flatMap((e) => e.importers));
  return encodeAny(TYPE_URL.listener, {
    name: XDS_NAMES.ingress,
    address: sock(bind.address, bind.port),
    metadata: { filter_metadata: { 'clusterlink.net': struct({ kind: 'ingress', peer: slice.self.name }) } },
    listener_filters_timeout: seconds(5),
    per_connection_buffer_limit_bytes: { value: 1024 * 1024 },
    filter_chains: [
      {
        // What authorises a peer is in this filter chain: the fabric CA bundle and the pins of the
        // importers. A revocation, a removal or a new certificate changes it, and Envoy drains the
        // gateway's open tunnels (--drain-time-s; docs/xds.md "Closing open tunnels"); the SDS
        // secret alone would only apply to new handshakes.
        metadata: { filter_metadata: { 'clusterlink.net': struct({ importers: importers.join(',') }) } },
        transport_socket: {
          name: 'envoy.transport_sockets.tls',
          typed_config: encodeAny(T.downstreamTls, {
            require_client_certificate: { value: true },
            common_tls_context: {
              tls_params: tlsParams,
              tls_certificate_sds_secret_configs: [sds(XDS_NAMES.identity)],
              // An empty pin list would admit any certificate of the CA: with no importer left, pin
              // the SHA-256 of zero bytes, which no certificate has.
              validation_context: { trusted_ca: { inline_string: slice.caCertificates.join('\n') }, verify_certificate_hash: importers.length > 0 ? importers.map((p) => p.slice(p.indexOf('=') + 1)) : [NO_CERTIFICATE] },
            },
          }),
        },
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: encodeAny(T.hcm, {
              stat_prefix: 'clusterlink_ingress',
              codec_type: 'HTTP1',
              max_request_headers_kb: { value: TUNNEL.limits.maxHeaderBytes / 1024 },
              request_headers_timeout: seconds(TUNNEL.limits.headerTimeoutMs / 1000),
              common_http_protocol_options: { idle_timeout: seconds(opts.idleTimeoutSeconds ?? 3600), max_headers_count: { value: TUNNEL.limits.maxHeaders } },
              upgrade_configs: [{ upgrade_type: 'CONNECT' }],
              // The routes (one virtual host per export) come by RDS: an export added or removed
              // changes the RouteConfiguration, not this filter chain, so open tunnels stay.
              rds: { config_source: ads, route_config_name: XDS_NAMES.ingress },
              http_filters: [
                {
                  name: 'envoy.filters.http.ext_authz',
                  // The verified client certificate goes to the check: identity never comes from a header.
                  typed_config: encodeAny(T.httpExtAuthz, { grpc_service: authzGrpcService(), transport_api_version: 'V3', include_peer_certificate: true, failure_mode_allow: false }),
                },
                { name: 'envoy.filters.http.router', typed_config: encodeAny(T.router, {}) },
              ],
            }),
          },
        ],
      },
    ],
  });
}

function ingressRoutes(slice: Slice): AnyResource {
  return encodeAny(ROUTE_TYPE_URL, {
    name: XDS_NAMES.ingress,
    virtual_hosts: slice.exports.map((e) => ({
      name: `export/${e.namespace}/${e.name}`,
      domains: [TUNNEL.authority(e.name, e.namespace)],
      routes: [{ match: { connect_matcher: {} }, route: { cluster: XDS_NAMES.export(e.namespace, e.name), upgrade_configs: [{ upgrade_type: 'CONNECT', connect_config: {} }], timeout: seconds(0) } }],
    })),
  });
}

function peerCluster(slice: Slice, peer: string): AnyResource {
  return encodeAny(TYPE_URL.cluster, {
    name: XDS_NAMES.peer(peer),
    type: 'EDS',
    eds_cluster_config: { eds_config: ads },
    connect_timeout: seconds(5),
    circuit_breakers: CLUSTER_LIMITS,
    // The remote gateway speaks HTTP/1.1 CONNECT.
    typed_extension_protocol_options: HTTP1_UPSTREAM,
    outlier_detection: { consecutive_5xx: { value: 3 }, consecutive_gateway_failure: { value: 3 }, base_ejection_time: seconds(10) },
    transport_socket: upstreamTls(peer, slice.members.find((m) => m.name === peer)?.certificateFingerprint ?? null),
  });
}

/**
 * Mutual TLS to the reconciler's ext_authz server (reconciler/xds/dataplane-auth.ts): the data plane
 * presents the peer identity (the mounted files); the server must chain to the fabric CA and name
 * this peer. No pin: the reconciler may hold the committed peer.pem or a rotated one.
 */
function controlPlaneTls(slice: Slice) {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: encodeAny(T.upstreamTls, {
      sni: slice.self.name,
      common_tls_context: {
        tls_params: tlsParams,
        alpn_protocols: ['h2'],
        tls_certificate_sds_secret_configs: [sds(XDS_NAMES.identity)],
        validation_context: { trusted_ca: { inline_string: slice.caCertificates.join('\n') }, match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: slice.self.name } }] },
      },
    }),
  };
}

function staticCluster(name: string, host: string, port: number, http2 = false, metadata?: Record<string, string>, transportSocket?: ReturnType<typeof controlPlaneTls>): AnyResource {
  return encodeAny(TYPE_URL.cluster, {
    name,
    ...(transportSocket ? { transport_socket: transportSocket } : {}),
    ...(metadata ? { metadata: { filter_metadata: { 'clusterlink.net': struct(metadata) } } } : {}),
    type: isIP(host) ? 'STATIC' : 'STRICT_DNS',
    connect_timeout: seconds(5),
    circuit_breakers: CLUSTER_LIMITS,
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: sock(host, port) } }] }] },
    ...(http2 ? { typed_extension_protocol_options: { 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': encodeAny(T.httpOptions, { explicit_http_config: { http2_protocol_options: {} } }) } } : {}),
  });
}

export function buildResources(slice: Slice, opts: ResourceOptions): XdsResources {
  const out: XdsResources = { listeners: new Map(), clusters: new Map(), endpoints: new Map(), secrets: new Map(), routes: new Map() };
  const peers = importedPeers(slice);
  for (const imp of slice.imports) out.listeners.set(XDS_NAMES.egress(imp.namespace, imp.name), egressListener(slice, imp, opts, peers));
  const bind = opts.ingress !== undefined ? opts.ingress : slice.self.gateways[0] ? { address: slice.self.gateways[0].host, port: slice.self.gateways[0].port } : null;
  if (slice.exports.length > 0 && bind) {
    out.listeners.set(XDS_NAMES.ingress, ingressListener(slice, bind, opts));
    out.routes!.set(XDS_NAMES.ingress, ingressRoutes(slice));
  }
  // The authorization inputs (policies, members, revocations) ride on the ext_authz cluster as a hash:
  // when only they change, this resource changes, so data planes get a push and re-check open tunnels.
  out.clusters.set(XDS_NAMES.authz, staticCluster(XDS_NAMES.authz, opts.authz.host, opts.authz.port, true, { 'authz-inputs': authzInputsHash(slice) }, controlPlaneTls(slice)));
  for (const m of slice.members) {
    if (m.gateways.length === 0) continue;
    out.clusters.set(XDS_NAMES.peer(m.name), peerCluster(slice, m.name));
    out.endpoints.set(
      XDS_NAMES.peer(m.name),
      encodeAny(TYPE_URL.endpoint, { cluster_name: XDS_NAMES.peer(m.name), endpoints: [{ lb_endpoints: m.gateways.map((g) => ({ endpoint: { address: sock(g.host, g.port) } })) }] }),
    );
  }
  for (const imp of slice.imports) {
    const c = importCluster(slice, imp, peers);
    if (!c) continue;
    out.clusters.set(XDS_NAMES.import(imp.namespace, imp.name), c.cluster);
    if (c.endpoints) out.endpoints.set(XDS_NAMES.import(imp.namespace, imp.name), c.endpoints);
  }
  for (const e of slice.exports) out.clusters.set(XDS_NAMES.export(e.namespace, e.name), staticCluster(XDS_NAMES.export(e.namespace, e.name), e.host, e.port));
  // File references only: the key stays on the data plane's own volume (Envoy reloads both files
  // when the watched directory changes, e.g. the ..data symlink swap of a Secret volume).
  const files = opts.identityFiles;
  out.secrets.set(
    XDS_NAMES.identity,
    encodeAny(TYPE_URL.secret, {
      name: XDS_NAMES.identity,
      tls_certificate: {
        certificate_chain: { filename: files.certificateFile },
        private_key: { filename: files.privateKeyFile },
        watched_directory: { path: files.watchedDirectory ?? dirname(files.privateKeyFile) },
      },
    }),
  );
  out.secrets.set(
    XDS_NAMES.fabricCa,
    encodeAny(TYPE_URL.secret, {
      name: XDS_NAMES.fabricCa,
      validation_context: { trusted_ca: { inline_string: slice.caCertificates.join('\n') }, verify_certificate_hash: slice.members.map((m) => m.certificateFingerprint).filter((f): f is string => f !== null) },
    }),
  );
  return out;
}

/** A stable content hash of one resource (what the ADS server compares to push only changes). */
export function resourceHash(r: AnyResource): string {
  return createHash('sha256').update(r.type_url).update(r.value).digest('hex');
}
