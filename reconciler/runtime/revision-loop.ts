// Applies a source's accepted revisions one at a time, in order, and records the outcome: the
// shared loop of the local runtime and the cluster control plane. A failing apply is logged and
// rethrown (the source marks that revision `apply` failed); the last good state is the caller's.
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { AcceptedRevision, FabricSource } from '../source/types.ts';

export interface RevisionLoop {
  /** Resolves after the next revision has been processed (applied or refused). */
  nextApply(): Promise<void>;
  /** The last apply failure, cleared by the next success. */
  lastApplyError(): { revision: string; message: string; at: string } | null;
  /** Stops taking revisions and waits for the one in progress. */
  close(): Promise<void>;
}

export function runRevisions(
  source: FabricSource,
  apply: (rev: AcceptedRevision) => Promise<void>,
  log: Logger,
  onDone?: (outcome: { ok: boolean; seconds: number }) => void,
): RevisionLoop {
  let queue: Promise<void> = Promise.resolve();
  let waiters: Array<() => void> = [];
  let lastError: { revision: string; message: string; at: string } | null = null;
  let closed = false;
  source.onRevision((rev) => {
    const run = queue.then(async () => {
      if (closed) return;
      const started = performance.now();
      let ok = false;
      try {
        await apply(rev);
        ok = true;
        lastError = null;
      } catch (err) {
        lastError = { revision: rev.revision, message: (err as Error).message, at: new Date().toISOString() };
        log.error({ revision: rev.revision, err: (err as Error).message }, 'revision not applied; the last good configuration keeps serving');
        throw err;
      } finally {
        onDone?.({ ok, seconds: (performance.now() - started) / 1000 });
        const w = waiters;
        waiters = [];
        for (const resolve of w) resolve();
      }
    });
    queue = run.catch(() => undefined);
    return run;
  });
  return {
    nextApply: () => new Promise<void>((resolve) => waiters.push(resolve)),
    lastApplyError: () => lastError,
    async close() {
      closed = true;
      await queue;
    },
  };
}
