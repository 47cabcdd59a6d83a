// EndpointSlices for the selector-less import Services: one per Service and address family, listing
// the ready data-plane pods (which run in the reconciler's namespace, out of reach of a Service
// selector in the import's namespace). Pure planner + a thin executor, as for Services: list what
// we own (one label-selected list), look for foreign slices only where a new name would land,
// server-side apply only what changed (spec hash), prune slices whose Service is gone.
import { createHash } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { DiscoveryV1Api, KubernetesObjectApi, PatchStrategy, type KubeConfig } from '@kubernetes/client-node';
import { MetadataListSchema, deleteAll, errorMessage, mapLimit, statusCode } from './api.ts';
import type { ServiceApplyError } from './apply.ts';
import type { DataplaneEndpoint } from './pods.ts';
import { ANNOTATION_SPEC_HASH, FIELD_MANAGER, LABEL_PEER, canonical, type ObjectRef, type ServiceConflict, type ServiceObject } from './services.ts';

export const LABEL_SERVICE_NAME = 'kubernetes.io/service-name';
/** The EndpointSlice controller only manages slices labelled with its own name here; ours are left to us. */
export const LABEL_SLICE_MANAGED_BY = 'endpointslice.kubernetes.io/managed-by';
/** The API server rejects a slice with more endpoints than this. */
export const MAX_ENDPOINTS_PER_SLICE = 1000;

export type AddressType = 'IPv4' | 'IPv6';

/** One import Service that should have slices: where, the port the data plane listens on, its uid. */
export interface EndpointSliceTarget extends ObjectRef {
  /** The import's listen port (SliceImport.listenPort). */
  port: number;
  /** For the owner reference (garbage collection with the Service); omitted when unknown. */
  uid?: string | undefined;
}

export interface EndpointSliceManifest {
  apiVersion: 'discovery.k8s.io/v1';
  kind: 'EndpointSlice';
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
    ownerReferences?: { apiVersion: 'v1'; kind: 'Service'; name: string; uid: string }[];
  };
  addressType: AddressType;
  endpoints: {
    addresses: string[];
    conditions: { ready: boolean; serving: boolean; terminating: boolean };
    targetRef: { kind: 'Pod'; namespace: string; name: string; uid?: string };
    nodeName?: string;
  }[];
  ports: { name: 'tcp'; port: number; protocol: 'TCP' }[];
}

export interface EndpointSlicePlan {
  apply: EndpointSliceManifest[];
  prune: ObjectRef[];
  unchanged: number;
  conflicts: ServiceConflict[];
}

export const sliceName = (service: string, family: AddressType) => `${service}-clgo-${family.toLowerCase()}`;

export function isOwnedSlice(s: Pick<ServiceObject, 'labels'>, peer: string): boolean {
  return s.labels[LABEL_SLICE_MANAGED_BY] === FIELD_MANAGER && s.labels[LABEL_PEER] === peer;
}

export function ownedSliceSelector(peer: string): string {
  return `${LABEL_SLICE_MANAGED_BY}=${FIELD_MANAGER},${LABEL_PEER}=${peer}`;
}

/** Ready data-plane endpoints split by address family, each family sorted by pod. */
export function endpointsByFamily(pods: readonly DataplaneEndpoint[]): Record<AddressType, EndpointSliceManifest['endpoints']> {
  const out: Record<AddressType, EndpointSliceManifest['endpoints']> = { IPv4: [], IPv6: [] };
  const sorted = [...pods].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  for (const p of sorted) {
    for (const family of ['IPv4', 'IPv6'] as const) {
      const addresses = p.ips.filter((ip) => (family === 'IPv4' ? isIPv4(ip) : isIPv6(ip))).sort();
      // One address per endpoint (what the API server requires); a pod with several takes the first.
      const address = addresses[0];
      if (address === undefined) continue;
      const targetRef: EndpointSliceManifest['endpoints'][number]['targetRef'] = { kind: 'Pod', namespace: p.namespace, name: p.name };
      if (p.uid) targetRef.uid = p.uid;
      const e: EndpointSliceManifest['endpoints'][number] = { addresses: [address], conditions: { ready: true, serving: true, terminating: false }, targetRef };
      if (p.nodeName) e.nodeName = p.nodeName;
      out[family].push(e);
    }
  }
  return out;
}

