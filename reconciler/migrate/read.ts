// Reads one cluster's ClusterLink installation through its Kubernetes API (one kubeconfig
// context): the Peers, Exports, Imports and (Privileged)AccessPolicies, which peer the cluster
// is, its peer labels and its ingress. Every response goes through the zod schemas of
// objects.ts; every request has a time-out; lists are paged and bounded.
import { AppsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, Observable, type ConfigurationOptions } from '@kubernetes/client-node';
import { X509Certificate } from 'node:crypto';
import { errorMessage, statusCode } from '../kube/api.ts';
import type { ClusterLinkKind, ClusterSnapshot } from './convert.ts';
import { clusterLinkObject, controlPlaneDeployment, instanceObject, objectList, peerLabelsFromArgs, peerSecret, type ClusterLinkObject, type InstanceObject } from './objects.ts';

export const CLUSTERLINK_GROUP = 'clusterlink.net';
export const CLUSTERLINK_VERSION = 'v1alpha1';
/** ClusterLink's names (cmd/cl-controlplane/app, pkg/bootstrap/platform). */
export const PEER_SECRET = 'cl-peer';
export const CONTROL_PLANE = 'cl-controlplane';

const PLURAL: Record<ClusterLinkKind | 'Peer' | 'Instance', string> = {
  Peer: 'peers',
  Export: 'exports',
  Import: 'imports',
  AccessPolicy: 'accesspolicies',
  PrivilegedAccessPolicy: 'privilegedaccesspolicies',
  Instance: 'instances',
};

export interface ReadClusterOptions {
  kubeConfig: KubeConfig;
  context: string;
  /** The peer name given on the command line for this context; otherwise read from the peer certificate. */
  peerName?: string;
  /** Where ClusterLink runs (its Peers, the cl-peer Secret, the cl-controlplane Deployment). */
  namespace: string;
  requestTimeoutMs?: number;
  /** Most objects of one kind read from one cluster. */
  maxObjectsPerKind?: number;
}

/** A cluster could not be read; the message names the context and what to do. */
export class ClusterReadError extends Error {
  override name = 'ClusterReadError';
}

/** The peer name a ClusterLink peer certificate carries: its first DNS SAN, as ClusterLink's control plane reads it. */
export function peerNameFromCertificate(pem: string): string {
  const cert = new X509Certificate(pem);
  const dns = (cert.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4));
  if (dns.length === 0) throw new Error('the certificate has no DNS name');
  return dns[0]!;
}

