// deploy/: every overlay renders (test/deploy/render-kustomize.ts stands in for kustomize), the
// objects have a sane shape (zod), references between them resolve, RBAC is least privilege,
// containers are hardened, and the Envoy bootstrap is a valid envoy.config.bootstrap.v3.Bootstrap
// for the protos the reconciler's xDS resources are checked against.
import { Command } from 'commander';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { decodeAny, encodeAny } from '../../protocol/envoy-protos.ts';
import type { CliContext } from '../../reconciler/cli/context.ts';
import { register as registerRun } from '../../reconciler/cli/commands/run.ts';
import { CLUSTER_SCOPED, configMapHash, imageName, renderKustomization, strategicMerge, type KObject } from './render-kustomize.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const DEPLOY = join(ROOT, 'deploy');
const NAMESPACE = 'clusterlink-system';
const BOOTSTRAP_TYPE = 'type.googleapis.com/envoy.config.bootstrap.v3.Bootstrap';
const PEERS = readdirSync(join(ROOT, 'fabric-example', 'peers')).sort();
const OVERLAYS = readdirSync(join(DEPLOY, 'overlays')).sort();

// ---- zod schemas of the shapes deploy/ uses ------------------------------------------------

const dns1123Label = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
const labels = z.record(z.string(), z.string());
const port = z.number().int().min(1).max(65535);
const portName = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/).max(15);
const portRef = z.union([port, portName]);
const quantity = z.string().regex(/^\d+(\.\d+)?(m|Ki|Mi|Gi)?$/);
const metadata = z.looseObject({ name: dns1123Label, namespace: z.string().optional(), labels: labels.optional() });

const envVar = z.strictObject({
  name: z.string().regex(/^[A-Z_][A-Z0-9_]*$/),
  value: z.string().optional(),
  valueFrom: z
    .union([
      z.strictObject({ configMapKeyRef: z.strictObject({ name: z.string(), key: z.string() }) }),
      z.strictObject({ fieldRef: z.strictObject({ fieldPath: z.string() }) }),
    ])
    .optional(),
});
const probe = z
  .strictObject({
    httpGet: z.strictObject({ path: z.string().startsWith('/'), port: portRef }).optional(),
    tcpSocket: z.strictObject({ port: portRef }).optional(),
    initialDelaySeconds: z.number().int().nonnegative().optional(),
    periodSeconds: z.number().int().positive().optional(),
    failureThreshold: z.number().int().positive().optional(),
  })
  .refine((p) => (p.httpGet ? 1 : 0) + (p.tcpSocket ? 1 : 0) === 1, 'exactly one probe handler');
