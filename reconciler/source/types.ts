// The contract between a fabric source (Git repository, local directory) and the reconciler.
// A source only ever hands on revisions that passed every gate (signature, fast-forward,
// schema); anything else is recorded in its status and the last good revision keeps serving.
import type { Diagnostic, FabricModel } from '../../schema/model.ts';

export interface AcceptedRevision {
  /** Commit SHA for Git; a content hash for a directory. */
  revision: string;
  fabric: FabricModel;
  /** The validated tree, path → bytes, as read from the object store (or the directory). */
  files: ReadonlyMap<string, Uint8Array>;
  /** Validation warnings of this revision (errors would have rejected it). */
  warnings: Diagnostic[];
  committedAt?: string;
  message?: string;
}

export type RevisionOutcome = 'applied' | 'rejected' | 'unchanged';

export interface SourceError {
  revision: string | null;
  /** The stage that refused the revision: fetch, signature, fast-forward, tree, validate. */
  stage: 'fetch' | 'signature' | 'fast-forward' | 'tree' | 'validate' | 'apply';
  message: string;
  file?: string;
  line?: number;
  column?: number;
  at: string;
}

export interface RevisionHistoryEntry {
  revision: string;
  outcome: RevisionOutcome;
  at: string;
  message?: string;
}

/** Shaped like Flux's GitRepository status: attempted and applied revisions are kept apart. */
export interface SourceStatus {
  kind: 'git' | 'directory';
  url: string;
  ref?: string;
  lastAttemptedRevision: string | null;
  lastAppliedRevision: string | null;
  lastFetchTime: string | null;
  lastError: SourceError | null;
  /** Refusals by stage since the source started (cumulative). */
  errorsByStage?: Record<string, number>;
  /** Most recent first, bounded. */
  history: RevisionHistoryEntry[];
  suspended: boolean;
  ready: boolean;
}

export type RevisionListener = (revision: AcceptedRevision) => void | Promise<void>;

export interface FabricSource {
  /** First fetch/read; resolves once the first attempt finished (accepted or not). */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Listeners are awaited in order; a throwing listener marks the revision `apply` failed. */
  onRevision(listener: RevisionListener): void;
  /** Fetch/read now (webhook, CLI). Resolves when this attempt finished. */
  refresh(): Promise<void>;
  status(): SourceStatus;
  suspend(on: boolean): void;
}
