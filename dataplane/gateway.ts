// The gateway (ingress): the mutual-TLS listener that terminates peers' tunnels. The pin check on
// the verified client certificate comes first; then the CONNECT head (bounded), the authorizer's
// verdict from that certificate, and the relay to the exported service. Identity comes only from
// the certificate; headers carry client attributes, never identity.
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { denyReason, TUNNEL, type Authorizer, type ClientAttributes, type DataplaneConfig, type Endpoint } from '../protocol/contracts.ts';
import { clientAttributesFromHead, HeadError, parseAuthority, parseHead, readHead } from '../protocol/connect-head.ts';
import { relay, type RelayHandle } from './relay.ts';
import type { ImportStats, IngressStats } from './stats.ts';
import { fingerprintOf, serverContextOptions, tlsMaterialKey, type TlsState } from './tls-identity.ts';
import type { Tunnel, TunnelRegistry } from './tunnel-registry.ts';

/** Writable high-water mark of relayed sockets: holds a corked batch of four 16 KiB TLS chunks (see relay.ts). */
export const RELAY_HIGH_WATER_MARK = 64 * 1024;

/** A warn line a remote party can cause, rate-limited per category (log-limiter.ts); counters are kept apart. */
export type WarnRefused = (category: 'handshake' | 'bad-request' | 'denied', fields: Record<string, unknown>, msg: string) => void;

/** How long a refused connection may stay half-closed, waiting for the client's end. */
const REFUSAL_LINGER_MS = 2000;

function discard(): void {}

function destroySocket(socket: net.Socket): void {
  socket.destroy();
}

function destroyOnError(this: net.Socket): void {
  this.destroy();
}

/** Handshake failures an operator should recognise at a glance. */
const TLS_HINTS: Record<string, string> = {
  ERR_SSL_UNSUPPORTED_PROTOCOL: ' (the client offered no TLS 1.3; the gateway speaks TLS 1.3 only)',
  ERR_SSL_NO_SHARED_CIPHER: ' (no TLS 1.3 cipher in common)',
  ERR_SSL_HTTPS_PROXY_REQUEST: ' (plaintext HTTP CONNECT sent to the TLS gateway)',
  ERR_SSL_HTTP_REQUEST: ' (plaintext HTTP sent to the TLS gateway)',
  ERR_SSL_WRONG_VERSION_NUMBER: ' (not a TLS record: plaintext or another protocol)',
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: ' (mutual TLS: a client certificate is required)',
};

/** OpenSSL verification codes (TLSSocket.authorizationError) a gateway sees most, as one human line. */
const CERT_ERRORS: Record<string, string> = {
  CERT_HAS_EXPIRED: 'certificate has expired',
  CERT_NOT_YET_VALID: 'certificate is not yet valid',
  UNABLE_TO_GET_ISSUER_CERT: 'issuer is not a CA in the fabric bundle',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'issuer is not a CA in the fabric bundle',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'issuer is not a CA in the fabric bundle',
  CERT_SIGNATURE_FAILURE: 'certificate signature does not verify',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate',
  SELF_SIGNED_CERT_IN_CHAIN: 'self-signed certificate in the chain',
  CERT_REVOKED: 'certificate is revoked',
  INVALID_PURPOSE: 'certificate is not for TLS client authentication',
  CERT_UNTRUSTED: 'certificate is not trusted',
  CERT_REJECTED: 'certificate is rejected',
};

export interface GatewayOptions {
  log: Logger;
  limits: { handshakeTimeoutMs: number; headerTimeoutMs: number; upstreamTimeoutMs: number; maxIngressConnections: number };
  authorizer: Authorizer;
  tlsState: TlsState;
  tunnels: TunnelRegistry;
  /** The data plane's ingress counters, updated in place. */
  stats: IngressStats;
  countHandshakeFailure(reason: string): void;
  warnRefused: WarnRefused;
}

export interface Gateway {
  /** Listens as `cfg.ingress` says (or stops); a changed identity or CA bundle replaces the TLS context of a running listener. */
  sync(cfg: DataplaneConfig): Promise<void>;
  address(): Endpoint | null;
  close(): Promise<void>;
}