const seccomp = z.strictObject({ type: z.literal('RuntimeDefault') });
const container = z.strictObject({
  name: dns1123Label,
  image: z.string().regex(/^[a-z0-9./-]+(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$/),
  command: z.array(z.string()).optional(),
  args: z.array(z.string()).optional(),
  env: z.array(envVar).optional(),
  ports: z.array(z.strictObject({ name: portName, containerPort: port, protocol: z.enum(['TCP', 'UDP']) })).optional(),
  readinessProbe: probe.optional(),
  livenessProbe: probe.optional(),
  resources: z.strictObject({
    requests: z.strictObject({ cpu: quantity, memory: quantity }),
    limits: z.strictObject({ memory: quantity }),
  }),
  securityContext: z.strictObject({
    runAsNonRoot: z.literal(true),
    readOnlyRootFilesystem: z.literal(true),
    allowPrivilegeEscalation: z.literal(false),
    capabilities: z.strictObject({ drop: z.array(z.string()) }),
    seccompProfile: seccomp,
  }),
  volumeMounts: z.array(z.strictObject({ name: z.string(), mountPath: z.string().startsWith('/'), readOnly: z.boolean().optional() })).optional(),
});
type Container = z.infer<typeof container>;
const volume = z.strictObject({
  name: dns1123Label,
  secret: z.strictObject({ secretName: z.string(), defaultMode: z.number().int().min(0).max(0o777) }).optional(),
  configMap: z.strictObject({ name: z.string() }).optional(),
  emptyDir: z.strictObject({ sizeLimit: quantity.optional() }).optional(),
});
const podSpec = z.strictObject({
  serviceAccountName: z.string().optional(),
  automountServiceAccountToken: z.boolean().optional(),
  securityContext: z.strictObject({
    runAsNonRoot: z.literal(true),
    runAsUser: z.number().int().positive(),
    runAsGroup: z.number().int().positive(),
    fsGroup: z.number().int().positive().optional(),
    seccompProfile: seccomp,
  }),
  topologySpreadConstraints: z.array(z.looseObject({ topologyKey: z.string(), labelSelector: z.strictObject({ matchLabels: labels }) })).optional(),
  containers: z.array(container).min(1),
  volumes: z.array(volume).optional(),
});
const deployment = z.looseObject({
  apiVersion: z.literal('apps/v1'),
  kind: z.literal('Deployment'),
  metadata,
  spec: z.strictObject({
    replicas: z.number().int().min(1),
    selector: z.strictObject({ matchLabels: labels }),
    template: z.strictObject({ metadata: z.strictObject({ labels }), spec: podSpec }),
  }),
});
type Deployment = z.infer<typeof deployment>;
const service = z.looseObject({
  apiVersion: z.literal('v1'),
  kind: z.literal('Service'),
  metadata,
  spec: z.strictObject({
    type: z.enum(['ClusterIP', 'LoadBalancer']),
    selector: labels,
    ports: z.array(z.strictObject({ name: portName, port, targetPort: portRef, protocol: z.literal('TCP'), appProtocol: z.string().optional() })).min(1),
  }),
});
const labelSelector = z.strictObject({ matchLabels: labels.optional() });
const networkPolicy = z.looseObject({
  apiVersion: z.literal('networking.k8s.io/v1'),
  kind: z.literal('NetworkPolicy'),
  metadata,
  spec: z.strictObject({
    podSelector: labelSelector,
    policyTypes: z.array(z.enum(['Ingress', 'Egress'])),
    ingress: z.array(
      z.strictObject({
        from: z.array(z.strictObject({ podSelector: labelSelector.optional(), namespaceSelector: labelSelector.optional() })).optional(),
        ports: z.array(z.strictObject({ port, protocol: z.literal('TCP') })).optional(),
      }),
    ),
  }),
});
const pdb = z.looseObject({
  apiVersion: z.literal('policy/v1'),
  kind: z.literal('PodDisruptionBudget'),
  metadata,
  spec: z.strictObject({ minAvailable: z.number().int().min(1), selector: z.strictObject({ matchLabels: labels }), unhealthyPodEvictionPolicy: z.enum(['IfHealthyBudget', 'AlwaysAllow']).optional() }),
});
const configMap = z.looseObject({ apiVersion: z.literal('v1'), kind: z.literal('ConfigMap'), metadata, data: z.record(z.string(), z.string()) });
const rule = z.strictObject({ apiGroups: z.array(z.string()), resources: z.array(z.string()).min(1), verbs: z.array(z.string()).min(1), resourceNames: z.array(z.string()).optional() });
const role = z.looseObject({ apiVersion: z.literal('rbac.authorization.k8s.io/v1'), kind: z.enum(['Role', 'ClusterRole']), metadata, rules: z.array(rule).min(1) });
const binding = z.looseObject({
  apiVersion: z.literal('rbac.authorization.k8s.io/v1'),
  kind: z.enum(['RoleBinding', 'ClusterRoleBinding']),
  metadata,
  roleRef: z.strictObject({ apiGroup: z.literal('rbac.authorization.k8s.io'), kind: z.enum(['Role', 'ClusterRole']), name: z.string() }),
  subjects: z.array(z.strictObject({ kind: z.literal('ServiceAccount'), name: z.string(), namespace: z.string() })).min(1),
});

// ---- helpers -------------------------------------------------------------------------------

const of = (objs: KObject[], kind: string): KObject[] => objs.filter((o) => o.kind === kind);
const one = (objs: KObject[], kind: string, name: string): KObject => {
  const found = objs.filter((o) => o.kind === kind && o.metadata.name === name);
  expect(found, `${kind}/${name}`).toHaveLength(1);
  return found[0]!;
};
const selects = (selector: Record<string, string>, podLabels: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => podLabels[k] === v);
/** The Deployments that parse (the shape test reports the others). */
const deploymentsOf = (objs: KObject[]): Deployment[] => of(objs, 'Deployment').flatMap((d) => {
  const r = deployment.safeParse(d);
  return r.success ? [r.data] : [];
});
/** The ConfigMap generated as `name` (kustomize appends a content hash). */
const generated = (objs: KObject[], name: string): z.infer<typeof configMap> => {
  const found = of(objs, 'ConfigMap').filter((c) => new RegExp(`^${name}-[a-z0-9]{10}$`).test(c.metadata.name));
  expect(found, `generated ConfigMap ${name}`).toHaveLength(1);
  return configMap.parse(found[0]);
};

/** Throws unless everything in `original` (Envoy YAML, snake_case, `@type` for Any) survived fromObject → encode → decode. */
function assertPreserved(original: unknown, decoded: unknown, path: string): void {
  if (Array.isArray(original)) {
    if (!Array.isArray(decoded) || decoded.length !== original.length) throw new Error(`${path}: list not preserved`);
    original.forEach((o, i) => assertPreserved(o, decoded[i], `${path}[${i}]`));
    return;
  }
  if (typeof original === 'object' && original !== null) {
    if (typeof decoded !== 'object' || decoded === null) throw new Error(`${path}: message dropped`);
    const o = original as Record<string, unknown>;
    const d = decoded as Record<string, unknown>;
    if (typeof o['@type'] === 'string') {
      if (d.type_url !== o['@type'] || !(d.value instanceof Uint8Array)) throw new Error(`${path}: Any of ${o['@type']} not preserved`);
      const { '@type': _type, ...inner } = o;
      assertPreserved(inner, decodeAny(o['@type'], d.value), `${path}<${o['@type']}>`);
      return;
    }
    for (const [k, v] of Object.entries(o)) {
      if (!(k in d)) throw new Error(`${path}.${k}: unknown field or enum value (dropped by the proto)`);
      assertPreserved(v, d[k], `${path}.${k}`);
    }
    return;
  }
  if (String(original) !== String(decoded)) throw new Error(`${path}: ${String(original)} became ${String(decoded)}`);
}

function envoyBootstrap(yamlText: string): { source: Record<string, unknown>; decoded: Record<string, unknown> } {
  const source = parseYaml(yamlText) as Record<string, unknown>;
  // The project's root (protocol/envoy-protos.ts) keeps the protos' snake_case field names,
  // which is also what Envoy's YAML uses: no key conversion. encodeAny = fromObject + verify (throws
  // on a non-null verify result); fromObject silently drops unknown fields and enum names, so the
  // round trip must preserve every value too.
  const { value } = encodeAny(BOOTSTRAP_TYPE, source);
  const decoded = decodeAny(BOOTSTRAP_TYPE, value);
  assertPreserved(source, decoded, 'bootstrap');
  return { source, decoded };
}

// ---- per overlay ---------------------------------------------------------------------------

it('there is an overlay for every example peer', () => {
  expect(OVERLAYS).toEqual(PEERS);
});

describe.each(OVERLAYS)('deploy/overlays/%s', (peer) => {
  // Collection must not throw: a render error or a malformed Deployment fails the tests below
  // with its message instead of hiding every test of the overlay.
  let objs: KObject[] = [];
  let renderError: unknown;
  try {
    objs = renderKustomization(join(DEPLOY, 'overlays', peer));
  } catch (err) {
    renderError = err;
  }
  const deployments = deploymentsOf(objs);
  const reconciler = deployments.find((d) => d.metadata.name === 'clgo-reconciler')!;
  const tunnel = deployments.find((d) => d.metadata.name === 'clgo-tunnel')!;
  const podsOf = (selector: Record<string, string>): Deployment[] => deployments.filter((d) => selects(selector, d.spec.template.metadata.labels));

  it('renders the expected objects', () => {
    expect(renderError).toBeUndefined();
    const ids = objs.map((o) => `${o.kind}/${o.kind === 'ConfigMap' ? o.metadata.name.replace(/-[a-z0-9]{10}$/, '-<hash>') : o.metadata.name}`).sort();
    expect(ids).toEqual(
      [
        'ClusterRole/clgo-reconciler',
        'ClusterRoleBinding/clgo-reconciler',
        'ConfigMap/clgo-envoy-bootstrap-<hash>',
        'ConfigMap/clgo-peer-<hash>',
        'Deployment/clgo-reconciler',
        'Deployment/clgo-tunnel',
        'Namespace/clusterlink-system',
        'NetworkPolicy/clgo-reconciler',
        'NetworkPolicy/clgo-tunnel',
        'PodDisruptionBudget/clgo-tunnel',
        'Role/clgo-reconciler',
        'RoleBinding/clgo-reconciler',
        'Service/clgo-gateway',
        'Service/clgo-reconciler',
        'ServiceAccount/clgo-reconciler',
      ].sort(),
    );
  });

  it('every object has apiVersion, kind, metadata.name, the namespace when namespaced, and the common labels', () => {
    for (const o of objs) {
      const id = `${o.kind}/${o.metadata.name}`;
      expect(o.apiVersion, id).toMatch(/^([a-z0-9.]+\/)?v\d+((alpha|beta)\d+)?$/);
      expect(o.kind, id).toMatch(/^[A-Z][A-Za-z]+$/);
      expect(o.metadata.name, id).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
      if (CLUSTER_SCOPED.has(o.kind)) expect(o.metadata.namespace, id).toBeUndefined();
      else expect(o.metadata.namespace, id).toBe(NAMESPACE);
      expect(o.metadata.labels, id).toMatchObject({ 'app.kubernetes.io/part-of': 'clusterlink-gitops', 'clusterlink.net/peer': peer });
    }
    expect(one(objs, 'Namespace', NAMESPACE).metadata.labels).toMatchObject({ 'pod-security.kubernetes.io/enforce': 'restricted' });
  });

  it('Deployments, Services, NetworkPolicies, PodDisruptionBudgets and ConfigMaps have the expected shape', () => {
    for (const o of objs) {
      const schema = { Deployment: deployment, Service: service, NetworkPolicy: networkPolicy, PodDisruptionBudget: pdb, ConfigMap: configMap, Role: role, ClusterRole: role, RoleBinding: binding, ClusterRoleBinding: binding }[o.kind];
      if (!schema) continue;
      const r = schema.safeParse(o);
      expect(r.success ? null : r.error.issues, `${o.kind}/${o.metadata.name}`).toBeNull();
    }
  });

  it('Deployment selectors match their pod labels; ports and probes are consistent', () => {
    for (const d of deployments) {
      const id = d.metadata.name;
      expect(Object.keys(d.spec.selector.matchLabels).length, id).toBeGreaterThan(0);
      expect(selects(d.spec.selector.matchLabels, d.spec.template.metadata.labels), `${id}: selector vs template labels`).toBe(true);
      // No other Deployment's pods are selected (a shared selector would fight over ReplicaSets).
      expect(podsOf(d.spec.selector.matchLabels).map((x) => x.metadata.name), id).toEqual([id]);
      const containers = d.spec.template.spec.containers;
      expect(new Set(containers.map((c) => c.name)).size, id).toBe(containers.length);
      for (const c of containers) {
        const names = (c.ports ?? []).map((p) => p.name);
        expect(new Set(names).size, `${id}/${c.name} port names`).toBe(names.length);
        for (const p of [c.readinessProbe?.httpGet?.port, c.readinessProbe?.tcpSocket?.port, c.livenessProbe?.httpGet?.port, c.livenessProbe?.tcpSocket?.port]) {
          if (typeof p === 'string') expect(names, `${id}/${c.name} probe port ${p}`).toContain(p);
          if (typeof p === 'number') expect((c.ports ?? []).map((x) => x.containerPort)).toContain(p);
        }
        expect(c.readinessProbe, `${id}/${c.name} readiness`).toBeDefined();
        expect(c.livenessProbe, `${id}/${c.name} liveness`).toBeDefined();
      }
    }
  });

  it('Services select a Deployment’s pods and target a declared container port', () => {
    for (const s of of(objs, 'Service').map((o) => service.parse(o))) {
      const pods = podsOf(s.spec.selector);
      expect(pods.length, `Service ${s.metadata.name} selects no pods`).toBe(1);
      const ports = pods[0]!.spec.template.spec.containers.flatMap((c) => c.ports ?? []);
      for (const p of s.spec.ports) {
        const target = ports.find((cp) => (typeof p.targetPort === 'string' ? cp.name === p.targetPort : cp.containerPort === p.targetPort));
        expect(target, `Service ${s.metadata.name} port ${p.name} → ${p.targetPort}`).toBeDefined();
      }
    }
    const gw = service.parse(one(objs, 'Service', 'clgo-gateway'));
    expect(gw.spec.type).toBe('LoadBalancer');
    expect(gw.spec.ports).toHaveLength(1);
    const gwTarget = tunnel.spec.template.spec.containers.flatMap((c) => c.ports ?? []).find((p) => p.name === gw.spec.ports[0]!.targetPort);
    expect([gw.spec.ports[0]!.port, gwTarget?.containerPort]).toEqual([443, 8443]);
  });

  it('NetworkPolicies: gateway 8443 from anywhere, xDS 18000 only from tunnel pods, admin 9090 from the namespace', () => {
    const tunnelPods = tunnel.spec.template.metadata.labels;
    const reconcilerPods = reconciler.spec.template.metadata.labels;
    const tp = networkPolicy.parse(one(objs, 'NetworkPolicy', 'clgo-tunnel')).spec;
    expect(selects(tp.podSelector.matchLabels ?? {}, tunnelPods)).toBe(true);
    expect(tp.ingress.some((r) => r.from === undefined && r.ports?.some((p) => p.port === 8443))).toBe(true);
    const rp = networkPolicy.parse(one(objs, 'NetworkPolicy', 'clgo-reconciler')).spec;
    expect(selects(rp.podSelector.matchLabels ?? {}, reconcilerPods)).toBe(true);
    expect(selects(rp.podSelector.matchLabels ?? {}, tunnelPods)).toBe(false);
    const rulesFor = (port: number) => rp.ingress.filter((r) => r.ports === undefined || r.ports.some((p) => p.port === port));
    // 18000: one rule, only pods that carry the tunnel's labels, in this namespace.
    expect(rulesFor(18000)).toHaveLength(1);
    const xdsFrom = rulesFor(18000)[0]!.from ?? [];
    expect(xdsFrom.length).toBeGreaterThan(0);
    for (const f of xdsFrom) {
      expect(f.namespaceSelector).toBeUndefined();
      expect(Object.keys(f.podSelector?.matchLabels ?? {}).length).toBeGreaterThan(0);
      expect(selects(f.podSelector!.matchLabels!, tunnelPods)).toBe(true);
    }
    expect(rulesFor(9090)).toHaveLength(1);
    expect(rulesFor(9090)[0]!.from).toEqual([{ podSelector: {} }]);
    for (const r of rp.ingress) expect(r.from, 'no reconciler port is open to everyone').toBeDefined();
  });

  it('the PodDisruptionBudget keeps one tunnel pod', () => {
    const p = pdb.parse(one(objs, 'PodDisruptionBudget', 'clgo-tunnel'));
    expect(p.spec.minAvailable).toBe(1);
    expect(podsOf(p.spec.selector.matchLabels).map((d) => d.metadata.name)).toEqual(['clgo-tunnel']);
    expect(tunnel.spec.replicas).toBeGreaterThan(p.spec.minAvailable);
  });

  it('RBAC is least privilege: no wildcards, no Secrets, cluster scope only for services/endpointslices/pods/namespaces/events', () => {
    const allowed: Record<string, { scope: 'cluster' | 'namespace'; verbs: string[] }> = {
      services: { scope: 'cluster', verbs: ['list', 'create', 'patch', 'delete'] },
      endpointslices: { scope: 'cluster', verbs: ['list', 'create', 'patch', 'delete'] },
      pods: { scope: 'cluster', verbs: ['list', 'watch'] },
      namespaces: { scope: 'cluster', verbs: ['list'] },
      events: { scope: 'cluster', verbs: ['create'] },
      leases: { scope: 'namespace', verbs: ['get', 'create', 'update'] },
      configmaps: { scope: 'namespace', verbs: ['get', 'create', 'patch'] },
    };
    const granted = new Map<string, Set<string>>();
    for (const o of [...of(objs, 'ClusterRole'), ...of(objs, 'Role')]) {
      for (const r of role.parse(o).rules) {
        for (const v of [...r.apiGroups, ...r.resources, ...r.verbs]) expect(v, `${o.kind}/${o.metadata.name}`).not.toContain('*');
        for (const res of r.resources) {
          expect(res, 'no Secret access (the key reaches the pod as a volume)').not.toMatch(/^secrets/);
          const a = allowed[res];
          expect(a, `${o.kind} grants ${res}`).toBeDefined();
          expect(o.kind, `${res} scope`).toBe(a!.scope === 'cluster' ? 'ClusterRole' : 'Role');
          for (const v of r.verbs) expect(a!.verbs, `${o.kind} ${res} ${v}`).toContain(v);
          const g = granted.get(res) ?? new Set<string>();
          r.verbs.forEach((v) => g.add(v));
          granted.set(res, g);
        }
      }
    }
    for (const [res, a] of Object.entries(allowed)) expect([...(granted.get(res) ?? [])].sort(), res).toEqual([...a.verbs].sort());
    for (const o of [...of(objs, 'RoleBinding'), ...of(objs, 'ClusterRoleBinding')]) {
      const b = binding.parse(o);
      expect(b.roleRef.kind).toBe(o.kind === 'RoleBinding' ? 'Role' : 'ClusterRole');
      one(objs, b.roleRef.kind, b.roleRef.name);
      expect(b.subjects).toEqual([{ kind: 'ServiceAccount', name: 'clgo-reconciler', namespace: NAMESPACE }]);
    }
    one(objs, 'ServiceAccount', reconciler.spec.template.spec.serviceAccountName!);
    expect(tunnel.spec.template.spec.automountServiceAccountToken).toBe(false);
  });

  it('containers run non-root, read-only, without capabilities, with RuntimeDefault seccomp and resources', () => {
    for (const d of deployments) {
      const pod = d.spec.template.spec;
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      for (const c of pod.containers) {
        const id = `${d.metadata.name}/${c.name}`;
        expect(c.securityContext.readOnlyRootFilesystem, id).toBe(true);
        expect(c.securityContext.runAsNonRoot, id).toBe(true);
        expect(c.securityContext.allowPrivilegeEscalation, id).toBe(false);
        expect(c.securityContext.capabilities.drop, id).toEqual(['ALL']);
        expect(c.securityContext.seccompProfile.type, id).toBe('RuntimeDefault');
        expect(c.resources.limits.memory, id).toBeDefined();
      }
    }
  });

  it('env references resolve: $(VAR) in args is defined, ConfigMap keys exist, the only Secret is the peer key', () => {
    const peerConfig = generated(objs, 'clgo-peer');
    expect(peerConfig.data).toEqual({ PEER_NAME: peer, FABRIC_GIT_URL: expect.stringMatching(/^https:\/\//) });
    expect(PEERS).toContain(peerConfig.data.PEER_NAME);
    for (const d of deployments) {
      const pod = d.spec.template.spec;
      for (const c of pod.containers) {
        const defined = new Set((c.env ?? []).map((e) => e.name));
        for (const a of [...(c.command ?? []), ...(c.args ?? [])]) for (const m of a.matchAll(/\$\(([A-Z_][A-Z0-9_]*)\)/g)) expect(defined, `${d.metadata.name}/${c.name} uses $(${m[1]})`).toContain(m[1]);
        for (const e of c.env ?? []) {
          const ref = e.valueFrom && 'configMapKeyRef' in e.valueFrom ? e.valueFrom.configMapKeyRef : undefined;
          if (!ref) continue;
          const cm = configMap.parse(one(objs, 'ConfigMap', ref.name));
          expect(Object.keys(cm.data), `${d.metadata.name}/${c.name} ${e.name}`).toContain(ref.key);
        }
        for (const m of c.volumeMounts ?? []) expect((pod.volumes ?? []).map((v) => v.name), `${d.metadata.name}/${c.name} mount ${m.name}`).toContain(m.name);
      }
      for (const v of pod.volumes ?? []) {
        if (v.configMap) one(objs, 'ConfigMap', v.configMap.name);
        // The peer key Secret, mounted by the reconciler and by the tunnel (which authenticates to it and serves the gateway with it).
        if (v.secret) expect(`${d.metadata.name}:${v.secret.secretName}`).toMatch(/^clgo-(reconciler|tunnel):clgo-peer-key$/);
        expect(pod.containers.some((c) => (c.volumeMounts ?? []).some((m) => m.name === v.name)), `${d.metadata.name}: volume ${v.name} unused`).toBe(true);
      }
    }
  });

  it('reconciler: 2 replicas, image, `clgo run` arguments, peer key mounted read-only with mode 0400', () => {
    expect(reconciler.spec.replicas).toBe(2);
    const [c, ...more] = reconciler.spec.template.spec.containers;
    expect(more).toEqual([]);
    expect(c!.image).toBe('ghcr.io/clusterlink-gitops/clgo:0.1.0');
    expect(c!.args!.slice(0, 13)).toEqual(['run', '--git', '$(FABRIC_GIT_URL)', '--peer', '$(PEER_NAME)', '--key', '/var/run/clgo/peer/tls.key', '--cert', '/var/run/clgo/peer/tls.crt', '--admin', '0.0.0.0:9090', '--cache', '/var/cache/clgo']);
    expect(c!.ports?.map((p) => [p.name, p.containerPort])).toEqual([['xds', 18000], ['authz', 18001], ['admin', 9090]]);
    expect(c!.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'admin' });
    expect(c!.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    const keyVolume = reconciler.spec.template.spec.volumes?.find((v) => v.secret);
    expect(keyVolume?.secret).toEqual({ secretName: 'clgo-peer-key', defaultMode: 0o400 });
    const mount = c!.volumeMounts?.find((m) => m.name === keyVolume!.name);
    expect(mount).toEqual({ name: keyVolume!.name, mountPath: '/var/run/clgo/peer', readOnly: true });
    // Every other path the reconciler writes is a volume, since the root filesystem is read-only.
    const cacheMount = c!.volumeMounts?.find((m) => m.mountPath === '/var/cache/clgo');
    expect(reconciler.spec.template.spec.volumes?.find((v) => v.name === cacheMount?.name)?.emptyDir).toBeDefined();
  });

  it('reconciler arguments are options of `clgo run` (reconciler/cli/commands/run.ts)', () => {
    const program = new Command();
    registerRun(program, {} as CliContext);
    const run = program.commands.find((c) => c.name() === 'run')!;
    const longs = new Set(run.options.map((o) => o.long));
    const args = reconciler.spec.template.spec.containers[0]!.args!;
    for (const a of args.slice(1).filter((x) => x.startsWith('--'))) expect(longs, a).toContain(a);
    for (const o of run.options.filter((x) => x.mandatory)) expect(args, `required ${o.long}`).toContain(o.long);
  });

  it('reconciler: cluster mode serves xDS and ext_authz on the ports the Service and NetworkPolicy open', () => {
    const args = reconciler.spec.template.spec.containers[0]!.args!;
    expect(args).not.toContain('--local');
    const after = (flag: string): string | undefined => args[args.indexOf(flag) + 1];
    expect(after('--xds')).toBe('0.0.0.0:18000');
    expect(after('--authz')).toBe('0.0.0.0:18001');
    expect(after('--authz-advertise')).toBe(`clgo-reconciler.${NAMESPACE}.svc:18001`);
    expect(args).toContain('--kube');
    const svc = service.parse(one(objs, 'Service', 'clgo-reconciler'));
    expect(svc.spec.ports.map((p) => p.port)).toEqual(expect.arrayContaining([18000, 18001]));
  });

  it('tunnel: Envoy with the generated bootstrap, or the Node data plane (components/node-dataplane)', () => {
    const containers = tunnel.spec.template.spec.containers;
    expect(containers).toHaveLength(1);
    const c: Container = containers[0]!;
    const xdsService = service.parse(one(objs, 'Service', 'clgo-reconciler'));
    const xdsPort = xdsService.spec.ports.find((p) => p.name === 'xds')!.port;
    const xdsHost = `${xdsService.metadata.name}.${NAMESPACE}.svc`;
    expect(c.ports?.find((p) => p.name === 'gateway')?.containerPort).toBe(8443);
    const usesNode = readFileSync(join(DEPLOY, 'overlays', peer, 'kustomization.yaml'), 'utf8').includes('components/node-dataplane');
    if (usesNode) {
      expect(c.name).toBe('dataplane');
      expect(imageName(c.image)).toBe('ghcr.io/clusterlink-gitops/clgo');
      expect(c.args).toContain(`${xdsHost}:${xdsPort}`);
      expect(tunnel.spec.template.spec.volumes?.map((v) => v.name)).not.toContain('envoy-bootstrap');
      return;
    }
    expect(c.name).toBe('envoy');
    // One pin for Envoy: deploy/envoy/VERSION (the tests' envoy binary and .ci/run read it too).
    expect(c.image).toBe(`envoyproxy/envoy:v${readFileSync(join(DEPLOY, 'envoy', 'VERSION'), 'utf8').trim()}`);
    const args = c.args ?? [];
    const flag = (f: string): string | undefined => args[args.indexOf(f) + 1];
    expect(flag('--service-node')).toBe('$(PEER_NAME)/$(POD_NAME)');
    expect(flag('--service-cluster')).toBe('$(PEER_NAME)');
    // --config-path names the bootstrap key of the mounted generated ConfigMap.
    const mount = c.volumeMounts?.find((m) => m.name === 'envoy-bootstrap');
    const cmName = tunnel.spec.template.spec.volumes?.find((v) => v.name === 'envoy-bootstrap')?.configMap?.name;
    const cm = generated(objs, 'clgo-envoy-bootstrap');
    expect(cmName).toBe(cm.metadata.name);
    expect(flag('--config-path')).toBe(`${mount?.mountPath}/bootstrap.yaml`);
    expect(Object.keys(cm.data).sort()).toEqual(['bootstrap.yaml', 'peer-identity-sds.yaml']);
    // The peer Secret is mounted where the bootstrap, its SDS file and the reconciler's identity secret expect it.
    const keyMount = c.volumeMounts?.find((m) => tunnel.spec.template.spec.volumes?.find((v) => v.name === m.name)?.secret?.secretName === 'clgo-peer-key');
    expect(keyMount).toMatchObject({ mountPath: '/var/run/clgo/peer', readOnly: true });
    expect(tunnel.spec.template.spec.securityContext?.fsGroup).toBe(101);
    expect(cm.data['peer-identity-sds.yaml']).toContain('/var/run/clgo/peer/tls.key');
    expect(flag('--config-yaml')).toContain('"exact":"$(PEER_NAME)"');

    const { source, decoded } = envoyBootstrap(cm.data['bootstrap.yaml']!);
    expect(source.node, 'node id/cluster come from --service-node/--service-cluster').toBeUndefined();
    expect(decoded.admin).toMatchObject({ address: { socket_address: { address: '127.0.0.1', port_value: 9901 } } });
    expect(decoded.dynamic_resources).toMatchObject({
      ads_config: { api_type: 'GRPC', transport_api_version: 'V3', grpc_services: [{ envoy_grpc: { cluster_name: 'xds_cluster' } }] },
      cds_config: { ads: {}, resource_api_version: 'V3' },
      lds_config: { ads: {}, resource_api_version: 'V3' },
    });
    const clusters = (decoded.static_resources as { clusters: Record<string, unknown>[] }).clusters;
    const xds = clusters.find((x) => x.name === 'xds_cluster')!;
    expect(xds.type).toBe('STRICT_DNS');
    expect(xds.load_assignment).toMatchObject({ endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: xdsHost, port_value: xdsPort } } } }] }] });
    // Mutual TLS to the reconciler: the peer identity by file-based SDS, the CA from the Secret, the peer name from --config-yaml.
    const ts = xds.transport_socket as { typed_config: { type_url: string; value: Uint8Array } };
    expect(decodeAny(ts.typed_config.type_url, ts.typed_config.value)).toMatchObject({
      common_tls_context: {
        alpn_protocols: ['h2'],
        tls_certificate_sds_secret_configs: [{ name: 'clgo_peer_identity', sds_config: { path_config_source: { path: `${mount?.mountPath}/peer-identity-sds.yaml` } } }],
        combined_validation_context: { default_validation_context: { trusted_ca: { filename: '/var/run/clgo/peer/ca.crt' } }, validation_context_sds_secret_config: { name: 'clgo_control_plane_name' } },
      },
    });
    const h2 = (xds.typed_extension_protocol_options as Record<string, { type_url: string; value: Uint8Array }>)['envoy.extensions.upstreams.http.v3.HttpProtocolOptions']!;
    expect(decodeAny(h2.type_url, h2.value)).toMatchObject({ explicit_http_config: { http2_protocol_options: {} } });
    // The only non-loopback listener is the health listener: GET /ready goes to the admin, nothing else does.
    const listeners = ((decoded.static_resources as { listeners?: Record<string, unknown>[] }).listeners ?? []);
    expect(listeners.map((l) => [l.name, (l.address as { socket_address: { port_value: number } }).socket_address.port_value])).toEqual([['health', 9902]]);
    expect(c.ports?.find((p) => p.name === 'health')?.containerPort).toBe(9902);
    const routes = JSON.stringify(source.static_resources);
    expect(routes.match(/"cluster":"envoy_admin"/g)).toHaveLength(1);
    expect(routes).toContain('"path":"/ready"');
  });
});

