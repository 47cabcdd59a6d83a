// Bounded reading and parsing of an HTTP/1.1 message head (the CONNECT request at the gateway,
// and its reply at the egress side). Network-facing: sizes, header counts and time are bounded,
// and nothing is allocated per byte.
import type { Duplex } from 'node:stream';

export interface HeadLimits {
  maxHeaderBytes: number;
  maxHeaders: number;
  timeoutMs: number;
}

export class HeadError extends Error {
  constructor(
    readonly status: 400 | 408 | 431 | 502,
    message: string,
    /** Nothing at all was sent before the connection ended or the time-out (a preconnected spare closed or outlived unused, a probe): not a bad request. */
    readonly beforeFirstByte = false,
  ) {
    super(message);
  }
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

/**
 * Reads from `socket` until the end of an HTTP head. Resolves with the head text and any bytes
 * that followed it (pushed back with unshift so the relay sees them); rejects with a HeadError.
 */
export function readHead(socket: Duplex, limits: HeadLimits): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer | null = null;
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      socket.off('close', onEnd);
    };
    const fail = (err: HeadError): void => {
      cleanup();
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      const prevLen = buffered ? buffered.length : 0;
      buffered = buffered ? Buffer.concat([buffered, chunk]) : chunk;
      const from = Math.max(0, prevLen - 3);
      const end = buffered.indexOf(CRLFCRLF, from);
      if (end === -1) {
        if (buffered.length > limits.maxHeaderBytes) fail(new HeadError(431, `request head larger than ${limits.maxHeaderBytes} bytes`));
        return;
      }
      if (end + 4 > limits.maxHeaderBytes) return fail(new HeadError(431, `request head larger than ${limits.maxHeaderBytes} bytes`));
      cleanup();
      socket.pause();
      const rest = buffered.subarray(end + 4);
      if (rest.length > 0) socket.unshift(rest);
      resolve(buffered.toString('latin1', 0, end));
    };
    const onEnd = (): void =>
      fail(buffered ? new HeadError(400, 'connection closed before the end of the request head') : new HeadError(400, 'connection closed before sending anything', true));
    const onError = (): void =>
      fail(buffered ? new HeadError(400, 'connection error while reading the request head') : new HeadError(400, 'connection failed before sending anything', true));
    const timer = setTimeout(() => fail(new HeadError(408, `no ${buffered ? 'complete ' : ''}request head within ${limits.timeoutMs} ms`, buffered === null)), limits.timeoutMs);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
    socket.resume();
  });
}

export interface ParsedHead {
  /** Request: method and target; response: status code in `status`. */
  startLine: string[];
  headers: Map<string, string>;
}

export function parseHead(head: string, maxHeaders: number): ParsedHead {
  const lines = head.split('\r\n');
  const startLine = (lines[0] ?? '').split(' ');
  if (lines.length - 1 > maxHeaders) throw new HeadError(431, `more than ${maxHeaders} headers`);
  const headers = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new HeadError(400, 'malformed header line');
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!/^[a-z0-9-]+$/.test(name)) throw new HeadError(400, 'malformed header name');
    // First occurrence wins: a repeated header cannot override an earlier one.
    if (!headers.has(name)) headers.set(name, line.slice(colon + 1).trim());
  }
  return { startLine, headers };
}

/** `<exportName>.<exportNamespace>:443` → names; null when malformed. */
export function parseAuthority(authority: string): { exportName: string; exportNamespace: string } | null {
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*[a-z0-9])?):(\d{1,5})$/.exec(authority);
  if (!m || m[1]!.length > 63 || m[3]!.length > 63) return null;
  return { exportName: m[1]!, exportNamespace: m[3]! };
}

export function encodeLabels(labels: Record<string, string>): string {
  return new URLSearchParams(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b))).toString();
}

export function decodeLabels(value: string | undefined, maxLabels = 64): Record<string, string> {
  const out: Record<string, string> = {};
  if (!value) return out;
  let n = 0;
  for (const [k, v] of new URLSearchParams(value)) {
    if (++n > maxLabels) break;
    if (k.length <= 317 && v.length <= 63) out[k] = v;
  }
  return out;
}
