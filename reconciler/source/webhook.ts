// Push webhooks (GitHub, GitLab, Gitea) that make the Git source fetch at once instead of at the
// next poll. Network-facing: the body is bounded and read with a time-out, the signature (HMAC
// SHA-256) or token is checked in constant time before the payload is parsed, and the payload
// only ever triggers a fetch — what is applied still comes from the repository and its gates.
// Replays cost nothing: a delivery id already seen is ignored, and the source coalesces fetch
// requests (at most one fetch running and one pending).
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';

export interface WebhookOptions {
  /** Shared secret: HMAC key for GitHub/Gitea, token for GitLab. */
  secret: string;
  /** Only pushes to this ref (e.g. refs/heads/main) trigger; others are acknowledged and ignored. */
  ref?: string;
  onPush: (push: { provider: Provider; ref: string; after: string | null }) => void;
  maxBodyBytes?: number;
  bodyTimeoutMs?: number;
  /** Delivery ids remembered to ignore redeliveries and replays (oldest forgotten first). */
  maxRememberedDeliveries?: number;
}

export type Provider = 'github' | 'gitlab' | 'gitea';

const pushPayload = z.object({
  ref: z.string().max(1024),
  after: z.string().max(64).optional(),
  checkout_sha: z.string().max(64).nullable().optional(),
});

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function readBody(req: IncomingMessage, limit: number, timeoutMs: number): Promise<Buffer | 'too-large' | 'timeout'> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (r: Buffer | 'too-large' | 'timeout'): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(r);
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    const declared = Number(header(req, 'content-length') ?? '0');
    if (declared > limit) return finish('too-large');
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size > limit) {
        finish('too-large');
        req.destroy();
        return;
      }
      parts.push(d);
    });
    req.on('end', () => finish(Buffer.concat(parts)));
    req.on('error', () => finish('timeout'));
  });
}

/** The provider's id of one delivery (the same on a redelivery), if it sends one. */
function deliveryId(headers: IncomingMessage['headers'], provider: Provider): string | undefined {
  const name = provider === 'github' ? 'x-github-delivery' : provider === 'gitea' ? 'x-gitea-delivery' : 'x-gitlab-event-uuid';
  const v = headers[name];
  const id = Array.isArray(v) ? v[0] : v;
  return id && id.length <= 128 ? id : undefined;
}

/**
 * The push payload from a verified body: JSON, or GitHub's form encoding
 * (`application/x-www-form-urlencoded`, the JSON in the `payload` field).
 */
function pushFromBody(body: Buffer, contentType: string | undefined): z.infer<typeof pushPayload> {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  const json = type === 'application/x-www-form-urlencoded' ? new URLSearchParams(body.toString('utf8')).get('payload') : body.toString('utf8');
  if (json === null) throw new Error('no payload field');
  return pushPayload.parse(JSON.parse(json));
}

/** Which provider sent this, and is it authentic? */
export function verifyWebhook(headers: IncomingMessage['headers'], body: Buffer, secret: string): { ok: true; provider: Provider; event: string } | { ok: false; reason: string } {
  const h = (n: string): string | undefined => {
    const v = headers[n];
    return Array.isArray(v) ? v[0] : v;
  };
  const hmac = createHmac('sha256', secret).update(body).digest('hex');
  if (h('x-hub-signature-256') !== undefined) {
    return safeEqual(h('x-hub-signature-256')!, `sha256=${hmac}`) ? { ok: true, provider: 'github', event: h('x-github-event') ?? '' } : { ok: false, reason: 'bad X-Hub-Signature-256' };
  }
  if (h('x-gitea-signature') !== undefined) {
    return safeEqual(h('x-gitea-signature')!, hmac) ? { ok: true, provider: 'gitea', event: h('x-gitea-event') ?? '' } : { ok: false, reason: 'bad X-Gitea-Signature' };
  }
  if (h('x-gitlab-token') !== undefined) {
    return safeEqual(h('x-gitlab-token')!, secret) ? { ok: true, provider: 'gitlab', event: h('x-gitlab-event') ?? '' } : { ok: false, reason: 'bad X-Gitlab-Token' };
  }
  return { ok: false, reason: 'no signature or token header (X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token)' };
}

export function createWebhookHandler(opts: WebhookOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  if (opts.secret.length < 16) throw new Error('webhook secret must be at least 16 characters');
  const limit = opts.maxBodyBytes ?? 1024 * 1024;
  const timeoutMs = opts.bodyTimeoutMs ?? 10_000;
  const reply = (res: ServerResponse, code: number, text: string): void => {
    res.writeHead(code, { 'content-type': 'text/plain' });
    res.end(`${text}\n`);
  };
  /** For a body we stopped reading: answer, then drop the connection instead of draining the rest. */
  const replyAndClose = (req: IncomingMessage, res: ServerResponse, code: number, text: string): void => {
    res.writeHead(code, { 'content-type': 'text/plain', connection: 'close' });
    res.end(`${text}\n`, () => req.socket.destroy());
  };
  // Insertion-ordered: the oldest id is evicted first, so memory stays bounded under any replay rate.
  const seen = new Set<string>();
  const maxSeen = opts.maxRememberedDeliveries ?? 1024;
  return async (req, res) => {
    if (req.method !== 'POST') return reply(res, 405, 'POST only');
    const body = await readBody(req, limit, timeoutMs);
    if (body === 'too-large') return replyAndClose(req, res, 413, `body over ${limit} bytes`);
    if (body === 'timeout') return replyAndClose(req, res, 408, 'body not received in time');
    const v = verifyWebhook(req.headers, body, opts.secret);
    if (!v.ok) return reply(res, 401, v.reason);
    const event = v.event.toLowerCase();
    if (event === 'ping') return reply(res, 200, 'pong');
    if (event !== 'push' && event !== 'push hook') return reply(res, 202, `event "${v.event}" ignored`);
    let payload: z.infer<typeof pushPayload>;
    try {
      payload = pushFromBody(body, header(req, 'content-type'));
    } catch {
      return reply(res, 400, 'not a push payload (expected JSON with "ref", or a form with a "payload" field holding it)');
    }
    if (opts.ref && payload.ref !== opts.ref) return reply(res, 202, `push to ${payload.ref} ignored (following ${opts.ref})`);
    // Checked after the signature, so only authentic deliveries enter the set.
    const id = deliveryId(req.headers, v.provider);
    if (id !== undefined) {
      if (seen.has(id)) return reply(res, 200, `delivery ${id} already received; ignored`);
      seen.add(id);
      if (seen.size > maxSeen) seen.delete(seen.values().next().value!);
    }
    opts.onPush({ provider: v.provider, ref: payload.ref, after: payload.after ?? payload.checkout_sha ?? null });
    return reply(res, 202, 'fetch scheduled');
  };
}
