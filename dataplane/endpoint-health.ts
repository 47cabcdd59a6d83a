// Outlier detection per exporter endpoint (like Envoy's consecutive-failure ejection) and the
// counters behind DataplaneStats.exporters. Pure: no sockets, the clock is injected.

/** What the stats show of one exporter endpoint `peer@host:port`. */
export interface EndpointCounters {
  /** Tunnel attempts. */
  connections: number;
  failures: number;
  /** Times ejected. */
  ejections: number;
  /** Ejected now. */
  ejected: boolean;
  /** TLS handshakes completed, and how many of them resumed a session. */
  handshakes: number;
  resumed: number;
}

export interface EndpointHealthOptions {
  /** Consecutive failures that eject an endpoint, and for how long. */
  ejectAfterFailures: number;
  ejectForMs: number;
  /** Wall clock in ms (Date.now by default). */
  now?: () => number;
}

export interface EndpointHealth {
  /** Whether the endpoint is out of rotation now. */
  isEjected(key: string): boolean;
  /** A tunnel attempt to the endpoint begins. */
  attempt(key: string): void;
  /** An attempt succeeded: the run of consecutive failures ends. */
  succeeded(key: string): void;
  /** An attempt failed for a reason that counts against the endpoint; returns the run length when this failure ejected it, else null. */
  failed(key: string): number | null;
  /** A TLS handshake with the endpoint completed. */
  handshake(key: string, resumed: boolean): void;
  /** Every endpoint seen so far. */
  snapshot(): Record<string, EndpointCounters>;
}

interface EndpointState {
  consecutive: number;
  ejectedUntil: number;
  connections: number;
  failures: number;
  ejections: number;
  handshakes: number;
  resumed: number;
}

export function endpointKey(peer: string, ep: { host: string; port: number }): string {
  return `${peer}@${ep.host}:${ep.port}`;
}

export function createEndpointHealth(opts: EndpointHealthOptions): EndpointHealth {
  const now = opts.now ?? Date.now;
  const endpoints = new Map<string, EndpointState>();
  const get = (key: string): EndpointState => {
    let h = endpoints.get(key);
    if (!h) endpoints.set(key, (h = { consecutive: 0, ejectedUntil: 0, connections: 0, failures: 0, ejections: 0, handshakes: 0, resumed: 0 }));
    return h;
  };
  return {
    isEjected: (key) => (endpoints.get(key)?.ejectedUntil ?? 0) > now(),
    attempt(key) {
      get(key).connections++;
    },
    succeeded(key) {
      get(key).consecutive = 0;
    },
    failed(key) {
      const h = get(key);
      h.failures++;
      // The run is not reset by an ejection: a failure right after one ends ejects again.
      if (++h.consecutive < opts.ejectAfterFailures) return null;
      h.ejectedUntil = now() + opts.ejectForMs;
      h.ejections++;
      return h.consecutive;
    },
    handshake(key, resumed) {
      const h = get(key);
      h.handshakes++;
      if (resumed) h.resumed++;
    },
    snapshot() {
      const t = now();
      const out: Record<string, EndpointCounters> = {};
      for (const [key, h] of endpoints) out[key] = { connections: h.connections, failures: h.failures, ejections: h.ejections, ejected: h.ejectedUntil > t, handshakes: h.handshakes, resumed: h.resumed };
      return out;
    },
  };
}