// ---- the bootstrap check itself ------------------------------------------------------------

describe('Envoy bootstrap check', () => {
  const text = readFileSync(join(DEPLOY, 'envoy', 'bootstrap.yaml'), 'utf8');

  it('accepts deploy/envoy/bootstrap.yaml', () => {
    expect(() => envoyBootstrap(text)).not.toThrow();
  });

  it('rejects unknown fields, unknown enum values and wrong types', () => {
    expect(() => envoyBootstrap(text.replace('transport_api_version: V3', 'transport_api_version: V4'))).toThrow(/transport_api_version/);
    expect(() => envoyBootstrap(text.replace('lb_policy: ROUND_ROBIN', 'lb_polcy: ROUND_ROBIN'))).toThrow(/lb_polcy/);
    expect(() => envoyBootstrap(text.replace('port_value: 18000', 'port_value: eighteen'))).toThrow();
    expect(() => envoyBootstrap(text.replace('explicit_http_config:', 'explicit_http_confg:'))).toThrow(/explicit_http_confg/);
  });

  it('field names are snake_case: the project root keeps proto field names, camelCase keys would be dropped', () => {
    const { value } = encodeAny(BOOTSTRAP_TYPE, { admin: { address: { socketAddress: { address: '127.0.0.1' } } } });
    expect(decodeAny(BOOTSTRAP_TYPE, value)).toEqual({ admin: { address: {} } });
  });
});