/** The slice we want for one Service and address family, with its spec-hash annotation. */
export function endpointSliceManifest(target: EndpointSliceTarget, family: AddressType, endpoints: EndpointSliceManifest['endpoints'], peer: string): EndpointSliceManifest {
  const manifest: EndpointSliceManifest = {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: sliceName(target.name, family),
      namespace: target.namespace,
      labels: { [LABEL_SERVICE_NAME]: target.name, [LABEL_SLICE_MANAGED_BY]: FIELD_MANAGER, [LABEL_PEER]: peer },
      annotations: {},
      ...(target.uid ? { ownerReferences: [{ apiVersion: 'v1' as const, kind: 'Service' as const, name: target.name, uid: target.uid }] } : {}),
    },
    addressType: family,
    endpoints: endpoints.slice(0, MAX_ENDPOINTS_PER_SLICE),
    ports: [{ name: 'tcp', port: target.port, protocol: 'TCP' }],
  };
  manifest.metadata.annotations[ANNOTATION_SPEC_HASH] = createHash('sha256').update(canonical({ ...manifest, metadata: { ...manifest.metadata, annotations: {} } })).digest('hex').slice(0, 32);
  return manifest;
}

/**
 * Desired slices: an IPv4 slice per target (even with no ready pod: an empty slice says "no
 * endpoints" explicitly), an IPv6 slice only while some ready data-plane pod has an IPv6 address.
 * `existing` = our slices plus any foreign slice whose name we would take.
 */
