// The reconciler's local admin endpoint (127.0.0.1 by default): the status page, `/status.json`
// for `clgo status`, `/healthz`, `/readyz`, `/metrics` (Prometheus text format 0.0.4, when a
// metrics source is given), and mount points for more handlers (webhook). Bounded: small request
// heads, short time-outs, GET/HEAD only on built-in routes.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { STATUS_PAGE_HTML } from './status-page.ts';

export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>;

export interface AdminServerOptions {
  host?: string;
  port?: number;
  /** The JSON document behind the status page and `clgo status`. */
  status: () => unknown;
  /** Ready = the last good configuration is applied. */
  ready: () => boolean;
  /** Serves GET /metrics (e.g. createRuntimeMetrics(runtime) from ./metrics.ts). */
  metrics?: { render(): Promise<string>; contentType?: string };
}

/** Prometheus text exposition format 0.0.4. */
const PROMETHEUS_TEXT = 'text/plain; version=0.0.4; charset=utf-8';

export interface AdminServer {
  url: string;
  mount(path: string, handler: RouteHandler): void;
  close(): Promise<void>;
}

export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const routes = new Map<string, RouteHandler>();
  const send = (res: http.ServerResponse, code: number, type: string, body: string): void => {
    res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    res.end(body);
  };
  routes.set('/', (_req, res) => send(res, 200, 'text/html; charset=utf-8', STATUS_PAGE_HTML));
  routes.set('/status.json', (_req, res) => send(res, 200, 'application/json', JSON.stringify(opts.status())));
  routes.set('/healthz', (_req, res) => send(res, 200, 'text/plain', 'ok\n'));
  routes.set('/readyz', (_req, res) => (opts.ready() ? send(res, 200, 'text/plain', 'ready\n') : send(res, 503, 'text/plain', 'not ready: no configuration applied yet\n')));
  const metrics = opts.metrics;
  if (metrics) routes.set('/metrics', async (_req, res) => send(res, 200, metrics.contentType ?? PROMETHEUS_TEXT, await metrics.render()));
  const builtIn = new Set(routes.keys());

  const server = http.createServer({ maxHeaderSize: 16 * 1024, requestTimeout: 10_000, headersTimeout: 5_000 }, (req, res) => {
    const path = new URL(req.url ?? '/', 'http://admin').pathname;
    const handler = routes.get(path);
    if (!handler) return send(res, 404, 'text/plain', `no such endpoint: ${path}\n`);
    if (builtIn.has(path) && req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(res, 405, 'text/plain', 'GET or HEAD only\n');
    }
    Promise.resolve(handler(req, res)).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, 'text/plain', `internal error: ${(err as Error).message}\n`);
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5_000;
  server.maxConnections = 256;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host}:${addr.port}`,
    mount: (path, handler) => routes.set(path, handler),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
