// Shared edge helpers: zod schemas for the parts of API objects we rely on, and error decoding.
// client-node returns class instances (Dates for timestamps) from typed calls and raw JSON from
// watches; the schemas accept both, and nothing past this file trusts an unparsed response.
import { ApiException } from '@kubernetes/client-node';
import { z } from 'zod';

const stringMap = z.record(z.string(), z.string());

export const ObjectMetaSchema = z.object({
  name: z.string(),
  namespace: z.string().optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  labels: stringMap.nullish().transform((v) => v ?? {}),
  annotations: stringMap.nullish().transform((v) => v ?? {}),
});

export const ServiceSchema = z.object({ metadata: ObjectMetaSchema });
export const ServiceListSchema = z.object({
  metadata: z.object({ resourceVersion: z.string().optional(), _continue: z.string().optional(), continue: z.string().optional() }).optional(),
  items: z.array(ServiceSchema),
});

/** Objects listed only for their metadata (EndpointSlices: ownership labels and spec hash). */
export const MetadataListSchema = ServiceListSchema;

/** HTTP status of a failed client-node call, or undefined for transport errors. */
export function statusCode(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  if (err && typeof err === 'object') {
    const c = (err as { code?: unknown; statusCode?: unknown }).statusCode ?? (err as { code?: unknown }).code;
    if (typeof c === 'number') return c;
  }
  return undefined;
}

/** One line for reports and Events: the API Status message when there is one. */
export function errorMessage(err: unknown): string {
  if (err instanceof ApiException) {
    const body: unknown = err.body;
    let message: string | undefined;
    if (typeof body === 'string') {
      try {
        const parsed = z.object({ message: z.string() }).safeParse(JSON.parse(body));
        message = parsed.success ? parsed.data.message : body;
      } catch {
        message = body;
      }
    } else {
      const parsed = z.object({ message: z.string() }).safeParse(body);
      if (parsed.success) message = parsed.data.message;
    }
    return `HTTP ${err.code}${message ? `: ${message}` : ''}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/** Runs fn over items with at most `limit` in flight; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  });
  await Promise.all(workers);
  return out;
}

/**
 * Deletes each object (at most `limit` at once); one already gone (404) counts as deleted. Resolves
 * the deleted refs; every other failure goes to onError.
 */
export async function deleteAll<T>(refs: readonly T[], limit: number, del: (ref: T) => Promise<unknown>, onError: (ref: T, err: unknown) => void): Promise<T[]> {
  const deleted: T[] = [];
  await mapLimit(refs, limit, async (ref) => {
    try {
      await del(ref);
      deleted.push(ref);
    } catch (err) {
      if (statusCode(err) === 404) deleted.push(ref);
      else onError(ref, err);
    }
  });
  return deleted;
}

export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
