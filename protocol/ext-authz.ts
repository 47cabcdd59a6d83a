// The ext_authz contract between a data plane and the control plane's Authorization service
// (envoy.service.auth.v3.Authorization/Check): the service definition, the context_extensions keys
// naming an import, the bounds on a CheckRequest, google.protobuf.Struct in object form, and the
// CONNECT-header form of client attributes. The server (reconciler/xds/ext-authz-server.ts) and the
// Node data plane's remote client (dataplane/xds-client/remote-authorizer.ts) both use this one copy.
import type * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import * as protoLoader from '@grpc/proto-loader';
import { clientAttributesFromHead, encodeLabels, parseAuthority as parseTunnelAuthority } from './connect-head.ts';
import { TUNNEL, type ClientAttributes } from './contracts.ts';
import { envoyProtoDirs } from './envoy-protos.ts';

/** context_extensions keys naming the import of an egress check (set by our own Envoy config or the Node data plane). */
export const CONTEXT_KEYS = { importNamespace: 'clusterlink.net/import-namespace', importName: 'clusterlink.net/import-name' } as const;

/** Bounds on what a CheckRequest may carry: it comes from the network side of Envoy. */
export const CHECK_LIMITS = {
  maxMessageBytes: 64 * 1024,
  /** URL-encoded PEM of the client certificate (a chain of a few certificates fits). */
  maxCertificateChars: 32 * 1024,
  maxHeaders: 64,
  maxHeaderValueChars: TUNNEL.limits.maxHeaderBytes,
  maxLabels: 64,
} as const;

// ---------------------------------------------------------------------------------------------
// Protos

const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true };

let authorizationService: grpc.ServiceDefinition | null = null;

/** The envoy.service.auth.v3.Authorization service definition (loaded once). */
export function authorizationServiceDefinition(): grpc.ServiceDefinition {
  if (authorizationService) return authorizationService;
  const def = protoLoader.loadSync('envoy/service/auth/v3/external_auth.proto', { ...LOADER_OPTIONS, includeDirs: envoyProtoDirs() });
  const service = def['envoy.service.auth.v3.Authorization'];
  if (!service || !('Check' in service)) throw new Error('envoy.service.auth.v3.Authorization not found in the Envoy protos');
  authorizationService = service as grpc.ServiceDefinition;
  return authorizationService;
}

// ---------------------------------------------------------------------------------------------
// google.protobuf.Struct in object form. protobufjs bundles the well-known types with camelCase
// field names (stringValue, structValue...) even under keepCase, so that is what we write; both
// spellings are accepted when reading.

export type JsonValue = string | number | boolean | null | JsonValue[] | { [k: string]: JsonValue };
type ProtoValue =
  | { nullValue: 'NULL_VALUE' }
  | { numberValue: number }
  | { stringValue: string }
  | { boolValue: boolean }
  | { structValue: ProtoStruct }
  | { listValue: { values: ProtoValue[] } };
export interface ProtoStruct {
  fields: Record<string, ProtoValue>;
}

function toValue(v: JsonValue): ProtoValue {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v) };
}

export function toStruct(obj: { [k: string]: JsonValue }): ProtoStruct {
  const fields: Record<string, ProtoValue> = {};
  for (const [k, v] of Object.entries(obj)) fields[k] = toValue(v);
  return { fields };
}

/** A decoded google.protobuf.Value / Struct as plain JSON (either field spelling); throws on a malformed one. */
function fromValue(v: unknown, depth: number): JsonValue {
  if (depth > 32) throw new Error('Struct nested too deeply');
  if (typeof v !== 'object' || v === null) throw new Error('not a google.protobuf.Value');
  const o = v as Record<string, unknown>;
  const pick = (camel: string, snake: string): unknown => (camel in o ? o[camel] : o[snake]);
  const str = pick('stringValue', 'string_value');
  if (typeof str === 'string') return str;
  const num = pick('numberValue', 'number_value');
  if (typeof num === 'number') return num;
  const bool = pick('boolValue', 'bool_value');
  if (typeof bool === 'boolean') return bool;
  const st = pick('structValue', 'struct_value');
  if (st !== undefined && st !== null) return structFrom(st, depth + 1);
  const list = pick('listValue', 'list_value');
  if (list !== undefined && list !== null) {
    const values = (list as { values?: unknown }).values;
    return Array.isArray(values) ? values.map((x) => fromValue(x, depth + 1)) : [];
  }
  return null;
}

function structFrom(s: unknown, depth: number): { [k: string]: JsonValue } {
  if (typeof s !== 'object' || s === null) throw new Error('not a google.protobuf.Struct');
  const fields = (s as { fields?: unknown }).fields ?? {};
  if (typeof fields !== 'object' || fields === null) throw new Error('not a google.protobuf.Struct');
  const out: { [k: string]: JsonValue } = {};
  for (const [k, v] of Object.entries(fields)) out[k] = fromValue(v, depth);
  return out;
}

/** A decoded google.protobuf.Struct as plain JSON; throws on a malformed one. */
export function fromStruct(s: unknown): { [k: string]: JsonValue } {
  return structFrom(s, 0);
}

/** Client attributes from the CONNECT headers (asserted by the verified importing peer); the same rules as the Node gateway. */
export function clientAttributesFromHeaders(headers: Record<string, string>): ClientAttributes {
  return clientAttributesFromHead((name) => headers[name]);
}

/** The CONNECT headers carrying client attributes (inverse of clientAttributesFromHeaders). */
export function clientAttributeHeaders(client: ClientAttributes): Record<string, string> {
  const h = TUNNEL.headers;
  const out: Record<string, string> = {};
  if (client.namespace) out[h.clientNamespace] = client.namespace;
  if (client.serviceAccount) out[h.clientServiceAccount] = client.serviceAccount;
  const labels = encodeLabels(client.labels);
  if (labels) out[h.clientLabels] = labels;
  return out;
}

/** `<exportName>.<exportNamespace>[:port]` (TUNNEL.authority) → the export; null if not of that form. The gateway's own parser, so both sides apply one rule. */
export function parseAuthority(authority: string): { exportName: string; exportNamespace: string } | null {
  return parseTunnelAuthority(authority, { requirePort: false });
}

/** attributes.source.certificate as Envoy fills it: the URL-encoded PEM of the verified client certificate. */
export function sourceCertificateField(der: Uint8Array): string {
  return encodeURIComponent(new X509Certificate(der).toString());
}