export function createGateway(opts: GatewayOptions): Gateway {
  const { log, limits, authorizer, tlsState, tunnels, stats, countHandshakeFailure, warnRefused } = opts;
  let ingressServer: tls.Server | null = null;
  let ingressKey = '';
  /** The TLS material the gateway's context was built from (see tlsMaterialKey). */
  let ingressTlsKey = '';

  function reply(socket: tls.TLSSocket, status: number, text: string, reason?: string): void {
    const extra = reason ? `${TUNNEL.headers.denyReason}: ${reason.replace(/[\r\n]/g, ' ')}\r\n` : '';
    // Whatever the client sent after its head (bytes behind a refused CONNECT, the rest of a refused head) is read
    // and dropped, so that its end is seen and the socket closes; closing with unread bytes would
    // reset the connection and could lose this reply. A client that never closes is cut off.
    socket.on('data', discard);
    socket.resume();
    socket.end(`HTTP/1.1 ${status} ${text}\r\n${extra}Content-Length: 0\r\n\r\n`);
    const linger = setTimeout(destroySocket, REFUSAL_LINGER_MS, socket).unref();
    socket.once('close', () => clearTimeout(linger));
  }

  /** A connection that passed the pin check; `der` is the client certificate the TLS layer verified. */
  async function onIngress(socket: tls.TLSSocket, der: Buffer): Promise<void> {
    stats.connections++;
    socket.setNoDelay(true);
    socket.on('error', destroyOnError);
    let head: string;
    try {
      head = await readHead(socket, { maxHeaderBytes: TUNNEL.limits.maxHeaderBytes, maxHeaders: TUNNEL.limits.maxHeaders, timeoutMs: limits.headerTimeoutMs });
    } catch (err) {
      const e = err as HeadError;
      if (e.beforeFirstByte) {
        // A peer's preconnected spare closed or outlived unused (or a bare TLS probe): nothing was
        // asked, so nothing was refused. A slow-loris sends bytes, and is refused below.
        log.debug({ direction: 'ingress', remote: socket.remoteAddress }, e.message);
        if (!socket.destroyed && e.status === 408) reply(socket, 408, 'Request Timeout');
        else socket.destroy();
        return;
      }
      stats.badRequests++;
      warnRefused('bad-request', { direction: 'ingress', remote: socket.remoteAddress, status: e.status }, `refused: ${e.message}`);
      if (!socket.destroyed && e.status) reply(socket, e.status, e.status === 408 ? 'Request Timeout' : e.status === 431 ? 'Request Header Fields Too Large' : 'Bad Request');
      return;
    }
    stats.requests++;
    let parsed;
    try {
      parsed = parseHead(head, TUNNEL.limits.maxHeaders);
    } catch (err) {
      stats.badRequests++;
      const e = err as HeadError;
      warnRefused('bad-request', { direction: 'ingress', remote: socket.remoteAddress }, `refused: ${e.message}`);
      reply(socket, e.status ?? 400, 'Bad Request');
      return;
    }
    const [method, authority, version] = parsed.startLine;
    const target = method === 'CONNECT' && version === 'HTTP/1.1' && authority ? parseAuthority(authority) : null;
    if (!target) {
      stats.badRequests++;
      warnRefused('bad-request', { direction: 'ingress', remote: socket.remoteAddress }, 'refused: not a CONNECT <export>.<namespace>:443 HTTP/1.1 request');
      reply(socket, 400, 'Bad Request');
      return;
    }
    let client: ClientAttributes;
    try {
      client = clientAttributesFromHead((name) => parsed.headers.get(name));
    } catch (err) {
      stats.badRequests++;
      warnRefused('bad-request', { direction: 'ingress', remote: socket.remoteAddress }, `refused: ${(err as Error).message}`);
      reply(socket, 400, 'Bad Request');
      return;
    }
    const check = { peerCertificateDer: der, exportName: target.exportName, exportNamespace: target.exportNamespace, client };
    const verdict = await authorizer.ingress(check);
    if (!verdict.allowed) {
      stats.denied++;
      warnRefused('denied', { direction: 'ingress', peer: verdict.peer, export: `${target.exportNamespace}/${target.exportName}`, tier: verdict.explanation.tier, policy: verdict.explanation.policy, location: verdict.explanation.location }, `denied: ${verdict.explanation.message}`);
      reply(socket, verdict.status, verdict.status === 404 ? 'Not Found' : 'Forbidden', denyReason(verdict.explanation));
      return;
    }
    const upstreamOptions: net.NetConnectOpts & { highWaterMark: number } = { host: verdict.target.host, port: verdict.target.port, noDelay: true, allowHalfOpen: true, highWaterMark: RELAY_HIGH_WATER_MARK };
    const upstream = net.connect(upstreamOptions);
    const connected = await new Promise<boolean>((resolve) => {
      const settle = (ok: boolean): void => {
        clearTimeout(timer);
        upstream.off('connect', onConnect);
        upstream.off('error', onError);
        if (!ok) upstream.destroy();
        resolve(ok);
      };
      const onConnect = (): void => settle(true);
      const onError = (): void => settle(false);
      const timer = setTimeout(settle, limits.upstreamTimeoutMs, false);
      upstream.once('connect', onConnect);
      upstream.once('error', onError);
    });
    if (!connected || socket.destroyed) {
      upstream.destroy();
      stats.upstreamFailures++;
      log.warn({ direction: 'ingress', peer: verdict.peer, target: `${verdict.target.host}:${verdict.target.port}` }, 'exported service unreachable');
      if (!socket.destroyed) reply(socket, 502, 'Bad Gateway');
      return;
    }
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    stats.active++;
    socket.off('error', destroyOnError);
    const tunnel = new IngressTunnel(socket, upstream, verdict.peer, target.exportName, target.exportNamespace, client);
    tunnels.add(tunnel);
    tunnel.relay = relay(socket, upstream, (toService, toPeer) => {
      tunnels.delete(tunnel);
      stats.active--;
      stats.bytesIn += toService;
      stats.bytesOut += toPeer;
    });
  }

  /**
   * An open tunnel at the gateway. Keeps what revalidation needs and nothing else: the certificate
   * is read again from the socket (which holds it anyway) rather than kept as a copy per tunnel.
   */
  class IngressTunnel implements Tunnel {
    readonly side = 'ingress' as const;
    relay: RelayHandle | null = null;
    constructor(
      private readonly socket: tls.TLSSocket,
      private readonly upstream: net.Socket,
      private readonly peer: string,
      private readonly exportName: string,
      private readonly exportNamespace: string,
      private readonly client: ClientAttributes,
    ) {}
    addOpenBytes(_egress: Record<string, ImportStats>, ingress: IngressStats): void {
      ingress.bytesIn += this.upstream.bytesWritten;
      ingress.bytesOut += this.socket.bytesWritten;
    }
    async stillAllowed(): Promise<boolean | 'unknown'> {
      const cert = this.socket.getPeerX509Certificate();
      if (!cert) return false;
      const der = cert.raw;
      const v = await authorizer.ingress({ peerCertificateDer: der, exportName: this.exportName, exportNamespace: this.exportNamespace, client: this.client });
      if (!v.allowed && v.unavailable) return 'unknown';
      return v.allowed && v.peer === this.peer && tlsState.isPinned(der);
    }
    describe(): Record<string, string> {
      return { peer: this.peer, export: `${this.exportNamespace}/${this.exportName}` };
    }
    destroy(): void {
      this.socket.destroy();
      this.upstream.destroy();
    }
  }

  async function sync(cfg: DataplaneConfig): Promise<void> {
    const key = cfg.ingress ? `${cfg.ingress.address}:${cfg.ingress.port}` : '';
    if (ingressServer && key === ingressKey) {
      // A new context has new session-ticket keys: every importer's stored session would stop
      // resuming. Replace it only when the identity or the trusted CAs changed.
      const tlsKey = tlsMaterialKey(cfg.tls);
      if (tlsKey !== ingressTlsKey) {
        ingressServer.setSecureContext(serverContextOptions(cfg.tls));
        ingressTlsKey = tlsKey;
      }
      return;
    }
    if (ingressServer) {
      const old = ingressServer;
      ingressServer = null;
      await new Promise<void>((r) => old.close(() => r()));
    }
    ingressKey = key;
    if (!cfg.ingress) return;
    ingressTlsKey = tlsMaterialKey(cfg.tls);
    const server = tls.createServer({
      ...serverContextOptions(cfg.tls),
      requestCert: true,
      rejectUnauthorized: true,
      handshakeTimeout: limits.handshakeTimeoutMs,
      noDelay: true,
      // Tunnels carry half-close (relay.ts): a peer's FIN must not end the reply direction.
      allowHalfOpen: true,
    });
    server.maxConnections = limits.maxIngressConnections;
    // Beyond the limit Node closes new connections at accept. Every drop is counted; the log gets
    // the first drop at once and then one summary line per second while drops continue.
    let droppedSinceLog = 0;
    let dropTimer: NodeJS.Timeout | null = null;
    const dropSummary = (): void => {
      if (droppedSinceLog === 0) {
        dropTimer = null;
        return;
      }
      log.warn({ direction: 'ingress', dropped: droppedSinceLog, limit: limits.maxIngressConnections }, `refused: connection limit of ${limits.maxIngressConnections} reached (${droppedSinceLog} more dropped in the last second)`);
      droppedSinceLog = 0;
      dropTimer = setTimeout(dropSummary, 1000).unref();
    };
    server.on('drop', (data?: { remoteAddress?: string }) => {
      countHandshakeFailure('connection-limit');
      if (dropTimer) {
        droppedSinceLog++;
        return;
      }
      log.warn({ direction: 'ingress', remote: data?.remoteAddress, limit: limits.maxIngressConnections }, `refused: connection limit of ${limits.maxIngressConnections} reached, new connections are dropped`);
      dropTimer = setTimeout(dropSummary, 1000).unref();
    });
    server.on('close', () => {
      if (dropTimer) clearTimeout(dropTimer);
    });
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      // The pin check is the first gate (cheap, before any parsing); the authorizer re-verifies the
      // full identity (chain, SAN, membership, revocation) from the same certificate.
      const cert = socket.getPeerX509Certificate();
      if (!cert) {
        countHandshakeFailure('no-client-certificate');
        warnRefused('handshake', { direction: 'ingress', remote: socket.remoteAddress }, 'refused: no client certificate');
        socket.destroy();
        return;
      }
      const der = cert.raw;
      if (!tlsState.isPinned(der)) {
        countHandshakeFailure('unpinned-certificate');
        warnRefused('handshake', { direction: 'ingress', remote: socket.remoteAddress, subject: cert.subject, fingerprint: fingerprintOf(der) }, 'refused: client certificate is not a current member\'s committed peer.pem');
        socket.destroy();
        return;
      }
      onIngress(socket, der).catch((err: Error) => {
        log.error({ err: err.message }, 'ingress connection failed');
        socket.destroy();
      });
    });
    server.on('tlsClientError', (err: Error & { code?: string; reason?: string }, socket) => {
      // A client certificate that fails verification completes the TLS 1.3 handshake and is then
      // destroyed by Node, which reports only "socket hang up": the reason is authorizationError.
      // Typed as Error, but Node sets the OpenSSL code (a string) here.
      const authError: unknown = socket.authorizationError;
      const certError = typeof authError === 'string' ? authError : authError instanceof Error ? ((authError as Error & { code?: string }).code ?? authError.message) : undefined;
      const reason = certError ?? err.code ?? 'tls-error';
      countHandshakeFailure(reason);
      const message = certError
        ? `client certificate refused (${certError}): ${CERT_ERRORS[certError] ?? 'does not verify against the fabric CA bundle'}`
        : `${err.reason ?? err.message}${(err.code && TLS_HINTS[err.code]) ?? ''}`;
      warnRefused('handshake', { direction: 'ingress', remote: socket.remoteAddress, reason }, `TLS handshake refused: ${message}`);
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(cfg.ingress!.port, cfg.ingress!.address, () => {
        server.off('error', reject);
        resolve();
      });
    });
    ingressServer = server;
  }

  return {
    sync,
    address() {
      const a = ingressServer?.address();
      return a && typeof a === 'object' ? { host: a.address, port: a.port } : null;
    },
    async close() {
      const server = ingressServer;
      ingressServer = null;
      if (server) await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
