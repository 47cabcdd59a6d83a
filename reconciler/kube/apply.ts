// Executor for the Service plan, with the real client: list what we own, look for foreign Services
// only where a new name would land, plan (pure), then server-side apply / delete. Nothing is written
// when every owned Service already carries the desired spec hash, so a restart costs reads only.
import { CoreV1Api, KubernetesObjectApi, PatchStrategy, type KubeConfig } from '@kubernetes/client-node';
import type { SliceImport } from '../slice/types.ts';
import { ServiceListSchema, deleteAll, errorMessage, mapLimit, statusCode } from './api.ts';
import { FIELD_MANAGER, LABEL_MANAGED_BY, LABEL_PEER, planServices, type ObjectRef, type ServiceConflict, type ServiceObject } from './services.ts';
import { z } from 'zod';

export interface ServiceApplyOptions {
  peer: string;
  /** Create namespaces that imports name but that do not exist (needs `create` on namespaces). */
  createNamespaces: boolean;
  /** Parallel write requests (API servers rate-limit; client-go defaults to 5 QPS/10 burst, we stay polite). */
  concurrency?: number;
  /** Page size for lists, so a cluster with many Services is never fetched in one response. */
  pageSize?: number;
}

export interface ServiceApplyError extends ObjectRef {
  op: 'apply' | 'delete' | 'create-namespace' | 'list' | 'endpointslice-apply' | 'endpointslice-delete' | 'endpointslice-list';
  message: string;
}

export interface ServiceApplyResult {
  /** Imports whose Service is in place (applied now or already up to date). */
  inEffect: ObjectRef[];
  applied: ObjectRef[];
  pruned: ObjectRef[];
  unchanged: number;
  conflicts: ServiceConflict[];
  errors: ServiceApplyError[];
  missingNamespaces: string[];
  createdNamespaces: string[];
  /** Write requests sent (apply, delete, namespace create), successful or not. */
  writes: number;
  /**
   * Our Services that exist after this pass and whose import is wanted, with their uid: the ones in
   * effect, plus owned ones whose re-apply failed (still there, still routing: their EndpointSlices
   * must not be pruned over a transient error).
   */
  live: LiveService[];
}

export interface LiveService extends ObjectRef {
  uid: string | undefined;
}

const NamespaceListSchema = z.object({
  metadata: z.object({ _continue: z.string().optional() }).optional(),
  items: z.array(z.object({ metadata: z.object({ name: z.string() }) })),
});

export function ownedSelector(peer: string): string {
  return `${LABEL_MANAGED_BY}=${FIELD_MANAGER},${LABEL_PEER}=${peer}`;
}

export class ServiceApplier {
  private readonly core: CoreV1Api;
  private readonly objects: KubernetesObjectApi;
  private readonly concurrency: number;
  private readonly pageSize: number;

  constructor(
    kubeConfig: KubeConfig,
    private readonly opts: ServiceApplyOptions,
  ) {
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.objects = KubernetesObjectApi.makeApiClient(kubeConfig);
    this.concurrency = opts.concurrency ?? 16;
    this.pageSize = opts.pageSize ?? 500;
  }

  /** Services this peer's reconciler owns, cluster-wide (one paged list by label). */
  async listOwned(): Promise<ServiceObject[]> {
    const out: ServiceObject[] = [];
    let cont: string | undefined;
    do {
      const raw = await this.core.listServiceForAllNamespaces({ labelSelector: ownedSelector(this.opts.peer), limit: this.pageSize, _continue: cont });
      const list = ServiceListSchema.parse(raw);
      for (const s of list.items) out.push(toServiceObject(s.metadata));
      cont = list.metadata?._continue || undefined;
    } while (cont);
    return out;
  }

  private async listInNamespace(namespace: string): Promise<ServiceObject[]> {
    const out: ServiceObject[] = [];
    let cont: string | undefined;
    do {
      const raw = await this.core.listNamespacedService({ namespace, limit: this.pageSize, _continue: cont });
      const list = ServiceListSchema.parse(raw);
      for (const s of list.items) out.push(toServiceObject({ ...s.metadata, namespace: s.metadata.namespace ?? namespace }));
      cont = list.metadata?._continue || undefined;
    } while (cont);
    return out;
  }

  private async listNamespaces(): Promise<Set<string>> {
    const out = new Set<string>();
    let cont: string | undefined;
    do {
      const list = NamespaceListSchema.parse(await this.core.listNamespace({ limit: this.pageSize, _continue: cont }));
      for (const n of list.items) out.add(n.metadata.name);
      cont = list.metadata?._continue || undefined;
    } while (cont);
    return out;
  }

