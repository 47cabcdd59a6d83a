// Builders for slices and imports, a bounded wait, and the real API server set up as the
// reconciler sees it in a cluster; shared by the kube tests and the bench.
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AuthorizationV1Api, KubernetesObjectApi, RbacAuthorizationV1Api, type KubeConfig, type KubernetesObject, type V1PolicyRule } from '@kubernetes/client-node';
import type { Slice, SliceImport } from '../../reconciler/slice/types.ts';
import { startKubeApiServer, type KubeApiServer } from '../fixtures/kube-apiserver.ts';

export function imp(namespace: string, name: string, port = 8080, extra: Partial<SliceImport> = {}): SliceImport {
  return {
    name,
    namespace,
    labels: {},
    port,
    targetPort: null,
    listenPort: extra.targetPort ?? port,
    lbScheme: 'round-robin',
    sessionAffinity: 'None',
    sources: [],
    source: { file: `peers/east/imports/${namespace}-${name}.yaml`, line: 1, column: 1 },
    ...extra,
  };
}

export function slice(imports: SliceImport[], fabric = 'test'): Slice {
  return {
    fabric,
    self: { name: 'east', labels: {}, gateways: [], certificatePem: null },
    caCertificates: [],
    revoked: { serials: [], fingerprints: [] },
    members: [],
    exports: [],
    imports,
    policies: [],
  };
}

/** Polls until check() is truthy; throws after timeoutMs (every wait in these tests is bounded). */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 5_000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

// ---- The real API server (test/fixtures/kube-apiserver.ts) as the kube tests use it ----

export const SYSTEM_NS = 'clusterlink-system';
/** The reconciler's identity in these tests: the ServiceAccount of deploy/base/rbac.yaml. */
export const RECONCILER_USER = `system:serviceaccount:${SYSTEM_NS}:clgo-reconciler`;
const RBAC_YAML = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'deploy', 'base', 'rbac.yaml');

export interface KubeEnv {
  api: KubeApiServer;
  admin: KubeConfig;
  /** Authenticates as the reconciler's ServiceAccount (a TokenRequest token), bound by deploy/base/rbac.yaml only. */
  reconciler: KubeConfig;
  /** Reads one object as admin; undefined when it does not exist. */
  get<T = Record<string, unknown>>(apiVersion: string, kind: string, namespace: string | undefined, name: string): Promise<(T & KubernetesObject) | undefined>;
  /** Lists objects as admin (optionally in one namespace, by label selector), sorted by namespace/name. */
  list<T = Record<string, unknown>>(apiVersion: string, kind: string, namespace?: string, labelSelector?: string): Promise<(T & KubernetesObject)[]>;
  /** Another field manager creating an object (an Update, e.g. `kubectl create`). */
  createAs(manager: string, obj: KubernetesObject): Promise<KubernetesObject>;
  stop(): Promise<void>;
}

/**
 * Starts a real API server for one test file: the reconciler's namespace with deploy/base/rbac.yaml
 * applied, the given application namespaces, and a kubeconfig for the reconciler's ServiceAccount.
 */
export async function startKubeEnv(namespaces: string[] = []): Promise<KubeEnv> {
  const api = await startKubeApiServer();
  try {
    for (const ns of [SYSTEM_NS, ...namespaces]) await api.ensureNamespace(ns);
    await api.applyYaml(await readFile(RBAC_YAML, 'utf8'), SYSTEM_NS);
    const { kubeConfig: reconciler } = await api.serviceAccountKubeConfig(SYSTEM_NS, 'clgo-reconciler');
    const admin = api.adminKubeConfig();
    const objects = KubernetesObjectApi.makeApiClient(admin);
    return {
      api,
      admin,
      reconciler,
      async get<T>(apiVersion: string, kind: string, namespace: string | undefined, name: string) {
        try {
          return (await objects.read<KubernetesObject>({ apiVersion, kind, metadata: { name, ...(namespace ? { namespace } : {}) } })) as T & KubernetesObject;
        } catch (err) {
          if ((err as { code?: number }).code === 404) return undefined;
          throw err;
        }
      },
      async list<T>(apiVersion: string, kind: string, namespace?: string, labelSelector?: string) {
        const l = await objects.list(apiVersion, kind, namespace, undefined, undefined, undefined, undefined, labelSelector);
        const key = (o: KubernetesObject) => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
        return (l.items as (T & KubernetesObject)[]).sort((a, b) => key(a).localeCompare(key(b)));
      },
      createAs: (manager, obj) => objects.create(obj, undefined, undefined, manager),
      stop: () => api.stop(),
    };
  } catch (err) {
    await api.stop();
    throw err;
  }
}

/** `namespace/name` of each object. */
export const keys = (objs: KubernetesObject[]) => objs.map((o) => `${o.metadata?.namespace}/${o.metadata?.name}`);

/** Runs fn with `verb` on `resource` taken out of the ClusterRole clgo-reconciler (deploy/base/rbac.yaml), then puts it back. */
export async function withoutVerb<T>(env: KubeEnv, resource: string, verb: string, fn: () => Promise<T>): Promise<T> {
  const rbac = env.admin.makeApiClient(RbacAuthorizationV1Api);
  const role = await rbac.readClusterRole({ name: 'clgo-reconciler' });
  const original = role.rules ?? [];
  const cut: V1PolicyRule[] = original.map((r) => (r.resources?.includes(resource) ? { ...r, verbs: r.verbs.filter((v) => v !== verb) } : r));
  if (JSON.stringify(cut) === JSON.stringify(original)) throw new Error(`the ClusterRole grants no ${verb} on ${resource}`);
  await rbac.replaceClusterRole({ name: 'clgo-reconciler', body: { ...role, rules: cut } });
  await untilAllowed(env, resource, verb, false);
  try {
    return await fn();
  } finally {
    const current = await rbac.readClusterRole({ name: 'clgo-reconciler' });
    await rbac.replaceClusterRole({ name: 'clgo-reconciler', body: { ...current, rules: original } });
    await untilAllowed(env, resource, verb, true);
  }
}

/** The authorizer follows RBAC objects asynchronously: ask it (SubjectAccessReview) until it agrees. */
async function untilAllowed(env: KubeEnv, resource: string, verb: string, allowed: boolean): Promise<void> {
  const authz = env.admin.makeApiClient(AuthorizationV1Api);
  const group = resource === 'endpointslices' ? 'discovery.k8s.io' : '';
  await waitFor(
    `${verb} ${resource} ${allowed ? 'allowed' : 'denied'}`,
    async () => {
      const r = await authz.createSubjectAccessReview({
        body: { spec: { user: RECONCILER_USER, groups: ['system:serviceaccounts', `system:serviceaccounts:${SYSTEM_NS}`, 'system:authenticated'], resourceAttributes: { verb, resource, group, namespace: 'default' } } },
      });
      return r.status?.allowed === allowed;
    },
    10_000,
    50,
  );
}

