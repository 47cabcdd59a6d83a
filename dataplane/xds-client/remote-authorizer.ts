// An Authorizer that asks the reconciler's ext_authz gRPC service (envoy.service.auth.v3) — for a
// Node data plane running in its own process. It sends the same CheckRequests Envoy would (egress:
// source address + the import in context_extensions; ingress: the verified certificate as URL-encoded
// PEM, CONNECT authority, client attribute headers) and reads the verdict from dynamic_metadata.
// Fails closed: an unreachable or slow service denies the connection (flagged `unavailable`, so that
// the data plane keeps open tunnels rather than closing them on an outage, and re-checks them later).
import * as grpc from '@grpc/grpc-js';
import { z } from 'zod';
import { TUNNEL, type Authorizer, type EgressCheck, type EgressVerdict, type Explanation, type IngressCheck, type IngressVerdict } from '../../protocol/contracts.ts';
import { authorizationServiceDefinition, clientAttributeHeaders, CONTEXT_KEYS, fromStruct, sourceCertificateField } from '../../protocol/ext-authz.ts';

export interface RemoteAuthorizer extends Authorizer {
  egress(check: EgressCheck): Promise<EgressVerdict>;
  ingress(check: IngressCheck): Promise<IngressVerdict>;
  close(): void;
}

const explanationMeta = z.object({
  tier: z.enum(['privileged', 'user', 'default']).catch('default'),
  policy: z.string().nullable().catch(null),
  location: z.string().nullable().catch(null),
  message: z.string().max(4096).catch('denied'),
  httpStatus: z.number().catch(403),
  peer: z.string().nullable().catch(null),
});
const label = z.string().max(317);
const egressAllow = z.object({
  candidates: z.array(z.object({ peer: z.string().max(63), exportName: z.string().max(63), exportNamespace: z.string().max(63) })).max(10_000),
  client: z.object({ namespace: z.string().max(253).optional(), serviceAccount: z.string().max(253).optional(), labels: z.record(label, z.string().max(63)) }),
});
const ingressAllow = z.object({ peer: z.string().max(63), targetHost: z.string().max(253), targetPort: z.number().int().min(1).max(65535) });
const checkResponse = z.object({ status: z.object({ code: z.number().optional() }).nullish(), dynamic_metadata: z.unknown() });

const unavailable = (err: Error): Explanation => ({ tier: 'default', policy: null, location: null, message: `authorization service unavailable: ${err.message.slice(0, 200)}` });

export function remoteAuthorizer(server: string, opts: { credentials?: grpc.ChannelCredentials; serverName?: string; timeoutMs?: number } = {}): RemoteAuthorizer {
  const Client = grpc.makeGenericClientConstructor(authorizationServiceDefinition(), 'Authorization');
  // Reconnect within ~2 s of the service coming back (gRPC's default back-off grows to 2 minutes,
  // during which every new connection would be refused).
  const client = new Client(server, opts.credentials ?? grpc.credentials.createInsecure(), {
    'grpc.initial_reconnect_backoff_ms': 200,
    'grpc.max_reconnect_backoff_ms': 2000,
    ...(opts.serverName ? { 'grpc.ssl_target_name_override': opts.serverName } : {}),
  });
  const timeoutMs = opts.timeoutMs ?? 2000;

  const check = (request: unknown): Promise<{ allowed: boolean; meta: Record<string, unknown> }> =>
    new Promise((resolve, reject) => {
      const call = (client as unknown as Record<string, (req: unknown, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: unknown) => void) => void>).Check;
      if (!call) return reject(new Error('no Check method'));
      call.call(client, request, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, raw) => {
        if (err) return reject(err);
        try {
          const res = checkResponse.parse(raw);
          resolve({ allowed: (res.status?.code ?? 0) === 0, meta: fromStruct(res.dynamic_metadata ?? { fields: {} }) });
        } catch (e) {
          reject(e as Error);
        }
      });
    });

  return {
    async egress(c) {
      try {
        const { allowed, meta } = await check({
          attributes: {
            source: { address: { socket_address: { address: c.sourceAddress, port_value: c.sourcePort } } },
            context_extensions: { [CONTEXT_KEYS.importNamespace]: c.importNamespace, [CONTEXT_KEYS.importName]: c.importName },
          },
        });
        if (allowed) {
          const a = egressAllow.parse(meta);
          return { allowed: true, client: { ...a.client, labels: a.client.labels }, candidates: a.candidates.map(({ peer, exportName, exportNamespace }) => ({ peer, exportName, exportNamespace })) };
        }
        const { tier, policy, location, message } = explanationMeta.parse(meta);
        return { allowed: false, explanation: { tier, policy, location, message } };
      } catch (err) {
        return { allowed: false, explanation: unavailable(err as Error), unavailable: true };
      }
    },
    async ingress(c) {
      const authority = TUNNEL.authority(c.exportName, c.exportNamespace);
      try {
        const { allowed, meta } = await check({
          attributes: {
            source: { certificate: sourceCertificateField(c.peerCertificateDer) },
            request: { http: { method: 'CONNECT', host: authority, headers: { ':authority': authority, ...clientAttributeHeaders(c.client) } } },
          },
        });
        if (allowed) {
          const a = ingressAllow.parse(meta);
          return { allowed: true, peer: a.peer, target: { host: a.targetHost, port: a.targetPort } };
        }
        const e = explanationMeta.parse(meta);
        const status = e.httpStatus === 404 ? 404 : 403;
        return { allowed: false, status, peer: e.peer, explanation: { tier: e.tier, policy: e.policy, location: e.location, message: e.message } };
      } catch (err) {
        return { allowed: false, status: 403, peer: null, explanation: unavailable(err as Error), unavailable: true };
      }
    },
    close: () => client.close(),
  };
}