export function planEndpointSlices(targets: readonly EndpointSliceTarget[], pods: readonly DataplaneEndpoint[], existing: readonly ServiceObject[], peer: string): EndpointSlicePlan {
  const byFamily = endpointsByFamily(pods);
  const existingByKey = new Map(existing.map((s) => [`${s.namespace}/${s.name}`, s]));
  const wanted = new Set<string>();
  const apply: EndpointSliceManifest[] = [];
  const conflicts: ServiceConflict[] = [];
  let unchanged = 0;
  for (const t of targets) {
    for (const family of ['IPv4', 'IPv6'] as const) {
      if (family === 'IPv6' && byFamily.IPv6.length === 0) continue;
      const m = endpointSliceManifest(t, family, byFamily[family], peer);
      const k = `${t.namespace}/${m.metadata.name}`;
      if (wanted.has(k)) continue;
      wanted.add(k);
      const current = existingByKey.get(k);
      if (current && !isOwnedSlice(current, peer)) {
        conflicts.push({ namespace: t.namespace, name: t.name, reason: `EndpointSlice ${k} already exists and is managed by ${current.labels[LABEL_SLICE_MANAGED_BY] ?? 'someone else'}; not overwritten` });
        continue;
      }
      if (current && current.annotations[ANNOTATION_SPEC_HASH] === m.metadata.annotations[ANNOTATION_SPEC_HASH]) unchanged++;
      else apply.push(m);
    }
  }
  const prune: ObjectRef[] = [];
  for (const s of existing) if (isOwnedSlice(s, peer) && !wanted.has(`${s.namespace}/${s.name}`)) prune.push({ namespace: s.namespace, name: s.name });
  const cmp = (a: ObjectRef, b: ObjectRef) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`);
  apply.sort((a, b) => cmp(a.metadata, b.metadata));
  return { apply, prune: prune.sort(cmp), unchanged, conflicts: conflicts.sort(cmp) };
}

export interface EndpointSliceApplyResult {
  applied: ObjectRef[];
  pruned: ObjectRef[];
  unchanged: number;
  conflicts: ServiceConflict[];
  /** Refs name the Service the slice belongs to (Events attach to it); the message names the slice. */
  errors: ServiceApplyError[];
  /** Write requests sent (apply, delete), successful or not. */
  writes: number;
}

export class EndpointSliceApplier {
  private readonly discovery: DiscoveryV1Api;
  private readonly objects: KubernetesObjectApi;
  private readonly concurrency: number;
  private readonly pageSize: number;

  constructor(
    kubeConfig: KubeConfig,
    private readonly opts: { peer: string; concurrency?: number | undefined; pageSize?: number | undefined; /** Where a failed list is reported (the reconciler's own). */ namespace?: string | undefined },
  ) {
    this.discovery = kubeConfig.makeApiClient(DiscoveryV1Api);
    this.objects = KubernetesObjectApi.makeApiClient(kubeConfig);
    this.concurrency = opts.concurrency ?? 16;
    this.pageSize = opts.pageSize ?? 500;
  }

  private async list(namespace: string | undefined, labelSelector: string | undefined): Promise<ServiceObject[]> {
    const out: ServiceObject[] = [];
    let cont: string | undefined;
    do {
      const raw = namespace
        ? await this.discovery.listNamespacedEndpointSlice({ namespace, labelSelector, limit: this.pageSize, _continue: cont })
        : await this.discovery.listEndpointSliceForAllNamespaces({ labelSelector, limit: this.pageSize, _continue: cont });
      const list = MetadataListSchema.parse(raw);
      for (const s of list.items) out.push({ namespace: s.metadata.namespace ?? namespace ?? 'default', name: s.metadata.name, labels: s.metadata.labels, annotations: s.metadata.annotations });
      cont = list.metadata?._continue || undefined;
    } while (cont);
    return out;
  }

  async reconcile(targets: readonly EndpointSliceTarget[], pods: readonly DataplaneEndpoint[]): Promise<EndpointSliceApplyResult> {
    const empty: EndpointSliceApplyResult = { applied: [], pruned: [], unchanged: 0, conflicts: [], errors: [], writes: 0 };
    let existing: ServiceObject[];
    try {
      existing = await this.list(undefined, ownedSliceSelector(this.opts.peer));
      // Foreign slices can only collide with names we do not own yet: list just those namespaces.
      const ownedKeys = new Set(existing.map((s) => `${s.namespace}/${s.name}`));
      const first = planEndpointSlices(targets, pods, existing, this.opts.peer);
      const newcomers = first.apply.filter((m) => !ownedKeys.has(`${m.metadata.namespace}/${m.metadata.name}`));
      if (newcomers.length > 0) {
        const names = new Set(newcomers.map((m) => `${m.metadata.namespace}/${m.metadata.name}`));
        const namespaces = [...new Set(newcomers.map((m) => m.metadata.namespace))].sort();
        const perNs = await mapLimit(namespaces, this.concurrency, (ns) => this.list(ns, undefined));
        for (const l of perNs) for (const s of l) if (names.has(`${s.namespace}/${s.name}`) && !ownedKeys.has(`${s.namespace}/${s.name}`)) existing.push(s);
      }
    } catch (err) {
      return { ...empty, errors: [{ namespace: this.opts.namespace ?? 'default', name: '', op: 'endpointslice-list', message: `listing EndpointSlices: ${errorMessage(err)}` }] };
    }
    const plan = planEndpointSlices(targets, pods, existing, this.opts.peer);
    const serviceOf = new Map<string, string>();
    for (const s of existing) serviceOf.set(`${s.namespace}/${s.name}`, s.labels[LABEL_SERVICE_NAME] ?? s.name);

    let writes = 0;
    const applied: ObjectRef[] = [];
    const errors: ServiceApplyError[] = [];
    const conflicts = [...plan.conflicts];
    await mapLimit(plan.apply, this.concurrency, async (m) => {
      const ref = { namespace: m.metadata.namespace, name: m.metadata.name };
      const svc = { namespace: ref.namespace, name: m.metadata.labels[LABEL_SERVICE_NAME] ?? ref.name };
      writes++;
      try {
        // force=false, as for Services: a field someone else owns is reported, not taken over.
        await this.objects.patch(structuredClone(m), undefined, undefined, FIELD_MANAGER, false, PatchStrategy.ServerSideApply);
        applied.push(ref);
      } catch (err) {
        if (statusCode(err) === 409) conflicts.push({ ...svc, reason: `EndpointSlice ${ref.name}: server-side apply conflict: ${errorMessage(err)}` });
        else errors.push({ ...svc, op: 'endpointslice-apply', message: `EndpointSlice ${ref.name}: ${errorMessage(err)}` });
      }
    });
    writes += plan.prune.length;
    const pruned = await deleteAll(
      plan.prune,
      this.concurrency,
      (ref) => this.discovery.deleteNamespacedEndpointSlice({ namespace: ref.namespace, name: ref.name }),
      (ref, err) => errors.push({ namespace: ref.namespace, name: serviceOf.get(`${ref.namespace}/${ref.name}`) ?? ref.name, op: 'endpointslice-delete', message: `EndpointSlice ${ref.name}: ${errorMessage(err)}` }),
    );
    const cmp = (a: ObjectRef, b: ObjectRef) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`);
    return { applied: applied.sort(cmp), pruned: pruned.sort(cmp), unchanged: plan.unchanged, conflicts: conflicts.sort(cmp), errors: errors.sort(cmp), writes };
  }
}
