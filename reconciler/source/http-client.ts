// The HTTP client isomorphic-git uses to talk to the Git server, on node:http/https, bounded:
// a time-out on every request (connect to last byte), a cap on response size, credentials added
// here (never in URLs, never logged), and errors that name the host but not the credentials.
import http from 'node:http';
import https from 'node:https';
import type { GitHttpRequest, GitHttpResponse, HttpClient } from 'isomorphic-git';

export interface GitAuth {
  /** Bearer-style token sent as HTTP basic auth (user `x-access-token`), which GitHub/GitLab/Gitea accept. */
  token?: string;
  username?: string;
  password?: string;
}

export interface BoundedHttpOptions {
  timeoutMs: number;
  maxResponseBytes: number;
  auth?: GitAuth;
  /** CA bundle (PEM) for a private Git server. */
  ca?: string;
  /** Vets (and may rewrite) the complete body of a successful git-upload-pack response before isomorphic-git sees it; throwing refuses the fetch. */
  inspectUploadPack?: (body: Buffer) => Promise<Buffer>;
}

export class GitHttpError extends Error {
  override name = 'GitHttpError';
}

/** Removes userinfo from a URL so it can be shown. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return '<invalid url>';
  }
}

function authHeader(auth: GitAuth | undefined): string | null {
  if (!auth) return null;
  if (auth.token) return `Basic ${Buffer.from(`x-access-token:${auth.token}`).toString('base64')}`;
  if (auth.username !== undefined) return `Basic ${Buffer.from(`${auth.username}:${auth.password ?? ''}`).toString('base64')}`;
  return null;
}

async function collect(body: AsyncIterableIterator<Uint8Array> | undefined): Promise<Buffer | null> {
  if (!body) return null;
  const parts: Buffer[] = [];
  for await (const chunk of body) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

async function* once(buf: Buffer): AsyncIterableIterator<Uint8Array> {
  yield buf;
}

export function boundedHttpClient(opts: BoundedHttpOptions): HttpClient {
  const authorization = authHeader(opts.auth);
  return {
    async request(req: GitHttpRequest): Promise<GitHttpResponse> {
      const url = new URL(req.url);
      const shown = redactUrl(req.url);
      const lib = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : null;
      if (!lib) throw new GitHttpError(`unsupported protocol ${url.protocol} (use http:// or https://)`);
      const body = await collect(req.body);
      const headers: Record<string, string> = { ...(req.headers ?? {}) };
      if (authorization) headers.authorization = authorization;
      if (body) headers['content-length'] = String(body.length);
      return new Promise<GitHttpResponse>((resolve, reject) => {
        const r = lib.request(
          url,
          { method: req.method ?? 'GET', headers, ...(opts.ca ? { ca: opts.ca } : {}) },
          (res) => {
            const parts: Buffer[] = [];
            let size = 0;
            res.on('data', (d: Buffer) => {
              size += d.length;
              if (size > opts.maxResponseBytes) {
                r.destroy(new GitHttpError(`response from ${shown} exceeds ${opts.maxResponseBytes} bytes; refusing (raise the source's maxResponseBytes if the repository is really that large)`));
                return;
              }
              parts.push(d);
            });
            res.on('end', () => {
              clearTimeout(timer);
              const flat: Record<string, string> = {};
              for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) flat[k] = Array.isArray(v) ? v.join(', ') : v;
              const answer = (body: Buffer): void => resolve({ url: req.url, method: req.method, statusCode: res.statusCode ?? 0, statusMessage: res.statusMessage ?? '', headers: flat, body: once(body) });
              const whole = Buffer.concat(parts);
              if (opts.inspectUploadPack && res.statusCode === 200 && url.pathname.endsWith('/git-upload-pack')) {
                opts.inspectUploadPack(whole).then(answer, (err: Error) => reject(new GitHttpError(`pack from ${shown} refused: ${err.message}`)));
              } else answer(whole);
            });
            res.on('error', (err) => reject(err));
          },
        );
        const timer = setTimeout(() => r.destroy(new GitHttpError(`no complete answer from ${shown} within ${opts.timeoutMs} ms`)), opts.timeoutMs);
        r.on('error', (err) => {
          clearTimeout(timer);
          reject(err instanceof GitHttpError ? err : new GitHttpError(`${req.method ?? 'GET'} ${shown}: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
        });
        if (body) r.end(body);
        else r.end();
      });
    },
  };
}