// ---- examples and README -------------------------------------------------------------------

describe('deploy/examples', () => {
  const docs = (file: string): Record<string, unknown>[] =>
    parseAllDocuments(readFileSync(join(DEPLOY, 'examples', file), 'utf8')).map((d) => {
      expect(d.errors).toEqual([]);
      return d.toJS() as Record<string, unknown>;
    });
  const overlayExists = (path: string): boolean => existsSync(join(ROOT, path, 'kustomization.yaml'));

  it('Flux: a GitRepository and a Kustomization of an existing overlay', () => {
    const [repo, ks, ...rest] = docs('flux/clusterlink.yaml');
    expect(rest).toEqual([]);
    const parsedRepo = z
      .looseObject({
        apiVersion: z.literal('source.toolkit.fluxcd.io/v1'),
        kind: z.literal('GitRepository'),
        metadata: z.looseObject({ name: z.string(), namespace: z.string() }),
        spec: z.looseObject({ interval: z.string(), url: z.url(), ref: z.looseObject({}) }),
      })
      .parse(repo);
    const parsedKs = z
      .looseObject({
        apiVersion: z.literal('kustomize.toolkit.fluxcd.io/v1'),
        kind: z.literal('Kustomization'),
        metadata: z.looseObject({ name: z.string(), namespace: z.string() }),
        spec: z.looseObject({ interval: z.string(), path: z.string(), prune: z.boolean(), sourceRef: z.strictObject({ kind: z.literal('GitRepository'), name: z.string() }) }),
      })
      .parse(ks);
    expect(parsedKs.spec.sourceRef.name).toBe(parsedRepo.metadata.name);
    expect(parsedKs.metadata.namespace).toBe(parsedRepo.metadata.namespace);
    expect(overlayExists(parsedKs.spec.path), parsedKs.spec.path).toBe(true);
  });

  it('Argo CD: an Application of an existing overlay into clusterlink-system', () => {
    const [app, ...rest] = docs('argocd/clusterlink-east.yaml');
    expect(rest).toEqual([]);
    const parsed = z
      .looseObject({
        apiVersion: z.literal('argoproj.io/v1alpha1'),
        kind: z.literal('Application'),
        metadata: z.looseObject({ name: z.string(), namespace: z.string() }),
        spec: z.looseObject({
          project: z.string(),
          source: z.strictObject({ repoURL: z.url(), targetRevision: z.string(), path: z.string() }),
          destination: z.strictObject({ server: z.url(), namespace: z.string() }),
        }),
      })
      .parse(app);
    expect(overlayExists(parsed.spec.source.path), parsed.spec.source.path).toBe(true);
    expect(parsed.spec.destination.namespace).toBe(NAMESPACE);
  });

  it('README documents applying an overlay and creating the key Secret outside Git', () => {
    const readme = readFileSync(join(DEPLOY, 'README.md'), 'utf8');
    expect(readme).toContain('kubectl apply -k deploy/overlays/east');
    expect(readme).toContain('kubectl -n clusterlink-system create secret generic clgo-peer-key --type=kubernetes.io/tls');
    expect(readme).toContain('--from-file=tls.crt=peer.pem --from-file=tls.key=peer.key --from-file=ca.crt=ca.crt');
  });
});

