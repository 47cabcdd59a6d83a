// A raw ADS client on @grpc/grpc-js for tests and the xDS bench: one bidirectional stream (State of
// the World or Delta), every response queued, every wait bounded. It does nothing on its own (no
// ACK, no subscription follow-up): the test writes each request, so protocol corner cases (stale
// nonces, NACKs, unsubscribe) can be driven exactly.
import * as grpc from '@grpc/grpc-js';
import { adsClientConstructor } from '../../protocol/envoy-protos.ts';

export interface AnyMsg {
  type_url: string;
  value: Uint8Array;
}

export interface SotwResponse {
  version_info: string;
  type_url: string;
  nonce: string;
  resources: AnyMsg[];
}

export interface DeltaResponse {
  system_version_info: string;
  type_url: string;
  nonce: string;
  resources: Array<{ name: string; version: string; resource: AnyMsg }>;
  removed_resources: string[];
}

export interface RawAdsStream<Res> {
  write(req: Record<string, unknown>): void;
  /** The next response (optionally of one type) not yet taken; rejects after timeoutMs. */
  next(typeUrl?: string, timeoutMs?: number): Promise<Res>;
  /** Responses received and not yet taken. */
  pending(): Res[];
  close(): void;
}

function stream<Res extends { type_url: string }>(call: grpc.ClientDuplexStream<unknown, unknown>): RawAdsStream<Res> {
  const queue: Res[] = [];
  let waiter: (() => void) | null = null;
  let ended: Error | null = null;
  call.on('data', (m: unknown) => {
    // The protos are loaded with defaults: false: absent fields are absent, not empty.
    const rec = m as Record<string, unknown>;
    for (const k of ['version_info', 'system_version_info', 'nonce']) rec[k] ??= '';
    for (const k of ['resources', 'removed_resources']) rec[k] ??= [];
    queue.push(rec as unknown as Res);
    waiter?.();
  });
  call.on('error', (e: Error) => {
    ended = e;
    waiter?.();
  });
  call.on('end', () => {
    ended ??= new Error('stream ended');
    waiter?.();
  });
  return {
    write: (req) => void call.write(req),
    pending: () => [...queue],
    close: () => call.cancel(),
    next(typeUrl, timeoutMs = 5000) {
      return new Promise<Res>((resolve, reject) => {
        const take = (): boolean => {
          const i = queue.findIndex((r) => typeUrl === undefined || r.type_url === typeUrl);
          if (i < 0) return false;
          const [r] = queue.splice(i, 1);
          clearTimeout(timer);
          waiter = null;
          resolve(r as Res);
          return true;
        };
        const timer = setTimeout(() => {
          waiter = null;
          reject(new Error(`no ${typeUrl ?? 'response'} within ${timeoutMs} ms${ended ? ` (${ended.message})` : ''}`));
        }, timeoutMs);
        if (take()) return;
        waiter = () => {
          if (!take() && ended) {
            clearTimeout(timer);
            waiter = null;
            reject(ended);
          }
        };
      });
    },
  };
}

export interface RawAdsClient {
  sotw(): RawAdsStream<SotwResponse>;
  delta(): RawAdsStream<DeltaResponse>;
  close(): void;
}

/** Plaintext by default; with credentials (e.g. grpc.credentials.createSsl) to speak to the control plane's mutual TLS. */
export function rawAdsClient(address: string, credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(), options: grpc.ChannelOptions = {}): RawAdsClient {
  const Ctor = adsClientConstructor();
  const client = new Ctor(address, credentials, options) as unknown as grpc.Client & {
    StreamAggregatedResources(): grpc.ClientDuplexStream<unknown, unknown>;
    DeltaAggregatedResources(): grpc.ClientDuplexStream<unknown, unknown>;
  };
  return {
    sotw: () => stream<SotwResponse>(client.StreamAggregatedResources()),
    delta: () => stream<DeltaResponse>(client.DeltaAggregatedResources()),
    close: () => client.close(),
  };
}