export async function readCluster(opts: ReadClusterOptions): Promise<ClusterSnapshot> {
  const { context, namespace } = opts;
  const base = opts.kubeConfig;
  if (!base.getContexts().some((c) => c.name === context)) {
    throw new ClusterReadError(`no context ${JSON.stringify(context)} in the kubeconfig (it has: ${base.getContexts().map((c) => c.name).join(', ') || 'none'})`);
  }
  // One KubeConfig per context, sharing the loaded clusters and users (paths already resolved).
  const kc = new KubeConfig();
  kc.loadFromOptions({ clusters: base.getClusters(), users: base.getUsers(), contexts: base.getContexts(), currentContext: context });
  const timeoutMs = opts.requestTimeoutMs ?? 15_000;
  const maxObjects = opts.maxObjectsPerKind ?? 20_000;
  // The typed calls take the generated client's observable-style middleware.
  const withTimeout: ConfigurationOptions = {
    middleware: [
      {
        pre: (req) => {
          req.setSignal(AbortSignal.timeout(timeoutMs));
          return new Observable(Promise.resolve(req));
        },
        post: (res) => new Observable(Promise.resolve(res)),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
  const custom = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const fail = (what: string, err: unknown, hint: string): ClusterReadError => new ClusterReadError(`context ${context}: ${what}: ${errorMessage(err)}${hint ? ` — ${hint}` : ''}`);

  const list = async (kind: ClusterLinkKind | 'Peer' | 'Instance', inNamespace: string | null): Promise<unknown[]> => {
    const items: unknown[] = [];
    let token: string | undefined;
    do {
      let page: unknown;
      const base = { group: CLUSTERLINK_GROUP, version: CLUSTERLINK_VERSION, plural: PLURAL[kind], limit: 500, _continue: token };
      try {
        page = inNamespace === null ? await custom.listClusterCustomObject(base, withTimeout) : await custom.listNamespacedCustomObject({ ...base, namespace: inNamespace }, withTimeout);
      } catch (err) {
        const code = statusCode(err);
        throw fail(
          `listing ${PLURAL[kind]}.${CLUSTERLINK_GROUP}${inNamespace ? ` in ${inNamespace}` : ''}`,
          err,
          code === 404 ? `ClusterLink's CRDs are not installed in this cluster: is it a ClusterLink peer?` : code === 403 ? `the kubeconfig user needs list on ${PLURAL[kind]}.${CLUSTERLINK_GROUP}` : '',
        );
      }
      const parsed = objectList.safeParse(page);
      if (!parsed.success) throw new ClusterReadError(`context ${context}: the API answered a list of ${PLURAL[kind]} that is not a list: ${parsed.error.issues[0]?.message ?? ''}`);
      items.push(...parsed.data.items);
      if (items.length > maxObjects) throw new ClusterReadError(`context ${context}: more than ${maxObjects} ${PLURAL[kind]}: refusing to migrate that many in one go`);
      token = parsed.data.metadata?.continue || undefined;
    } while (token);
    return items;
  };

  const parseAll = (kind: string, raw: unknown[]): ClusterLinkObject[] =>
    raw.map((item, i) => {
      const r = clusterLinkObject.safeParse(item);
      if (!r.success) {
        const issue = r.error.issues[0];
        throw new ClusterReadError(`context ${context}: ${kind} #${i + 1} from the API is malformed at ${issue?.path.join('.') ?? ''}: ${issue?.message ?? ''}`);
      }
      return r.data;
    });

  const objects = {} as Record<ClusterLinkKind, ClusterLinkObject[]>;
  for (const kind of ['Export', 'Import', 'AccessPolicy', 'PrivilegedAccessPolicy'] as const) objects[kind] = parseAll(kind, await list(kind, null));
  // ClusterLink's control plane reads Peer objects only in its own namespace.
  const peers = parseAll('Peer', await list('Peer', namespace));

  let peer: ClusterSnapshot['peer'];
  if (opts.peerName !== undefined) {
    peer = { name: opts.peerName, source: `--peer ${context}=${opts.peerName}` };
  } else {
    let raw: unknown;
    try {
      raw = await core.readNamespacedSecret({ name: PEER_SECRET, namespace }, withTimeout);
    } catch (err) {
      throw fail(`cannot tell which peer this cluster is (reading Secret ${namespace}/${PEER_SECRET}, which holds ClusterLink's peer certificate)`, err, `pass --peer ${context}=<peer-name>`);
    }
    const secret = peerSecret.safeParse(raw);
    const certB64 = secret.success ? secret.data.data?.['cert.pem'] : undefined;
    if (!certB64) throw new ClusterReadError(`context ${context}: Secret ${namespace}/${PEER_SECRET} has no cert.pem — pass --peer ${context}=<peer-name>`);
    try {
      peer = { name: peerNameFromCertificate(Buffer.from(certB64, 'base64').toString('utf8')), source: `the peer certificate in Secret ${namespace}/${PEER_SECRET}` };
    } catch (err) {
      throw new ClusterReadError(`context ${context}: Secret ${namespace}/${PEER_SECRET} cert.pem: ${(err as Error).message} — pass --peer ${context}=<peer-name>`);
    }
  }

  // Labels: the control plane's `--peer-label` arguments (the operator writes them from its Instance).
  let labels: ClusterSnapshot['labels'] = null;
  try {
    const dep = controlPlaneDeployment.safeParse(await apps.readNamespacedDeployment({ name: CONTROL_PLANE, namespace }, withTimeout));
    const container = dep.success ? dep.data.spec?.template?.spec?.containers?.find((c) => c.name === CONTROL_PLANE) : undefined;
    if (container) labels = { values: peerLabelsFromArgs(container.args ?? []), source: `the --peer-label arguments of Deployment ${namespace}/${CONTROL_PLANE}` };
  } catch (err) {
    if (statusCode(err) !== 404 && statusCode(err) !== 403) throw fail(`reading Deployment ${namespace}/${CONTROL_PLANE}`, err, '');
  }

  // The operator's Instance (if the operator deployed ClusterLink): labels when the Deployment was not readable, and the ingress address.
  let instance: InstanceObject | null = null;
  try {
    const found = (await list('Instance', null)).map((i) => instanceObject.safeParse(i)).filter((r) => r.success).map((r) => r.data);
    instance = found.find((i) => (i.spec?.namespace ?? 'clusterlink-system') === namespace) ?? null;
  } catch {
    // No Instance CRD (ClusterLink deployed without the operator) or no right to read it: nothing to learn there.
  }
  if (!labels && instance?.spec?.peerLabels) labels = { values: instance.spec.peerLabels, source: `Instance ${instance.metadata.namespace ?? ''}/${instance.metadata.name} spec.peerLabels` };
  const ing = instance?.status?.ingress;
  const ingress = ing?.ip && ing.port ? { host: ing.ip, port: ing.port, source: `Instance ${instance!.metadata.namespace ?? ''}/${instance!.metadata.name} status.ingress` } : null;

  return { context, peer, labels, ingress, peers, objects };
}
