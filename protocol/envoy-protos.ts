// Envoy protos for the Node data plane's xDS client: the ADS service (via @grpc/proto-loader, for
// @grpc/grpc-js) and a protobufjs Root to decode the resources inside google.protobuf.Any. The data
// plane loads its own copy so it can run as a process of its own, without the reconciler's modules.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const TYPE_URL = {
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  endpoint: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  secret: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
} as const;
export type ResourceKind = keyof typeof TYPE_URL;

const RESOURCE_PROTOS = [
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/transport_sockets/tls/v3/secret.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/network/ext_authz/v3/ext_authz.proto',
  'envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  // Referenced by the reconciler's resources (reconciler/xds/resources.ts) so they encode and verify.
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/network/set_filter_state/v3/set_filter_state.proto',
  'envoy/config/bootstrap/v3/bootstrap.proto',
];

export function envoyProtoDirs(): string[] {
  const main = createRequire(import.meta.url).resolve('@grpc/grpc-js-xds');
  const deps = join(dirname(main), '..', '..', 'deps');
  return ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d));
}

let root: protobuf.Root | null = null;

function resourceRoot(): protobuf.Root {
  if (root) return root;
  const dirs = envoyProtoDirs();
  const r = new protobuf.Root();
  r.resolvePath = (_origin, target) => {
    for (const d of dirs) {
      const p = join(d, target);
      if (existsSync(p)) return p;
    }
    return target;
  };
  r.loadSync(RESOURCE_PROTOS, { keepCase: true });
  addEnvoy140Fields(r);
  r.resolveAll();
  root = r;
  return r;
}

/**
 * Fields of Envoy 1.40 (the version deploy/ runs) newer than the envoy-api copy @grpc/grpc-js-xds
 * ships; numbers and types as in Envoy 1.40's own descriptors. The egress listener needs them: without
 * ON_DOWNSTREAM_DATA, tcp_proxy opens its upstream before the network ext_authz filter has answered.
 */
function addEnvoy140Fields(r: protobuf.Root): void {
  const ns = 'envoy.extensions.filters.network.tcp_proxy.v3';
  const tcpProxy = r.lookupType(`${ns}.TcpProxy`);
  if (tcpProxy.fields.upstream_connect_mode) return;
  (r.lookup(ns) as protobuf.Namespace).add(new protobuf.Enum('UpstreamConnectMode', { IMMEDIATE: 0, ON_DOWNSTREAM_DATA: 1, ON_DOWNSTREAM_TLS_HANDSHAKE: 2 }));
  tcpProxy.add(new protobuf.Field('upstream_connect_mode', 21, `.${ns}.UpstreamConnectMode`));
  tcpProxy.add(new protobuf.Field('max_early_data_bytes', 22, '.google.protobuf.UInt32Value'));
  tcpProxy.add(new protobuf.Field('check_drain_close', 24, '.google.protobuf.BoolValue'));
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: String, defaults: false, oneofs: true };

/** Decodes the bytes of an Any of the given type URL to a plain object; throws if the type is unknown or the bytes invalid. */
export function decodeAny(typeUrl: string, value: Uint8Array): Record<string, unknown> {
  const typeName = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
  const type = resourceRoot().lookupType(typeName);
  return type.toObject(type.decode(value), TO_OBJECT) as Record<string, unknown>;
}

/** Whether the resource root knows a message type (for typed_config we do not need to understand). */
export function knowsType(typeUrl: string): boolean {
  try {
    resourceRoot().lookupType(typeUrl.slice(typeUrl.lastIndexOf('/') + 1));
    return true;
  } catch {
    return false;
  }
}

/** Encodes a plain object as an Any (tests and tools). */
export function encodeAny(typeUrl: string, obj: Record<string, unknown>): { type_url: string; value: Buffer } {
  const type = resourceRoot().lookupType(typeUrl.slice(typeUrl.lastIndexOf('/') + 1));
  const msg = type.fromObject(obj);
  const err = type.verify(msg);
  if (err) throw new Error(`${typeUrl}: ${err}`);
  return { type_url: typeUrl, value: Buffer.from(type.encode(msg).finish()) };
}

let ads: grpc.ServiceClientConstructor | null = null;

/** Client constructor of envoy.service.discovery.v3.AggregatedDiscoveryService. */
export function adsClientConstructor(): grpc.ServiceClientConstructor {
  if (ads) return ads;
  const def = protoLoader.loadSync('envoy/service/discovery/v3/ads.proto', {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
    includeDirs: envoyProtoDirs(),
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    envoy: { service: { discovery: { v3: { AggregatedDiscoveryService: grpc.ServiceClientConstructor } } } };
  };
  ads = pkg.envoy.service.discovery.v3.AggregatedDiscoveryService;
  return ads;
}