  async reconcile(imports: SliceImport[], revision: string): Promise<ServiceApplyResult> {
    const owned = await this.listOwned();
    const ownedKeys = new Set(owned.map((s) => `${s.namespace}/${s.name}`));
    // Foreign Services can only collide with imports we do not own yet; list just those namespaces
    // (a cluster-wide unfiltered list would read every Service in the cluster on every revision).
    const newcomers = imports.filter((i) => !ownedKeys.has(`${i.namespace}/${i.name}`));
    const existing = [...owned];
    let knownNamespaces: Set<string> | undefined;
    if (newcomers.length > 0) {
      const names = new Set(newcomers.map((i) => `${i.namespace}/${i.name}`));
      const namespaces = [...new Set(newcomers.map((i) => i.namespace))].sort();
      const perNs = await mapLimit(namespaces, this.concurrency, (ns) => this.listInNamespace(ns));
      for (const list of perNs) for (const s of list) if (names.has(`${s.namespace}/${s.name}`)) existing.push(s);
      knownNamespaces = await this.listNamespaces();
    }

    const plan = planServices(imports, existing, {
      peer: this.opts.peer,
      revision,
      fieldManager: FIELD_MANAGER,
      createNamespaces: this.opts.createNamespaces,
      knownNamespaces,
    });

    let writes = 0;
    const errors: ServiceApplyError[] = [];
    const conflicts = [...plan.conflicts];
    const createdNamespaces: string[] = [];
    const failedNamespaces = new Set<string>();
    if (this.opts.createNamespaces) {
      for (const ns of plan.missingNamespaces) {
        writes++;
        try {
          await this.core.createNamespace({ body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { [LABEL_MANAGED_BY]: FIELD_MANAGER } } }, fieldManager: FIELD_MANAGER });
          createdNamespaces.push(ns);
        } catch (err) {
          // 409: created meanwhile by someone else, which is just as good.
          if (statusCode(err) !== 409) {
            failedNamespaces.add(ns);
            errors.push({ namespace: ns, name: '', op: 'create-namespace', message: errorMessage(err) });
          }
        }
      }
    }

    const applied: ObjectRef[] = [];
    const appliedUid = new Map<string, string | undefined>();
    const toApply = plan.apply.filter((m) => !failedNamespaces.has(m.metadata.namespace));
    await mapLimit(toApply, this.concurrency, async (manifest) => {
      const ref = { namespace: manifest.metadata.namespace, name: manifest.metadata.name };
      writes++;
      try {
        // force=false: a field another manager owns surfaces as 409 instead of being taken over.
        const res = await this.objects.patch(structuredClone(manifest), undefined, undefined, FIELD_MANAGER, false, PatchStrategy.ServerSideApply);
        applied.push(ref);
        appliedUid.set(`${ref.namespace}/${ref.name}`, z.object({ metadata: z.object({ uid: z.string().optional() }) }).safeParse(res).data?.metadata.uid);
      } catch (err) {
        if (statusCode(err) === 409) conflicts.push({ ...ref, reason: `server-side apply conflict: ${errorMessage(err)}` });
        else errors.push({ ...ref, op: 'apply', message: errorMessage(err) });
      }
    });

    writes += plan.prune.length;
    const pruned = await deleteAll(
      plan.prune,
      this.concurrency,
      (ref) => this.core.deleteNamespacedService({ namespace: ref.namespace, name: ref.name }),
      (ref, err) => errors.push({ ...ref, op: 'delete', message: errorMessage(err) }),
    );

    const inEffect = [...plan.unchanged, ...applied].sort(cmpRef);
    const ownedByKey = new Map(owned.map((s) => [`${s.namespace}/${s.name}`, s]));
    const live: LiveService[] = [];
    for (const ref of inEffect) {
      const k = `${ref.namespace}/${ref.name}`;
      live.push({ ...ref, uid: appliedUid.get(k) ?? ownedByKey.get(k)?.uid });
    }
    for (const e of errors) {
      const o = e.op === 'apply' ? ownedByKey.get(`${e.namespace}/${e.name}`) : undefined;
      if (o) live.push({ namespace: o.namespace, name: o.name, uid: o.uid });
    }
    live.sort(cmpRef);
    return {
      live,
      inEffect,
      applied: applied.sort(cmpRef),
      pruned: pruned.sort(cmpRef),
      unchanged: plan.unchanged.length,
      conflicts: conflicts.sort(cmpRef),
      errors: errors.sort(cmpRef),
      missingNamespaces: plan.missingNamespaces,
      createdNamespaces: createdNamespaces.sort(),
      writes,
    };
  }
}

function toServiceObject(meta: { name: string; namespace?: string | undefined; uid?: string | undefined; labels: Record<string, string>; annotations: Record<string, string> }): ServiceObject {
  return { namespace: meta.namespace ?? 'default', name: meta.name, ...(meta.uid ? { uid: meta.uid } : {}), labels: meta.labels, annotations: meta.annotations };
}

export function cmpRef(a: ObjectRef, b: ObjectRef): number {
  return a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
