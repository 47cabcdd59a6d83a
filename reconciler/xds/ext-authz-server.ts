// Envoy's ext_authz gRPC service (envoy.service.auth.v3.Authorization/Check) in front of an
// Authorizer. Two kinds of CheckRequest arrive:
//  - egress, from the network ext_authz filter on an import's listener: the source address of the
//    workload and the listener (destination) address, which maps back to the import;
//  - ingress, from the HTTP ext_authz filter at the gateway: the TLS-verified client certificate
//    (attributes.source.certificate, URL-encoded PEM), the CONNECT authority naming the export, and
//    the client attribute headers. The peer identity comes only from that certificate: any header
//    claiming a peer name is ignored.
// Everything read from the request is zod-validated and bounded; the translation both ways is pure
// (parseCheckRequest, checkResponseFor) so the Node data plane's remote client reuses it.
import * as grpc from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import { z } from 'zod';
import { TUNNEL, type Authorizer, type ClientAttributes, type EgressCheck, type EgressVerdict, type Explanation, type IngressCheck, type IngressVerdict } from '../../protocol/contracts.ts';
import { authorizationServiceDefinition, CHECK_LIMITS, clientAttributeHeaders, clientAttributesFromHeaders, CONTEXT_KEYS, fromStruct, parseAuthority, toStruct, type JsonValue, type ProtoStruct } from '../../protocol/ext-authz.ts';
import { pemCertificatesToDer } from '../pki/encoding.ts';
import type { Slice } from '../slice/types.ts';
import { denyReason } from './authz.ts';
import { listenDataplaneTls, type DataplaneTlsListener, type DataplaneTlsOptions } from './dataplane-auth.ts';
import { envoyExporters } from './resources.ts';

// ---------------------------------------------------------------------------------------------
// CheckRequest → question

const boundedRecord = (max: number, maxValue: number) =>
  z
    .record(z.string().max(256), z.string().max(maxValue))
    .refine((r) => Object.keys(r).length <= max, `at most ${max} entries`);

const socketAddress = z.object({ address: z.string().max(256), port_value: z.coerce.number().int().min(0).max(65535).optional() });
const peerSchema = z
  .object({
    address: z.object({ socket_address: socketAddress.nullish() }).nullish(),
    certificate: z.string().max(CHECK_LIMITS.maxCertificateChars).optional(),
  })
  .nullish();
const checkRequestSchema = z.object({
  attributes: z
    .object({
      source: peerSchema,
      destination: peerSchema,
      request: z
        .object({
          http: z
            .object({
              method: z.string().max(16).optional(),
              host: z.string().max(512).optional(),
              headers: boundedRecord(CHECK_LIMITS.maxHeaders, CHECK_LIMITS.maxHeaderValueChars).optional(),
              // Envoy sends header_map instead of headers when encode_raw_headers is set.
              header_map: z
                .object({
                  headers: z
                    .array(z.object({ key: z.string().max(256), value: z.string().max(CHECK_LIMITS.maxHeaderValueChars).optional(), raw_value: z.instanceof(Uint8Array).optional() }))
                    .max(CHECK_LIMITS.maxHeaders)
                    .optional(),
                })
                .nullish(),
            })
            .nullish(),
        })
        .nullish(),
      context_extensions: boundedRecord(16, 256).optional(),
    })
    .nullish(),
});

/** Maps an egress listener's address back to its import (network ext_authz does not send the listener name). */
export type EgressResolver = (destination: { address: string; port: number }) => { importNamespace: string; importName: string; balancedExporters?: string[] } | null;

/** Default resolver: the one import of the slice listening on that port (its listenPort); null if none or ambiguous. */
export function egressResolverFromSlice(slice: () => Slice): EgressResolver {
  const byPort = new WeakMap<Slice, Map<number, { importNamespace: string; importName: string; balancedExporters: string[] } | null>>();
  return ({ port }) => {
    const s = slice();
    let index = byPort.get(s);
    if (!index) {
      index = new Map();
      for (const imp of s.imports) {
        const p = imp.listenPort;
        // Two imports on one port cannot be told apart by address alone: refuse rather than guess.
        index.set(p, index.has(p) ? null : { importNamespace: imp.namespace, importName: imp.name, balancedExporters: envoyExporters(imp).map((e) => e.peer) });
      }
      byPort.set(s, index);
    }
    return index.get(port) ?? null;
  };
}

