// The bookkeeping every source shares: which revision was attempted and which applied (kept
// apart, as in Flux), a bounded history with outcomes, the last error, suspension, and handing
// accepted revisions to listeners (a throwing listener marks the revision failed at `apply`).
import type { AcceptedRevision, RevisionHistoryEntry, RevisionListener, SourceError, SourceStatus } from './types.ts';

const HISTORY_LIMIT = 20;

export interface RevisionTracker {
  onRevision(listener: RevisionListener): void;
  /** A fetch/read happened (whatever its outcome). */
  fetched(): void;
  /** True when `revision` differs from the last attempted one (so it must be processed). */
  isNew(revision: string): boolean;
  rejected(revision: string | null, error: Omit<SourceError, 'revision' | 'at'>): void;
  accept(rev: AcceptedRevision): Promise<boolean>;
  suspend(on: boolean): void;
  suspended(): boolean;
  status(): SourceStatus;
  /** The last revision handed on successfully (the last good one). */
  lastApplied(): AcceptedRevision | null;
  /** Forget the last attempt so the same revision is processed again (after a transient failure). */
  retryLastAttempt(): void;
}

export function createRevisionTracker(base: { kind: SourceStatus['kind']; url: string; ref?: string }): RevisionTracker {
  const listeners: RevisionListener[] = [];
  const history: RevisionHistoryEntry[] = [];
  let lastAttempted: string | null = null;
  let lastGood: AcceptedRevision | null = null;
  let lastFetchTime: string | null = null;
  let lastError: SourceError | null = null;
  let isSuspended = false;
  /** Refusals by stage since start (fetch, signature, fast-forward, tree, validate, apply): for metrics. */
  const errorsByStage: Record<string, number> = {};

  const record = (entry: RevisionHistoryEntry): void => {
    history.unshift(entry);
    if (history.length > HISTORY_LIMIT) history.length = HISTORY_LIMIT;
  };

  return {
    onRevision: (l) => void listeners.push(l),
    fetched: () => void (lastFetchTime = new Date().toISOString()),
    isNew: (revision) => revision !== lastAttempted,
    rejected(revision, error) {
      const at = new Date().toISOString();
      lastError = { revision, at, ...error };
      errorsByStage[error.stage] = (errorsByStage[error.stage] ?? 0) + 1;
      if (revision !== null) {
        lastAttempted = revision;
        record({ revision, outcome: 'rejected', at, message: error.file ? `${error.file}:${error.line ?? 1}: ${error.message}` : error.message });
      }
    },
    async accept(rev) {
      lastAttempted = rev.revision;
      try {
        for (const l of listeners) await l(rev);
      } catch (err) {
        const at = new Date().toISOString();
        lastError = { revision: rev.revision, stage: 'apply', message: (err as Error).message, at };
        errorsByStage.apply = (errorsByStage.apply ?? 0) + 1;
        record({ revision: rev.revision, outcome: 'rejected', at, message: `apply: ${(err as Error).message}` });
        return false;
      }
      lastGood = rev;
      lastError = null;
      record({ revision: rev.revision, outcome: 'applied', at: new Date().toISOString(), ...(rev.message ? { message: rev.message } : {}) });
      return true;
    },
    suspend: (on) => void (isSuspended = on),
    suspended: () => isSuspended,
    lastApplied: () => lastGood,
    retryLastAttempt: () => void (lastAttempted = lastGood?.revision ?? null),
    status: () => ({
      kind: base.kind,
      url: base.url,
      ...(base.ref !== undefined ? { ref: base.ref } : {}),
      lastAttemptedRevision: lastAttempted,
      lastAppliedRevision: lastGood?.revision ?? null,
      lastFetchTime,
      lastError,
      errorsByStage: { ...errorsByStage },
      history: history.map((h) => ({ ...h })),
      suspended: isSuspended,
      ready: lastGood !== null,
    }),
  };
}
