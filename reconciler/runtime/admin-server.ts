// The reconciler's local admin endpoint (127.0.0.1 by default): the status page, `/status.json`
// for `clgo status`, `/healthz`, `/readyz`, `/metrics` (Prometheus text format 0.0.4, when a
// metrics source is given), and mount points for more handlers (webhook). Bounded: small request
// heads, short time-outs checked every second, a connection cap that sheds idle connections
// rather than new ones, GET/HEAD only on built-in routes. `clgo dataplane`'s health server is this too.
import http from 'node:http';
import type net from 'node:net';
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
  limits?: Partial<AdminLimits>;
}

export interface AdminLimits {
  /** Open connections; past it the oldest one without a request in progress is closed (see below). */
  maxConnections: number;
  /** A request head must be complete this long after the connection (or the previous request). */
  headersTimeoutMs: number;
  /** A whole request (head and body) must arrive within this. */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** No byte either way for this long closes the connection. */
  socketIdleTimeoutMs: number;
}

export const ADMIN_LIMITS: AdminLimits = { maxConnections: 64, headersTimeoutMs: 5_000, requestTimeoutMs: 10_000, keepAliveTimeoutMs: 5_000, socketIdleTimeoutMs: 15_000 };

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

  const limits = { ...ADMIN_LIMITS, ...opts.limits };
  // Node checks headersTimeout/requestTimeout only every connectionsCheckingInterval (30 s by
  // default), which let idle connections hold the server for that long: checked every second here.
  const server = http.createServer(
    { maxHeaderSize: 16 * 1024, requestTimeout: limits.requestTimeoutMs, headersTimeout: limits.headersTimeoutMs, connectionsCheckingInterval: 1000, keepAliveTimeout: limits.keepAliveTimeoutMs },
    (req, res) => {
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
    },
  );
  // Connection bound without refusing probes: past maxConnections the oldest connection that has
  // no request in progress (idle keep-alive, or a request head still arriving) is closed to make
  // room, so held idle connections cannot keep /healthz, /readyz, /metrics or /webhook from
  // answering. Only when every connection is serving a request is the new one refused.
  const open = new Set<net.Socket>();
  const busy = new WeakMap<net.Socket, number>();
  server.on('connection', (socket: net.Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    // No byte for this long (a request in progress included) closes the connection.
    socket.setTimeout(limits.socketIdleTimeoutMs, () => socket.destroy());
    if (open.size <= limits.maxConnections) return;
    for (const s of open) {
      if (s !== socket && !busy.get(s)) {
        open.delete(s);
        s.destroy();
        return;
      }
    }
    open.delete(socket);
    socket.destroy();
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket;
    busy.set(socket, (busy.get(socket) ?? 0) + 1);
    res.once('close', () => busy.set(socket, (busy.get(socket) ?? 1) - 1));
  });
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
