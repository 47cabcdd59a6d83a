// Pure planner: desired imports × Services that exist → what to apply, prune and report.
// No I/O, so the whole ownership logic is unit-testable and the executor stays a thin loop.
// Import Services are selector-less: a selector only matches Pods in the Service's own namespace,
// and the data plane runs in the reconciler's namespace, so their endpoints are EndpointSlices
// the reconciler writes itself (endpointslices.ts).
import { createHash } from 'node:crypto';
import type { SliceImport } from '../slice/types.ts';

export const FIELD_MANAGER = 'clusterlink-gitops';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const LABEL_PEER = 'clusterlink.net/peer';
export const ANNOTATION_IMPORT = 'clusterlink.net/import';
export const ANNOTATION_SOURCE = 'clusterlink.net/source';
export const ANNOTATION_SPEC_HASH = 'clusterlink.net/spec-hash';

/** The parts of an existing Service the planner needs (the executor parses them from the API with zod). */
export interface ServiceObject {
  namespace: string;
  name: string;
  /** Set when read from the API (owner reference of the Service's EndpointSlices). */
  uid?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export interface ServiceManifest {
  apiVersion: 'v1';
  kind: 'Service';
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
  };
  spec: {
    type: 'ClusterIP';
    ports: { name: 'tcp'; protocol: 'TCP'; port: number; targetPort: number }[];
  };
}

export interface ObjectRef {
  namespace: string;
  name: string;
}

export interface ServiceConflict extends ObjectRef {
  reason: string;
}

export interface PlanOptions {
  peer: string;
  /** Recorded in the status ConfigMap, deliberately NOT on Services: it would change every Service every revision. */
  revision: string;
  fieldManager: typeof FIELD_MANAGER;
  createNamespaces: boolean;
  /** Namespaces known to exist; when absent the planner assumes every namespace exists. */
  knownNamespaces?: Set<string>;
}

export interface ServicePlan {
  apply: ServiceManifest[];
  prune: ObjectRef[];
  conflicts: ServiceConflict[];
  /** Namespaces named by imports that do not exist (created first when createNamespaces, else those imports are skipped). */
  missingNamespaces: string[];
  /** Imports whose Service is already as desired (same spec hash): no write needed. */
  unchanged: ObjectRef[];
}

const key = (namespace: string, name: string) => `${namespace}/${name}`;

function byRef(a: ObjectRef, b: ObjectRef): number {
  return a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Stable JSON (sorted keys) so the hash depends on content only, never on insertion order. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function isOwnedBy(svc: Pick<ServiceObject, 'labels'>, peer: string): boolean {
  return svc.labels[LABEL_MANAGED_BY] === FIELD_MANAGER && svc.labels[LABEL_PEER] === peer;
}

/** The Service we want for one import, with its spec-hash annotation computed over everything else. */
export function serviceManifest(imp: SliceImport, opts: Pick<PlanOptions, 'peer'>): ServiceManifest {
  // Import labels first: the ownership labels must win, or an import could disown its own Service.
  const labels: Record<string, string> = { ...imp.labels, [LABEL_MANAGED_BY]: FIELD_MANAGER, [LABEL_PEER]: opts.peer };
  const annotations: Record<string, string> = {
    [ANNOTATION_IMPORT]: key(imp.namespace, imp.name),
    [ANNOTATION_SOURCE]: `${imp.source.file}:${imp.source.line}`,
  };
  const manifest: ServiceManifest = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: imp.name, namespace: imp.namespace, labels, annotations },
    spec: {
      type: 'ClusterIP',
      ports: [{ name: 'tcp', protocol: 'TCP', port: imp.port, targetPort: imp.listenPort }],
    },
  };
  annotations[ANNOTATION_SPEC_HASH] = specHash(manifest);
  return manifest;
}

/** Hash of the manifest without its own hash annotation (32 hex chars: collisions are not a concern here). */
export function specHash(manifest: ServiceManifest): string {
  const annotations = { ...manifest.metadata.annotations };
  delete annotations[ANNOTATION_SPEC_HASH];
  const basis = { ...manifest, metadata: { ...manifest.metadata, annotations } };
  return createHash('sha256').update(canonical(basis)).digest('hex').slice(0, 32);
}

export function planServices(desired: SliceImport[], existing: ServiceObject[], opts: PlanOptions): ServicePlan {
  const existingByKey = new Map<string, ServiceObject>();
  for (const svc of existing) existingByKey.set(key(svc.namespace, svc.name), svc);

  const apply: ServiceManifest[] = [];
  const conflicts: ServiceConflict[] = [];
  const unchanged: ObjectRef[] = [];
  const missing = new Set<string>();
  const wanted = new Set<string>();

  for (const imp of desired) {
    const k = key(imp.namespace, imp.name);
    if (wanted.has(k)) {
      // The slice should never hold two imports with one name; if it does, neither silently wins twice.
      conflicts.push({ namespace: imp.namespace, name: imp.name, reason: `duplicate import ${k} in the slice (${imp.source.file}:${imp.source.line})` });
      continue;
    }
    wanted.add(k);
    const current = existingByKey.get(k);
    if (current && !isOwnedBy(current, opts.peer)) {
      const manager = current.labels[LABEL_MANAGED_BY];
      const owner = manager === FIELD_MANAGER ? `clusterlink-gitops for peer ${current.labels[LABEL_PEER] ?? '(none)'}` : manager ? manager : 'someone else';
      conflicts.push({ namespace: imp.namespace, name: imp.name, reason: `Service ${k} already exists and is managed by ${owner}; not overwritten` });
      continue;
    }
    if (opts.knownNamespaces && !opts.knownNamespaces.has(imp.namespace)) {
      missing.add(imp.namespace);
      if (!opts.createNamespaces) continue;
    }
    const manifest = serviceManifest(imp, opts);
    if (current && current.annotations[ANNOTATION_SPEC_HASH] === manifest.metadata.annotations[ANNOTATION_SPEC_HASH]) {
      unchanged.push({ namespace: imp.namespace, name: imp.name });
      continue;
    }
    apply.push(manifest);
  }

  const prune: ObjectRef[] = [];
  for (const svc of existing) {
    if (isOwnedBy(svc, opts.peer) && !wanted.has(key(svc.namespace, svc.name))) prune.push({ namespace: svc.namespace, name: svc.name });
  }

  apply.sort((a, b) => byRef(a.metadata, b.metadata));
  prune.sort(byRef);
  conflicts.sort(byRef);
  unchanged.sort(byRef);
  return { apply, prune, conflicts, missingNamespaces: [...missing].sort(), unchanged };
}
