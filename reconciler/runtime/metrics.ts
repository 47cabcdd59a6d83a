// Prometheus metrics of one peer runtime, on its own Registry (never prom-client's global one, so
// several runtimes in one process — the demo, the tests — never mix). Nothing is counted here:
// counters and gauges are read at scrape time from the runtime's status(), telemetry() and the
// data plane's stats(), which keep the cumulative counts; the histograms and the summary are the
// runtime's own prom-client objects (distributions), registered here. A metric exists only where those sources
// hold exactly what it means (see docs/operations.md for the list and for what is missing).
import type http from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { DataplaneStats } from '../../dataplane/dataplane.ts';
import type { PeerRuntime } from './peer-runtime.ts';
import type { SourceStatus } from '../source/types.ts';

export interface RuntimeMetricsOptions {
  /** Node process metrics (CPU, memory, event loop lag, handles, GC) with the `clgo_` prefix. Default true. */
  processMetrics?: boolean;
  /** Labels added to every series (e.g. `{ peer: 'east' }` when several runtimes share a scrape target). */
  defaultLabels?: Record<string, string>;
}

export interface RuntimeMetrics {
  registry: Registry;
  contentType: string;
  /** The exposition text (Prometheus text format 0.0.4). */
  render(): Promise<string>;
  /** GET/HEAD handler for the admin server's /metrics. */
  handler(req: http.IncomingMessage, res: http.ServerResponse): Promise<void>;
}

/** Prometheus text format 0.0.4, as scrapers expect it. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Sets a counter to a cumulative value read from a source (values only grow while the runtime lives). */
export function setCounter<L extends string>(c: Counter<L>, labels: Partial<Record<L, string>>, value: number): void {
  c.inc(labels, Math.max(0, value));
}

/** What the fabric-level gauges read: shared by the local runtime and the cluster control plane. */
export interface FabricState {
  ready: boolean;
  applied: { revision: string; at: string } | null;
  lastApplyError: unknown;
  source: SourceStatus;
}

/** Revision served, last-good flag, readiness, source fetch time and pending source error. */
export function registerFabricMetrics(registers: Registry[], read: () => FabricState): void {
  new Gauge({
    name: 'clgo_fabric_revision_info',
    help: 'The fabric revision whose configuration this peer serves (value 1; absent before the first apply).',
    labelNames: ['revision'],
    registers,
    collect() {
      this.reset();
      const applied = read().applied;
      if (applied) this.set({ revision: applied.revision }, 1);
    },
  });
  new Gauge({
    name: 'clgo_fabric_last_good',
    help: '1 when the newest revision the source saw is the one served (last attempt good); 0 while a fetch, validation or apply failure keeps an older last good revision serving, or before any revision was applied.',
    registers,
    collect() {
      const st = read();
      const upToDate = st.applied !== null && st.source.lastError === null && st.lastApplyError === null && st.source.lastAttemptedRevision === st.applied.revision;
      this.set(upToDate ? 1 : 0);
    },
  });
  new Gauge({
    name: 'clgo_ready',
    help: '1 once a configuration is applied (the /readyz condition).',
    registers,
    collect() {
      this.set(read().ready ? 1 : 0);
    },
  });
  new Gauge({
    name: 'clgo_fabric_applied_timestamp_seconds',
    help: 'When the served revision was applied (Unix time).',
    registers,
    collect() {
      this.reset();
      const applied = read().applied;
      if (applied) this.set(Date.parse(applied.at) / 1000);
    },
  });
  new Gauge({
    name: 'clgo_source_last_fetch_timestamp_seconds',
    help: 'When the source last fetched (Git) or read (directory) successfully (Unix time).',
    registers,
    collect() {
      this.reset();
      const t = read().source.lastFetchTime;
      if (t) this.set(Date.parse(t) / 1000);
    },
  });
  new Gauge({
    name: 'clgo_source_last_error_info',
    help: 'The pending source error by stage (fetch, signature, fast-forward, tree, validate, apply); value is its Unix time. Absent when the last attempt succeeded.',
    labelNames: ['stage'],
    registers,
    collect() {
      this.reset();
      const e = read().source.lastError;
      if (e) this.set({ stage: e.stage }, Date.parse(e.at) / 1000);
    },
  });
}