export type CheckQuestion =
  /** balancedExporters: the exporters an Envoy listener balances over (the check was resolved by address). */
  | { side: 'egress'; check: EgressCheck; balancedExporters?: string[] }
  | { side: 'ingress'; check: IngressCheck }
  /** The request could not be asked at all; answered with this status and message. */
  | { side: 'invalid'; httpStatus: 400 | 403 | 404; message: string };

const invalid = (httpStatus: 400 | 403 | 404, message: string): CheckQuestion => ({ side: 'invalid', httpStatus, message });

/** Turns a decoded CheckRequest into the question for the Authorizer. Pure; never throws. */
export function parseCheckRequest(raw: unknown, resolveEgress: EgressResolver): CheckQuestion {
  const parsed = checkRequestSchema.safeParse(raw);
  if (!parsed.success) return invalid(400, `malformed CheckRequest: ${parsed.error.issues[0]?.path.join('.') ?? ''} ${parsed.error.issues[0]?.message ?? ''}`.trim());
  const attrs = parsed.data.attributes;
  const http = attrs?.request?.http;
  if (http && http.method) {
    // HTTP ext_authz at the gateway: an ingress check.
    if (http.method !== 'CONNECT') return invalid(400, `only CONNECT is accepted at the gateway, got ${http.method}`);
    const pem = attrs?.source?.certificate ? safeDecode(attrs.source.certificate) : '';
    const der = pem ? pemCertificatesToDer(pem)[0] : undefined;
    if (!der || der.length === 0) return invalid(403, 'no verified client certificate in the request (attributes.source.certificate)');
    const headers: Record<string, string> = { ...(http.headers ?? {}) };
    for (const h of http.header_map?.headers ?? []) {
      const value = h.value ?? (h.raw_value ? Buffer.from(h.raw_value).toString('latin1') : '');
      if (value.length > CHECK_LIMITS.maxHeaderValueChars) return invalid(400, `header ${h.key.slice(0, 64)} too long`);
      headers[h.key.toLowerCase()] = value;
    }
    const authority = http.host || headers[':authority'] || '';
    const target = parseAuthority(authority);
    if (!target) return invalid(400, `CONNECT authority ${JSON.stringify(authority.slice(0, 128))} is not <export>.<namespace>:443`);
    let client: ClientAttributes;
    try {
      client = clientAttributesFromHeaders(headers);
    } catch (err) {
      return invalid(400, `invalid client attribute headers: ${(err as Error).message.slice(0, 200)}`);
    }
    return { side: 'ingress', check: { peerCertificateDer: der, exportName: target.exportName, exportNamespace: target.exportNamespace, client } };
  }
  // Network ext_authz on an import's listener: an egress check.
  const src = attrs?.source?.address?.socket_address;
  if (!src || !src.address) return invalid(400, 'egress check without a source address');
  const ext = attrs?.context_extensions ?? {};
  let imp: { importNamespace: string; importName: string; balancedExporters?: string[] } | null = null;
  const extNs = ext[CONTEXT_KEYS.importNamespace];
  const extName = ext[CONTEXT_KEYS.importName];
  if (extNs && extName) imp = { importNamespace: extNs, importName: extName };
  else {
    const dst = attrs?.destination?.address?.socket_address;
    if (dst) imp = resolveEgress({ address: dst.address, port: dst.port_value ?? 0 });
    if (!imp) return invalid(404, `no import listens on ${dst ? `${dst.address}:${dst.port_value ?? 0}` : 'an unknown address'}`);
  }
  const { balancedExporters, ...named } = imp;
  return { side: 'egress', check: { ...named, sourceAddress: src.address, sourcePort: src.port_value ?? 0 }, ...(balancedExporters ? { balancedExporters } : {}) };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------------------------
// verdict → CheckResponse

/** gRPC status codes used in CheckResponse.status. */
const OK = 0;
const PERMISSION_DENIED = 7;

export interface CheckResponse {
  status: { code: number; message: string };
  ok_response?: { headers: never[] };
  denied_response?: { status: { code: number }; headers: Array<{ header: { key: string; value: string }; append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }>; body: string };
  dynamic_metadata: ProtoStruct;
}

/** Metadata keys of CheckResponse.dynamic_metadata (read by remoteAuthorizer, and usable from Envoy). */
export type VerdictMetadata = { [k: string]: JsonValue };

export function checkResponseFor(question: CheckQuestion, verdict: EgressVerdict | IngressVerdict | null): CheckResponse {
  if (question.side === 'invalid' || verdict === null) {
    const message = question.side === 'invalid' ? question.message : 'no verdict';
    const explanation: Explanation = { tier: 'default', policy: null, location: null, message };
    return denied(question.side === 'invalid' ? question.httpStatus : 403, explanation, { verdict: 'deny', peer: null });
  }
  if (!verdict.allowed) {
    const status = 'status' in verdict ? verdict.status : 403;
    const peer = 'peer' in verdict ? verdict.peer : null;
    return denied(status, verdict.explanation, { verdict: 'deny', peer });
  }
  const first = 'candidates' in verdict ? verdict.candidates[0] : undefined;
  const meta: VerdictMetadata =
    'candidates' in verdict
      ? {
          verdict: 'allow',
          candidates: verdict.candidates.map((c) => ({ peer: c.peer, exportName: c.exportName, exportNamespace: c.exportNamespace, cluster: `clusterlink/peer/${c.peer}` })),
          client: clientJson(verdict.client),
          // Flat keys for Envoy's egress listener (reconciler/xds/resources.ts): set_filter_state
          // routes tcp_proxy to `cluster`, tunneling_config sends `authority` and the client headers.
          // Envoy tunnels to the first candidate only; cross-peer failover is the Node data plane's.
          cluster: first ? `clusterlink/peer/${first.peer}` : '',
          authority: first ? TUNNEL.authority(first.exportName, first.exportNamespace) : '',
          clientNamespace: verdict.client.namespace ?? '',
          clientServiceAccount: verdict.client.serviceAccount ?? '',
          clientLabels: clientAttributeHeaders(verdict.client)[TUNNEL.headers.clientLabels] ?? '',
          importRef: question.side === 'egress' ? `${question.check.importNamespace}/${question.check.importName}` : '',
        }
      : { verdict: 'allow', peer: verdict.peer, targetHost: verdict.target.host, targetPort: verdict.target.port };
  return { status: { code: OK, message: '' }, ok_response: { headers: [] }, dynamic_metadata: toStruct(meta) };
}

function clientJson(c: ClientAttributes): JsonValue {
  const out: { [k: string]: JsonValue } = { labels: { ...c.labels } };
  if (c.namespace !== undefined) out.namespace = c.namespace;
  if (c.serviceAccount !== undefined) out.serviceAccount = c.serviceAccount;
  return out;
}

function denied(httpStatus: 400 | 403 | 404, explanation: Explanation, meta: VerdictMetadata): CheckResponse {
  return {
    status: { code: PERMISSION_DENIED, message: explanation.message },
    denied_response: {
      status: { code: httpStatus },
      headers: [{ header: { key: TUNNEL.headers.denyReason, value: denyReason(explanation) }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
      body: `${explanation.message}\n`,
    },
    dynamic_metadata: toStruct({
      ...meta,
      httpStatus,
      tier: explanation.tier,
      policy: explanation.policy,
      location: explanation.location,
      message: explanation.message,
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// the gRPC service

export interface ExtAuthzOptions {
  authorizer: Authorizer;
  /** Maps an egress listener address to its import when the request has no context_extensions. */
  resolveEgress: EgressResolver;
  logger?: Logger;
}

/** Adds the Authorization service to a gRPC server (the reconciler hosts it next to ADS). */
export function addExtAuthzService(server: grpc.Server, opts: ExtAuthzOptions): void {
  const log = opts.logger ?? pino({ name: 'ext-authz' });
  const check: grpc.handleUnaryCall<unknown, CheckResponse> = (call, callback) => {
    const question = parseCheckRequest(call.request, opts.resolveEgress);
    const answer = async (): Promise<CheckResponse> => {
      if (question.side === 'invalid') return checkResponseFor(question, null);
      const verdict = question.side === 'egress' ? allOrNothing(question, await opts.authorizer.egress(question.check)) : await opts.authorizer.ingress(question.check);
      return checkResponseFor(question, verdict);
    };
    answer().then(
      (response) => {
        if (response.status.code !== OK) logDenial(log, question, response);
        callback(null, response);
      },
      (err: unknown) => {
        log.error({ err, side: question.side }, 'ext_authz check failed');
        callback({ code: grpc.status.INTERNAL, details: 'authorization check failed' });
      },
    );
  };
  server.addService(authorizationServiceDefinition(), { Check: check });
}

/**
 * An Envoy egress listener's load balancer picks the exporter after the check, among all of the
 * import's exporters: the check may allow the connection only if egress policy allows every one
 * of them (otherwise the balancer could pick one policy denies).
 */
export function allOrNothing(question: Extract<CheckQuestion, { side: 'egress' }>, verdict: EgressVerdict): EgressVerdict {
  if (!verdict.allowed || !question.balancedExporters) return verdict;
  const allowed = new Set(verdict.candidates.map((c) => c.peer));
  const denied = question.balancedExporters.filter((p) => !allowed.has(p));
  if (denied.length === 0) return verdict;
  const imp = `${question.check.importNamespace}/${question.check.importName}`;
  return {
    allowed: false,
    explanation: {
      tier: 'default',
      policy: null,
      location: null,
      message: `egress policy allows import ${imp} to reach only some of its exporters (not ${denied.join(', ')}); an Envoy data plane balances every connection over all of them, so it is refused — allow all of them, or split the import (docs/xds.md)`,
    },
  };
}

function logDenial(log: Logger, question: CheckQuestion, response: CheckResponse): void {
  const meta = fromStruct(response.dynamic_metadata);
  const where =
    question.side === 'egress'
      ? { import: `${question.check.importNamespace}/${question.check.importName}`, source: `${question.check.sourceAddress}:${question.check.sourcePort}` }
      : question.side === 'ingress'
        ? { export: `${question.check.exportNamespace}/${question.check.exportName}`, peer: meta.peer ?? null }
        : {};
  log.info({ side: question.side, ...where, status: meta.httpStatus, tier: meta.tier, policy: meta.policy, location: meta.location, reason: meta.message }, 'connection denied');
}

export interface ExtAuthzServer {
  /** host:port the server listens on. */
  address: string;
  port: number;
  stop(): Promise<void>;
}

/** Starts a gRPC server with only the Authorization service (the control plane, tests, or a data plane sidecar). */
export async function startExtAuthzServer(
  opts: ExtAuthzOptions & {
    address?: string;
    credentials?: grpc.ServerCredentials;
    /** Mutual TLS admitting only this peer's data planes (dataplane-auth.ts); takes precedence over credentials. */
    tls?: DataplaneTlsOptions;
  },
): Promise<ExtAuthzServer & { recheckClients(): void; refreshIdentity(): void }> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': CHECK_LIMITS.maxMessageBytes });
  addExtAuthzService(server, opts);
  const bindTo = opts.address ?? '127.0.0.1:0';
  const host = bindTo.slice(0, bindTo.lastIndexOf(':'));
  let listener: DataplaneTlsListener | null = null;
  let port: number;
  if (opts.tls) {
    listener = await listenDataplaneTls(server, 'authz', host.replace(/^\[|\]$/g, ''), Number(bindTo.slice(bindTo.lastIndexOf(':') + 1)), opts.tls);
    port = listener.port;
  } else {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(bindTo, opts.credentials ?? grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
  }
  return {
    address: `${host}:${port}`,
    port,
    recheckClients: () => listener?.recheck(),
    refreshIdentity: () => listener?.refreshIdentity(),
    stop: () =>
      new Promise<void>((resolve) => {
        void listener?.close();
        const timer = setTimeout(() => server.forceShutdown(), 2000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
