// Status for humans and tools: a ConfigMap clgo-status-<peer> in the reconciler's namespace
// (revision, last error, imports in effect, conflicts) and Warning Events on the Services involved.
// Written only when the content changes, and what was last written is read back at start, so a
// restarted reconciler with nothing new to say writes nothing and repeats no Event.
import { CoreV1Api, KubernetesObjectApi, PatchStrategy, type KubeConfig } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { errorMessage, statusCode } from './api.ts';
import { FIELD_MANAGER, LABEL_MANAGED_BY, LABEL_PEER, type ObjectRef, type ServiceConflict } from './services.ts';

export interface KubeStatus {
  revision: string;
  lastError: string | null;
  /** Imports whose Service is in place, as namespace/name. */
  appliedImports: string[];
  conflicts: ServiceConflict[];
  applyErrors: (ObjectRef & { message: string })[];
}

const ConfigMapSchema = z.object({ data: z.record(z.string(), z.string()).nullish() });
const ConflictsSchema = z.array(z.object({ namespace: z.string(), name: z.string(), reason: z.string() }));
const ErrorsSchema = z.array(z.object({ namespace: z.string(), name: z.string(), message: z.string() }));

export function statusConfigMapName(peer: string): string {
  return `clgo-status-${peer}`;
}

function toData(s: KubeStatus): Record<string, string> {
  // Stable text (sorted, no timestamps) so equal status means byte-equal data and no write.
  return {
    revision: s.revision,
    lastError: s.lastError ?? '',
    appliedImports: [...s.appliedImports].sort().join('\n'),
    conflicts: JSON.stringify([...s.conflicts].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`))),
    applyErrors: JSON.stringify([...s.applyErrors].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`))),
  };
}

const sameData = (a: Record<string, string>, b: Record<string, string>) => {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
};

export class StatusWriter {
  private readonly core: CoreV1Api;
  private readonly objects: KubernetesObjectApi;
  private last: Record<string, string> | undefined;
  private loaded = false;
  private reportedConflicts = new Set<string>();
  private reportedErrors = new Set<string>();
  writes = 0;

  constructor(
    kubeConfig: KubeConfig,
    private readonly opts: { peer: string; namespace: string; component?: string; onError?: (m: string) => void },
  ) {
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.objects = KubernetesObjectApi.makeApiClient(kubeConfig);
  }

  private async load(): Promise<void> {
    if (this.loaded) return;
    try {
      const cm = ConfigMapSchema.parse(await this.core.readNamespacedConfigMap({ namespace: this.opts.namespace, name: statusConfigMapName(this.opts.peer) }));
      this.last = cm.data ?? {};
      const conflicts = ConflictsSchema.safeParse(JSON.parse(this.last.conflicts || '[]'));
      if (conflicts.success) for (const c of conflicts.data) this.reportedConflicts.add(conflictKey(c));
      const errs = ErrorsSchema.safeParse(JSON.parse(this.last.applyErrors || '[]'));
      if (errs.success) for (const e of errs.data) this.reportedErrors.add(errorKey(e));
    } catch (err) {
      if (statusCode(err) !== 404) throw err;
    }
    this.loaded = true;
  }

  /** Writes the ConfigMap if its content changed and an Event per conflict/error not reported before. */
  async write(status: KubeStatus): Promise<{ configMapWritten: boolean; events: number }> {
    await this.load();
    let events = 0;
    const nowConflicts = new Set<string>();
    for (const c of status.conflicts) {
      const k = conflictKey(c);
      nowConflicts.add(k);
      if (!this.reportedConflicts.has(k) && (await this.event(c, 'ImportConflict', c.reason))) events++;
    }
    // Forget resolved ones, so a conflict that comes back is reported again.
    this.reportedConflicts = nowConflicts;
    const nowErrors = new Set<string>();
    for (const e of status.applyErrors) {
      const k = errorKey(e);
      nowErrors.add(k);
      if (!this.reportedErrors.has(k) && (await this.event(e, 'ApplyFailed', e.message))) events++;
    }
    this.reportedErrors = nowErrors;

    const data = toData(status);
    if (this.last && sameData(this.last, data)) return { configMapWritten: false, events };
    this.writes++;
    await this.objects.patch(
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: statusConfigMapName(this.opts.peer), namespace: this.opts.namespace, labels: { [LABEL_MANAGED_BY]: FIELD_MANAGER, [LABEL_PEER]: this.opts.peer } },
        data,
      },
      undefined,
      undefined,
      FIELD_MANAGER,
      // The status ConfigMap is ours alone; force keeps a hand edit from blocking status forever.
      true,
      PatchStrategy.ServerSideApply,
    );
    this.last = data;
    return { configMapWritten: true, events };
  }

  private async event(ref: ObjectRef, reason: 'ImportConflict' | 'ApplyFailed', message: string): Promise<boolean> {
    const now = new Date();
    this.writes++;
    try {
      await this.core.createNamespacedEvent({
        namespace: ref.namespace,
        body: {
          apiVersion: 'v1',
          kind: 'Event',
          metadata: { name: `${ref.name || 'namespace'}.${randomBytes(8).toString('hex')}`, namespace: ref.namespace },
          involvedObject: ref.name ? { apiVersion: 'v1', kind: 'Service', namespace: ref.namespace, name: ref.name } : { apiVersion: 'v1', kind: 'Namespace', name: ref.namespace },
          reason,
          // Event messages are capped at 1 KiB by the API server.
          message: message.slice(0, 1000),
          type: 'Warning',
          source: { component: this.opts.component ?? 'clgo-reconciler' },
          reportingComponent: this.opts.component ?? 'clgo-reconciler',
          reportingInstance: this.opts.peer,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
      return true;
    } catch (err) {
      // An Event that cannot be written must not fail the reconcile; the ConfigMap still says it.
      this.opts.onError?.(`event ${reason} for ${ref.namespace}/${ref.name}: ${errorMessage(err)}`);
      return false;
    }
  }
}

const conflictKey = (c: ServiceConflict) => `${c.namespace}/${c.name}|${c.reason}`;
const errorKey = (e: ObjectRef & { message: string }) => `${e.namespace}/${e.name}|${e.message}`;
