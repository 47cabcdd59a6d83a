// A real Git smart-HTTP server on loopback: Debian's `git http-backend` behind node:http. The demo
// serves its fabric repository with it, and the tests push to it and break it on purpose
// (faults). git http-backend is a CGI program, spawned asynchronously per request (a synchronous
// child process would deadlock on the request body), with request and response bodies streamed.
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** down: reset every connection; hang: accept and never answer; corrupt-pack: flip bytes in pack responses. */
export type GitServerFault = 'down' | 'hang' | 'corrupt-pack' | null;

export interface GitHttpServer {
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  repoUrl(name: string): string;
  /** Requests served so far, by path suffix (info/refs, git-upload-pack, git-receive-pack). */
  requests(): number;
  setFault(fault: GitServerFault): void;
  stop(): Promise<void>;
}

const MAX_CGI_HEAD = 64 * 1024;

export async function startGitHttpServer(opts: { root: string; host?: string; port?: number }): Promise<GitHttpServer> {
  let fault: GitServerFault = null;
  let served = 0;
  const hung = new Set<http.ServerResponse>();

  const server = http.createServer((req, res) => {
    if (fault === 'down') {
      req.socket.destroy();
      return;
    }
    if (fault === 'hang') {
      hung.add(res);
      res.on('close', () => hung.delete(res));
      return;
    }
    served++;
    const url = new URL(req.url ?? '/', 'http://git');
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: opts.root,
      GIT_HTTP_EXPORT_ALL: '1',
      // Pushes are allowed: this server is for the demo and tests only, on loopback.
      GIT_CONFIG_COUNT: '2',
      GIT_CONFIG_KEY_0: 'http.receivepack',
      GIT_CONFIG_VALUE_0: 'true',
      GIT_CONFIG_KEY_1: 'uploadpack.allowAnySHA1InWant',
      GIT_CONFIG_VALUE_1: 'true',
      REQUEST_METHOD: req.method ?? 'GET',
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.replace(/^\?/, ''),
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      REMOTE_ADDR: req.socket.remoteAddress ?? '',
      REMOTE_USER: 'demo',
      HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
      HTTP_GIT_PROTOCOL: (req.headers['git-protocol'] as string | undefined) ?? '',
    };
    if (req.headers['content-length']) env.CONTENT_LENGTH = req.headers['content-length'];
    const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    child.on('error', (err) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`git http-backend failed: ${err.message}\n`);
    });
    req.pipe(child.stdin);
    child.stdin.on('error', () => undefined);

    // Parse the CGI head (Status + headers), then stream the rest as the body.
    let head = Buffer.alloc(0);
    let inBody = false;
    const corrupt = fault === 'corrupt-pack' && url.pathname.endsWith('git-upload-pack');
    let bodyBytes = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      if (inBody) return void res.write(corrupt ? corruptChunk(chunk, (bodyBytes += chunk.length)) : chunk);
      head = Buffer.concat([head, chunk]);
      let sep = head.indexOf('\r\n\r\n');
      let sepLen = 4;
      if (sep < 0) {
        sep = head.indexOf('\n\n');
        sepLen = 2;
      }
      if (sep < 0) {
        if (head.length > MAX_CGI_HEAD) child.kill();
        return;
      }
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, sep).toString('latin1').split(/\r?\n/)) {
        const i = line.indexOf(':');
        if (i <= 0) continue;
        const name = line.slice(0, i).trim();
        const value = line.slice(i + 1).trim();
        if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
        else headers[name] = value;
      }
      res.writeHead(status, headers);
      inBody = true;
      const rest = head.subarray(sep + sepLen);
      if (rest.length > 0) res.write(corrupt ? corruptChunk(rest, (bodyBytes += rest.length)) : rest);
    });
    child.stdout.on('end', () => {
      if (!inBody && !res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' }).end(`git http-backend: ${stderr}`);
      else res.end();
    });
    req.on('aborted', () => child.kill());
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const url = `http://${addr.address}:${addr.port}`;
  return {
    url,
    repoUrl: (name) => `${url}/${name}`,
    requests: () => served,
    setFault: (f) => {
      fault = f;
      if (f === null) for (const res of hung) res.destroy();
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const res of hung) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Flips a byte every 512 bytes past the pack header: the pack checksum can no longer match. */
function corruptChunk(chunk: Buffer, endOffset: number): Buffer {
  const out = Buffer.from(chunk);
  const start = endOffset - chunk.length;
  for (let i = 0; i < out.length; i++) if ((start + i) > 64 && (start + i) % 512 === 0) out[i] = out[i]! ^ 0xff;
  return out;
}