export function createRuntimeMetrics(runtime: PeerRuntime, opts: RuntimeMetricsOptions = {}): RuntimeMetrics {
  const registry = new Registry();
  if (opts.defaultLabels) registry.setDefaultLabels(opts.defaultLabels);
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'clgo_' });
  const registers = [registry];
  // One status() per scrape, shared by every collector: status() copies the data plane's counters
  // and walks its open tunnels, which ~30 collectors would otherwise repeat per scrape. Each
  // render starts from a fresh snapshot; one read through the registry directly lasts a turn of
  // the event loop (a scrape starts all collectors in one).
  let snapshot: ReturnType<PeerRuntime['status']> | null = null;
  const status = (): ReturnType<PeerRuntime['status']> => {
    if (!snapshot) {
      snapshot = runtime.status();
      setImmediate(() => (snapshot = null));
    }
    return snapshot;
  };
  const dp = (): DataplaneStats | null => status().dataplane;

  // ------------------------------------------------------------ fabric and reconcile
  registerFabricMetrics(registers, status);
  new Gauge({
    name: 'clgo_fabric_config_version',
    help: 'Monotonic configuration version handed to the data plane (one per applied revision).',
    registers,
    collect() {
      this.set(status().applied?.version ?? 0);
    },
  });
  new Counter({
    name: 'clgo_reconciles_total',
    help: 'Revisions handed to this runtime by its source (after the source gates), by outcome of the apply.',
    labelNames: ['result'],
    registers,
    collect() {
      this.reset();
      const r = runtime.telemetry().reconcile;
      setCounter(this, { result: 'applied' }, r.applied);
      setCounter(this, { result: 'failed' }, r.failed);
    },
  });
  new Counter({
    name: 'clgo_reconcile_errors_total',
    help: 'Revisions refused, by stage: fetch, signature, fast-forward, tree, validate (the source) and apply (slice, configuration, data plane update).',
    labelNames: ['stage'],
    registers,
    collect() {
      this.reset();
      const byStage = { ...status().source.errorsByStage };
      // Apply failures are counted by the runtime (the source sees them only through listeners).
      byStage.apply = Math.max(byStage.apply ?? 0, runtime.telemetry().reconcile.failed);
      for (const [stage, n] of Object.entries(byStage)) setCounter(this, { stage }, n);
    },
  });
  registry.registerMetric(runtime.distributions.reconcileSeconds);

  // ------------------------------------------------------------ authorization
  new Counter({
    name: 'clgo_authz_decisions_total',
    help: 'Authorization decisions asked by the data plane (new connections, and re-checks of open tunnels after a revision change), by direction, result and deciding tier (privileged, user, default; `unknown` for allowed verdicts, which do not carry their tier).',
    labelNames: ['direction', 'result', 'tier'],
    registers,
    collect() {
      this.reset();
      for (const d of runtime.telemetry().authz) setCounter(this, { direction: d.direction, result: d.result, tier: d.tier }, d.count);
    },
  });

  // ------------------------------------------------------------ egress tunnels, per import
  /** Metrics with one series per key of a data-plane stats record (imports, exporter endpoints), read at scrape. */
  const perKey =
    <L extends string, S>(label: L, entries: () => Record<string, S>) =>
    (name: string, help: string, pick: (s: S) => number, kind: 'counter' | 'gauge'): void => {
      const config = { name, help, labelNames: [label] as const, registers };
      const series = (): Array<[Partial<Record<L, string>>, number]> => Object.entries(entries()).map(([key, s]) => [{ [label]: key } as Partial<Record<L, string>>, pick(s)]);
      if (kind === 'counter') {
        new Counter({
          ...config,
          collect() {
            this.reset();
            for (const [labels, v] of series()) setCounter(this, labels, v);
          },
        });
      } else {
        new Gauge({
          ...config,
          collect() {
            this.reset();
            for (const [labels, v] of series()) this.set(labels, v);
          },
        });
      }
    };
  const perImport = perKey('import', () => dp()?.egress ?? {});
  perImport('clgo_tunnel_connections_total', 'Local connections accepted by an import listener (whatever came of them).', (s) => s.connections, 'counter');
  perImport('clgo_tunnel_active', 'Tunnels of an import open now.', (s) => s.active, 'gauge');
  perImport('clgo_tunnel_denied_total', 'Connections to an import refused by egress policy.', (s) => s.denied, 'counter');
  perImport('clgo_tunnel_failures_total', 'Connections to an import that no exporter accepted (every allowed exporter failed or refused).', (s) => s.failed, 'counter');
  perImport('clgo_tunnel_preconnected_total', 'Tunnels of an import that started on a preconnected spare TLS connection (its handshake begun before the tunnel was asked for).', (s) => s.preconnected, 'counter');
  perImport('clgo_tunnel_failovers_total', 'Tunnel attempts after the first for one connection (the next exporter endpoint was tried).', (s) => s.failovers, 'counter');
  new Counter({
    name: 'clgo_tunnel_bytes_total',
    help: 'Bytes carried by the tunnels of an import, closed and open: direction=out is local client → exporter, in is exporter → client.',
    labelNames: ['import', 'direction'],
    registers,
    collect() {
      this.reset();
      for (const [ref, s] of Object.entries(dp()?.egress ?? {})) {
        setCounter(this, { import: ref, direction: 'out' }, s.bytesOut);
        setCounter(this, { import: ref, direction: 'in' }, s.bytesIn);
      }
    },
  });
  registry.registerMetric(runtime.distributions.tunnelSetupSeconds);
  registry.registerMetric(runtime.distributions.tunnelSetupRecentSeconds);

  // ------------------------------------------------------------ exporter endpoints
  const perExporter = perKey('exporter', () => dp()?.exporters ?? {});
  perExporter('clgo_exporter_attempts_total', 'Tunnel attempts to a remote peer\'s gateway endpoint (`peer@host:port`).', (e) => e.connections, 'counter');
  perExporter('clgo_exporter_failures_total', 'Failed tunnel attempts to a gateway endpoint (connect, TLS, time-out, non-policy refusal); policy refusals (403/404) are not failures.', (e) => e.failures, 'counter');
  perExporter('clgo_exporter_ejections_total', 'Times a gateway endpoint was ejected (passive outlier detection: ejectAfterFailures consecutive failures).', (e) => e.ejections, 'counter');
  perExporter('clgo_exporter_ejected', '1 while a gateway endpoint is ejected after consecutive failures (new connections skip it).', (e) => (e.ejected ? 1 : 0), 'gauge');
  new Counter({
    name: 'clgo_exporter_tls_handshakes_total',
    help: 'TLS handshakes completed with a gateway endpoint (tunnels and preconnected spares), by whether a stored session was resumed.',
    labelNames: ['exporter', 'resumed'],
    registers,
    collect() {
      this.reset();
      for (const [key, e] of Object.entries(dp()?.exporters ?? {})) {
        setCounter(this, { exporter: key, resumed: 'true' }, e.resumed);
        setCounter(this, { exporter: key, resumed: 'false' }, e.handshakes - e.resumed);
      }
    },
  });

  // ------------------------------------------------------------ gateway (ingress)
  /** A counter of the whole data plane, read at scrape. */
  const dataplaneCounter = (name: string, help: string, pick: (s: DataplaneStats) => number): void => {
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        const s = dp();
        if (s) setCounter(this, {}, pick(s));
      },
    });
  };
  const gateway = (name: string, help: string, pick: (g: DataplaneStats['ingress']) => number, kind: 'counter' | 'gauge'): void => {
    if (kind === 'counter') {
      dataplaneCounter(name, help, (s) => pick(s.ingress));
    } else {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.reset();
          const g = dp()?.ingress;
          if (g) this.set(pick(g));
        },
      });
    }
  };
  gateway('clgo_gateway_connections_total', 'Connections at the gateway that completed mutual TLS with a pinned member certificate (peers\' preconnected spares included).', (g) => g.connections, 'counter');
  gateway('clgo_gateway_requests_total', 'Tunnel requests (complete CONNECT heads) received by the gateway, whatever came of them.', (g) => g.requests, 'counter');
  gateway('clgo_gateway_active', 'Tunnels open at the gateway now.', (g) => g.active, 'gauge');
  gateway('clgo_gateway_denied_total', 'CONNECT requests refused by ingress policy or identity checks (403/404).', (g) => g.denied, 'counter');
  gateway('clgo_gateway_bad_requests_total', 'Malformed, oversized or timed-out CONNECT request heads.', (g) => g.badRequests, 'counter');
  gateway('clgo_gateway_upstream_failures_total', 'Allowed tunnels whose exported service could not be reached (502).', (g) => g.upstreamFailures, 'counter');
  new Counter({
    name: 'clgo_gateway_bytes_total',
    help: 'Bytes carried by gateway tunnels, closed and open: direction=in is remote peer → exported service, out is service → remote peer.',
    labelNames: ['direction'],
    registers,
    collect() {
      this.reset();
      const g = dp()?.ingress;
      if (!g) return;
      setCounter(this, { direction: 'in' }, g.bytesIn);
      setCounter(this, { direction: 'out' }, g.bytesOut);
    },
  });
  new Counter({
    name: 'clgo_tls_handshake_failures_total',
    help: 'Connections refused at the gateway before any request was read, by reason (OpenSSL or socket error code, unpinned-certificate, no-client-certificate, …).',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(dp()?.handshakeFailures ?? {})) setCounter(this, { reason }, n);
    },
  });
  // ------------------------------------------------------------ tunnel lifecycle, whole data plane
  dataplaneCounter('clgo_tunnels_idle_closed_total', 'Tunnels closed because no byte moved in either direction for the idle time-out (default 1 h).', (s) => s.idleClosed);
  dataplaneCounter('clgo_tunnels_revoked_total', 'Open tunnels closed because a new revision revoked their right (peer removed, pin changed, policy now denies).', (s) => s.revalidationsClosed);
  dataplaneCounter('clgo_tunnel_revalidations_deferred_total', 'Open tunnels kept during a re-check because no authorization decision could be had (service away); each is asked again later.', (s) => s.revalidationsDeferred);

  return exposition(registry, () => (snapshot = null));
}

/** A registry as the admin server serves it; `beforeScrape` runs at the start of every render. */
export function exposition(registry: Registry, beforeScrape: () => void = () => undefined): RuntimeMetrics {
  const render = (): Promise<string> => {
    beforeScrape();
    return registry.metrics();
  };
  return {
    registry,
    contentType: METRICS_CONTENT_TYPE,
    render,
    async handler(req, res) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' });
        res.end('GET only\n');
        return;
      }
      const body = await render();
      res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    },
  };
}
