// Bounded reading and parsing of an HTTP/1.1 message head (the CONNECT request at the gateway,
// and its reply at the egress side). Network-facing: sizes, header counts and time are bounded,
// and nothing is allocated per byte.
import type { Duplex } from 'node:stream';
import { TUNNEL, type ClientAttributes } from './contracts.ts';

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
  /** Request: [method, target, version]; response: [version, status code, reason phrase]. */
  startLine: string[];
  headers: Map<string, string>;
}

/** RFC 9110 token characters (method, header names). */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** A field value after trimming: visible characters, SP, HTAB and obs-text — no other control character. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const REQUEST_TARGET = /^[\x21-\x7e]+$/;
const RESPONSE_LINE = /^HTTP\/1\.[01] ([1-5]\d\d)(?: ([\t\x20-\x7e\x80-\xff]*))?$/;

/**
 * Parses a head read by readHead, strictly as RFC 9112 asks of a server (anything else is a 400):
 * CRLF line ends only (no bare CR or LF), no NUL, a request line of exactly three tokens separated
 * by single spaces, no obs-fold (a header line starting with whitespace), no whitespace between a
 * header name and its colon, no control characters in values. The first occurrence of a header wins.
 */
export function parseHead(head: string, maxHeaders: number, kind: 'request' | 'response' = 'request'): ParsedHead {
  if (head.includes('\0')) throw new HeadError(400, 'NUL in the request head');
  const lines = head.split('\r\n');
  if (lines.length - 1 > maxHeaders) throw new HeadError(431, `more than ${maxHeaders} headers`);
  for (const line of lines) if (line.includes('\r') || line.includes('\n')) throw new HeadError(400, 'bare CR or LF in the head (lines must end with CRLF)');
  const first = lines[0] ?? '';
  let startLine: string[];
  if (kind === 'request') {
    startLine = first.split(' ');
    const [method, target, version] = startLine;
    if (startLine.length !== 3 || !method || !target || !version) throw new HeadError(400, 'malformed request line (expected <method> <target> HTTP/1.1, single spaces)');
    if (!TOKEN.test(method) || !REQUEST_TARGET.test(target) || !/^HTTP\/\d\.\d$/.test(version)) throw new HeadError(400, 'malformed request line');
  } else {
    const m = RESPONSE_LINE.exec(first);
    if (!m) throw new HeadError(502, 'malformed status line');
    startLine = [first.slice(0, 8), m[1]!, m[2] ?? ''];
  }
  const headers = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith(' ') || line.startsWith('\t')) throw new HeadError(400, 'obsolete line folding in a header');
    const colon = line.indexOf(':');
    if (colon <= 0) throw new HeadError(400, 'malformed header line');
    const rawName = line.slice(0, colon);
    if (!TOKEN.test(rawName)) throw new HeadError(400, 'malformed header name');
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!FIELD_VALUE.test(value)) throw new HeadError(400, `control character in header ${rawName.slice(0, 64)}`);
    const name = rawName.toLowerCase();
    if (!headers.has(name)) headers.set(name, value);
  }
  return { startLine, headers };
}

/** DNS-1123 label (namespaces): at most 63 characters. */
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** DNS-1123 subdomain (Kubernetes object names such as service accounts and export names): at most 253 characters. */
export const DNS1123_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * `<exportName>.<exportNamespace>:<port>` → names; null when malformed. The one parser of the
 * tunnel authority: the Node gateway and the ext_authz service (behind Envoy) both use it. The
 * export name is a DNS-1123 subdomain (up to 253 characters, may hold dots, as Kubernetes allows
 * for Export objects), the namespace a DNS-1123 label (no dots): the last dot splits them. The
 * port must be 1..65535. `requirePort` false accepts a bare `<export>.<namespace>` (Envoy may hand
 * ext_authz the host without it).
 */
export function parseAuthority(authority: string, opts: { requirePort?: boolean } = {}): { exportName: string; exportNamespace: string } | null {
  const m = /^([^:]+)\.([^.:]+)(?::(\d{1,5}))?$/.exec(authority);
  if (!m) return null;
  const [, exportName, exportNamespace, port] = m;
  if (port === undefined ? opts.requirePort !== false : Number(port) < 1 || Number(port) > 65535) return null;
  if (!DNS1123_SUBDOMAIN.test(exportName!) || !DNS1123_LABEL.test(exportNamespace!)) return null;
  return { exportName: exportName!, exportNamespace: exportNamespace! };
}

/** Bounds of the client attributes a CONNECT carries (the same at every gateway). */
export const CLIENT_ATTRIBUTE_LIMITS = { maxLabels: 64, maxLabelKeyChars: 317, maxLabelValueChars: 63 } as const;

/**
 * The client attributes of a CONNECT request from its headers, refused (an Error saying which)
 * rather than truncated when out of bounds: namespace a DNS-1123 label, service account a
 * DNS-1123 subdomain, at most 64 labels. Shared by the Node gateway and the ext_authz service.
 */
export function clientAttributesFromHead(get: (name: string) => string | undefined): ClientAttributes {
  const h = TUNNEL.headers;
  const ns = get(h.clientNamespace);
  const sa = get(h.clientServiceAccount);
  const raw = get(h.clientLabels);
  const labels: Record<string, string> = {};
  if (raw) {
    let n = 0;
    for (const [k, v] of new URLSearchParams(raw)) {
      if (++n > CLIENT_ATTRIBUTE_LIMITS.maxLabels) throw new Error(`at most ${CLIENT_ATTRIBUTE_LIMITS.maxLabels} labels in ${h.clientLabels}`);
      if (k.length === 0 || k.length > CLIENT_ATTRIBUTE_LIMITS.maxLabelKeyChars || v.length > CLIENT_ATTRIBUTE_LIMITS.maxLabelValueChars) throw new Error('client label key or value too long');
      labels[k] = v;
    }
  }
  const client: ClientAttributes = { labels };
  if (ns) {
    if (!DNS1123_LABEL.test(ns)) throw new Error(`${h.clientNamespace} is not a DNS-1123 label (at most 63 characters)`);
    client.namespace = ns;
  }
  if (sa) {
    if (!DNS1123_SUBDOMAIN.test(sa)) throw new Error(`${h.clientServiceAccount} is not a DNS-1123 subdomain (at most 253 characters)`);
    client.serviceAccount = sa;
  }
  return client;
}

export function encodeLabels(labels: Record<string, string>): string {
  return new URLSearchParams(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b))).toString();
}
