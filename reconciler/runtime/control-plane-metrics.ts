// Metrics of the cluster control plane (`clgo run` without --local): the fabric revision it serves,
// its xDS clients (pushes, ACKs, NACKs, whether each node is in sync), the ext_authz decisions it
// made for them, and the Kubernetes target. Read at scrape time from the control plane's status.
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { ControlPlane } from './control-plane.ts';
import { exposition, registerFabricMetrics, setCounter, type RuntimeMetrics, type RuntimeMetricsOptions } from './metrics.ts';

export function createControlPlaneMetrics(plane: ControlPlane, opts: RuntimeMetricsOptions = {}): RuntimeMetrics {
  const registry = new Registry();
  if (opts.defaultLabels) registry.setDefaultLabels(opts.defaultLabels);
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'clgo_' });
  const registers = [registry];
  registerFabricMetrics(registers, () => plane.status());

  const perType = (name: string, help: string, pick: (t: { pushes: number; acks: number; nacks: number }) => number): void => {
    new Counter({
      name,
      help,
      labelNames: ['node', 'type'],
      registers,
      collect() {
        this.reset();
        for (const n of plane.status().xds.nodes) for (const [type, t] of Object.entries(n.types)) setCounter(this, { node: n.node, type: type.slice(type.lastIndexOf('.') + 1) }, pick(t));
      },
    });
  };
  perType('clgo_xds_pushes_total', 'xDS responses sent to a data-plane node, by resource type.', (t) => t.pushes);
  perType('clgo_xds_acks_total', 'xDS responses a node accepted (ACK).', (t) => t.acks);
  perType('clgo_xds_nacks_total', 'xDS responses a node rejected (NACK); it keeps its last accepted configuration.', (t) => t.nacks);
  new Gauge({
    name: 'clgo_xds_node_synced',
    help: '1 when a data-plane node has ACKed the current version of every type it subscribed; 0 while a push is outstanding or NACKed.',
    labelNames: ['node'],
    registers,
    collect() {
      this.reset();
      for (const n of plane.status().xds.nodes) this.set({ node: n.node }, Object.values(n.types).every((t) => t.sentVersion !== null && t.ackedVersion === t.sentVersion && t.nack === null) ? 1 : 0);
    },
  });
  new Gauge({
    name: 'clgo_xds_streams',
    help: 'Open ADS streams per data-plane node.',
    labelNames: ['node'],
    registers,
    collect() {
      this.reset();
      for (const n of plane.status().xds.nodes) this.set({ node: n.node }, n.streams);
    },
  });
  new Counter({
    name: 'clgo_authz_decisions_total',
    help: 'ext_authz decisions made for this peer\'s data planes, by direction, result and deciding tier (`unknown` for allowed verdicts).',
    labelNames: ['direction', 'result', 'tier'],
    registers,
    collect() {
      this.reset();
      for (const d of plane.authzCounts()) setCounter(this, { direction: d.direction, result: d.result, tier: d.tier }, d.count);
    },
  });
  new Counter({
    name: 'clgo_dataplane_auth_refusals_total',
    help: 'Clients refused by the mutual TLS of the ADS (`xds`) and ext_authz (`authz`) servers, by reason (tls-handshake, no-client-certificate, untrusted-ca, unexpected-peer, revoked, pin-mismatch, node-id, ...).',
    labelNames: ['server', 'reason'],
    registers,
    collect() {
      this.reset();
      for (const r of plane.status().refusedClients) setCounter(this, { server: r.server, reason: r.reason }, r.count);
    },
  });
  new Gauge({
    name: 'clgo_kube_apply_ok',
    help: '1 when the last slice handed to the Kubernetes target was applied (or held by a standby replica); 0 after a failure. Absent without --kube.',
    registers,
    collect() {
      this.reset();
      const t = plane.status().target;
      if (t) this.set(t.ok ? 1 : 0);
    },
  });
  return exposition(registry);
}