// ---- the renderer --------------------------------------------------------------------------

describe('render-kustomize', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'clgo-kustomize-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const write = (rel: string, text: string): void => {
    mkdirSync(join(tmp, rel, '..'), { recursive: true });
    writeFileSync(join(tmp, rel), text);
  };

  it('strategic merge: merges lists by key, deletes with $patch: delete, replaces with $patch: replace, null removes', () => {
    const base = { spec: { containers: [{ name: 'a', image: 'x', env: [{ name: 'E', value: '1' }] }, { name: 'b', image: 'y' }], volumes: [{ name: 'v' }], extra: 1 } };
    const merged = strategicMerge(base, {
      spec: {
        containers: [{ name: 'a', env: [{ name: 'F', value: '2' }] }, { name: 'b', $patch: 'delete' }, { name: 'c', image: 'z' }],
        volumes: [{ $patch: 'replace' }, { name: 'w' }],
        extra: null,
      },
    });
    expect(merged).toEqual({ spec: { containers: [{ name: 'a', image: 'x', env: [{ name: 'E', value: '1' }, { name: 'F', value: '2' }] }, { name: 'c', image: 'z' }], volumes: [{ name: 'w' }] } });
    expect(base.spec.containers).toHaveLength(2);
    expect(() => strategicMerge(base, { spec: { containers: [{ name: 'nope', $patch: 'delete' }] } })).toThrow(/not there/);
  });

  it('generates hashed ConfigMaps and rewrites references to them; the hash follows the content', () => {
    write('a/kustomization.yaml', 'resources: [d.yaml]\nconfigMapGenerator:\n  - name: cfg\n    literals: [K=v]\n');
    write('a/d.yaml', 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: i, envFrom: [{configMapRef: {name: cfg}}]}]\n      volumes: [{name: v, configMap: {name: cfg}}]\n');
    const objs = renderKustomization(join(tmp, 'a'));
    const name = `cfg-${configMapHash('cfg', { K: 'v' })}`;
    expect(objs.map((o) => o.metadata.name)).toEqual(['d', name]);
    expect(JSON.stringify(objs[0]).match(new RegExp(name, 'g'))).toHaveLength(2);
    expect(configMapHash('cfg', { K: 'w' })).not.toBe(configMapHash('cfg', { K: 'v' }));
    expect(configMapHash('cfg', { K: 'v' })).toMatch(/^[a-z0-9]{10}$/);
  });

  it('refuses features it does not implement and generator files outside the kustomization', () => {
    write('b/kustomization.yaml', 'namePrefix: x-\n');
    expect(() => renderKustomization(join(tmp, 'b'))).toThrow(/unsupported field "namePrefix"/);
    write('c/kustomization.yaml', 'configMapGenerator:\n  - name: x\n    files: [../outside.yaml]\n');
    write('outside.yaml', 'a: 1\n');
    expect(() => renderKustomization(join(tmp, 'c'))).toThrow(/outside/);
    write('d/kustomization.yaml', 'labels:\n  - pairs: {a: b}\n    includeSelectors: true\n');
    expect(() => renderKustomization(join(tmp, 'd'))).toThrow(/includeSelectors/);
  });
});
