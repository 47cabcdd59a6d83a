// The Git source: follows one ref of the fabric repository over smart HTTP(S) with isomorphic-git
// and hands on only revisions that pass every gate, in this order:
//   fetch → signature (keys of the currently trusted fabric.yaml) → fast-forward → tree → schema.
// Any failure keeps the last good revision serving and is recorded (revision, stage, file:line).
// The object store lives in a persistent cache directory: a restart serves the last applied
// revision from it at once (even with the server down) and fetches only what is new.
import fs from 'node:fs';
import { mkdir, readFile, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import git from 'isomorphic-git';
import type { Logger } from 'pino';
import { pino } from 'pino';
import { z } from 'zod';
import { DEFAULT_LIMITS, loadFabricFiles, ParseCache, type LoadLimits } from '../../schema/load.ts';
import type { FabricModel, LoadResult, SigningKey } from '../../schema/model.ts';
import { boundedHttpClient, redactUrl, type GitAuth } from './http-client.ts';
import { BlobCache, readCommitTree, TreeError } from './git-tree.ts';
import { guardUploadPackResponse, type PackLimits } from './pack-guard.ts';
import { createRevisionTracker } from './revision-tracker.ts';
import { splitSignedObject, verifyCommitSignature } from './signatures.ts';
import type { FabricSource, RevisionListener } from './types.ts';

export type GitRef = { branch: string } | { tag: string } | { commit: string };

/** What is verified when the fabric requires signatures, as in Flux: the commit, the tag, or both. */
export type VerifyMode = 'head' | 'tag' | 'tag-and-head';

export interface GitSourceOptions {
  url: string;
  ref: GitRef;
  cacheDir: string;
  pollIntervalMs?: number;
  auth?: GitAuth;
  /** Accept history rewrites and rollbacks (off by default). */
  allowNonFastForward?: boolean;
  /** Per HTTP request, connect to last byte. */
  timeoutMs?: number;
  /** Size of one HTTP response from the Git server, i.e. of a fetched pack on the wire (default 32 MiB). */
  maxResponseBytes?: number;
  /** Bounds applied to a fetched pack from its object headers, before inflating (pack-guard.ts). Default: maxObjectBytes = limits.maxFileBytes, 500,000 objects, 256 MiB inflated in all. */
  packLimits?: Partial<PackLimits>;
  /** Initial clone depth (shallow); later fetches bring only what is new. */
  depth?: number;
  /** Cap of the retry delay while the server is unreachable. */
  maxBackoffMs?: number;
  verifyMode?: VerifyMode;
  /** Keys trusted before any revision was accepted (else the first revision's own fabric.yaml is trusted on first use). */
  bootstrapSigningKeys?: SigningKey[];
  limits?: Partial<LoadLimits>;
  load?: (files: ReadonlyMap<string, Uint8Array>) => LoadResult;
  logger?: Logger;
  random?: () => number;
}

export const DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024;

const droppedSchema = z.array(z.tuple([z.string().regex(/^[0-9a-f]{40}$/), z.object({ bytes: z.number().nonnegative(), limit: z.number().nonnegative() })])).max(4096);
const stateSchema = z.object({ lastAppliedRevision: z.string().regex(/^[0-9a-f]{40}$/).nullable() });
const REMOTE = 'origin';

export function refLabel(ref: GitRef): string {
  return 'branch' in ref ? `branch ${ref.branch}` : 'tag' in ref ? `tag ${ref.tag}` : `commit ${ref.commit}`;
}

export function createGitSource(opts: GitSourceOptions): FabricSource {
  const log = opts.logger ?? pino({ level: 'silent' });
  const gitdir = opts.cacheDir;
  const pollIntervalMs = opts.pollIntervalMs ?? 30_000;
  const maxBackoffMs = opts.maxBackoffMs ?? 5 * 60_000;
  const random = opts.random ?? Math.random;
  const packLimits: PackLimits = {
    maxObjectBytes: opts.limits?.maxFileBytes ?? DEFAULT_LIMITS.maxFileBytes,
    maxObjects: 500_000,
    maxInflatedBytes: 256 * 1024 * 1024,
    ...opts.packLimits,
  };
  /**
   * Objects cut out of fetched packs for their size, by id (bounded: the most recent 4,096), kept
   * in the cache directory too: after a restart the server does not send them again (the commit
   * that needs them is already here), and a refusal should still name the size.
   */
  const droppedObjects = new Map<string, { bytes: number; limit: number }>();
  const droppedPath = join(opts.cacheDir, 'clgo-dropped-objects.json');
  const inspectUploadPack = async (body: Buffer): Promise<Buffer> => {
    const guarded = await guardUploadPackResponse(body, packLimits);
    if (guarded.dropped.length > 0) {
      for (const d of guarded.dropped) {
        if (d.oid === null) continue;
        droppedObjects.set(d.oid, { bytes: d.bytes, limit: packLimits.maxObjectBytes });
        if (droppedObjects.size > 4096) droppedObjects.delete(droppedObjects.keys().next().value!);
      }
      await writeFile(`${droppedPath}.tmp`, JSON.stringify([...droppedObjects]));
      await rename(`${droppedPath}.tmp`, droppedPath);
      log.warn({ url: shownUrl, dropped: guarded.dropped.map((d) => ({ oid: d.oid, type: d.type, bytes: d.bytes })), limit: packLimits.maxObjectBytes }, `${guarded.dropped.length} object(s) over the ${packLimits.maxObjectBytes}-byte limit cut out of the fetched pack before inflating; a revision that needs them is refused`);
    }
    return guarded.body;
  };
  const http = boundedHttpClient({ timeoutMs: opts.timeoutMs ?? 20_000, maxResponseBytes: opts.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES, auth: opts.auth, inspectUploadPack });
  // One parse cache per source: a new revision re-parses only the files it changed.
  const parseCache = new ParseCache();
  const load = opts.load ?? ((files) => loadFabricFiles(files, { limits: opts.limits, cache: parseCache }));
  const shownUrl = redactUrl(opts.url);
  const tracker = createRevisionTracker({ kind: 'git', url: shownUrl, ref: refLabel(opts.ref) });
  const cache = {};
  const blobs = new BlobCache();
  const statePath = join(gitdir, 'clgo-source-state.json');
  let trustedFabric: FabricModel | null = null;
  let timer: NodeJS.Timeout | null = null;
  let failures = 0;
  let running: Promise<void> | null = null;
  let queued: Promise<void> | null = null;
  let stopped = true;
  let initialised = false;

  async function init(): Promise<void> {
    if (initialised) return;
    await mkdir(gitdir, { recursive: true });
    if (!fs.existsSync(join(gitdir, 'HEAD'))) await git.init({ fs, gitdir, bare: true, defaultBranch: 'main' });
    // The remote's URL is re-set on every start so a changed --git URL takes effect with the same cache.
    await git.addRemote({ fs, gitdir, remote: REMOTE, url: opts.url, force: true });
    try {
      for (const [oid, d] of droppedSchema.parse(JSON.parse(await readFile(droppedPath, 'utf8')))) droppedObjects.set(oid, d);
    } catch {
      // none recorded (or unreadable): a missing object is then refused without its size
    }
    initialised = true;
  }

  async function saveState(revision: string): Promise<void> {
    const tmp = `${statePath}.tmp`;
    await writeFile(tmp, JSON.stringify({ lastAppliedRevision: revision }));
    await rename(tmp, statePath);
  }

  /** After a restart: the last applied revision from the cache, before any network call. */
  async function restoreFromCache(): Promise<void> {
    let state: z.infer<typeof stateSchema>;
    try {
      state = stateSchema.parse(JSON.parse(await readFile(statePath, 'utf8')));
    } catch {
      return;
    }
    if (!state.lastAppliedRevision) return;
    try {
      await evaluateHead(state.lastAppliedRevision, { restoring: true });
      log.info({ revision: state.lastAppliedRevision }, 'serving the last applied revision from the cache');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'cache state unusable; fetching afresh');
    }
  }

  async function fetchHead(): Promise<string> {
    const hasObjects = tracker.lastApplied() !== null || fs.existsSync(join(gitdir, 'shallow'));
    const ref = opts.ref;
    if ('commit' in ref) {
      // A pinned commit: fetch the default branch's history and require the commit to be in it.
      await git.fetch({ fs, http, gitdir, url: opts.url, remote: REMOTE, singleBranch: false, tags: false, cache });
      await git.readCommit({ fs, gitdir, oid: ref.commit, cache });
      return ref.commit;
    }
    if ('tag' in ref) {
      await git.fetch({ fs, http, gitdir, url: opts.url, remote: REMOTE, ref: `refs/tags/${ref.tag}`, remoteRef: `refs/tags/${ref.tag}`, singleBranch: true, tags: true, cache, ...(hasObjects ? {} : { depth: opts.depth ?? 1 }) });
      const oid = await git.resolveRef({ fs, gitdir, ref: `refs/tags/${ref.tag}` });
      return oid;
    }
    const result = await git.fetch({ fs, http, gitdir, url: opts.url, remote: REMOTE, ref: ref.branch, singleBranch: true, tags: false, cache, ...(hasObjects ? {} : { depth: opts.depth ?? 1 }) });
    if (!result.fetchHead) throw new Error(`the server has no ${refLabel(ref)}`);
    // isomorphic-git offers the local ref of the same name as "have" on the next fetch: without it
    // the server resends the whole history every time (a 2,000-file repo: ~260 KB and ~250 ms).
    await git.writeRef({ fs, gitdir, ref: `refs/heads/${ref.branch}`, value: result.fetchHead, force: true });
    return result.fetchHead;
  }

  /** Peels an annotated tag to its commit; returns the tag object too (for tag verification). */
  async function peel(oid: string, depth = 0): Promise<{ commit: string; tag: { oid: string } | null }> {
    const { type } = await git.readObject({ fs, gitdir, oid, format: 'parsed', cache });
    if (type !== 'tag') return { commit: oid, tag: null };
    if (depth > 8) throw new Error('tag chain too long');
    const t = await git.readTag({ fs, gitdir, oid, cache });
    const peeled = await peel(t.tag.object, depth + 1);
    return { commit: peeled.commit, tag: { oid } };
  }

  async function rawObject(oid: string): Promise<string> {
    const { object } = await git.readObject({ fs, gitdir, oid, format: 'content', cache });
    return Buffer.from(object as Uint8Array).toString('utf8');
  }

  async function isFastForward(from: string, to: string): Promise<boolean> {
    if (from === to) return true;
    const check = (): Promise<boolean> => git.isDescendent({ fs, gitdir, oid: to, ancestor: from, depth: 100_000, cache });
    try {
      return await check();
    } catch {
      // A shallow history may end before `from`: deepen once and ask again.
      try {
        if (!('commit' in opts.ref)) {
          const ref = 'branch' in opts.ref ? opts.ref.branch : `refs/tags/${opts.ref.tag}`;
          await git.fetch({ fs, http, gitdir, url: opts.url, remote: REMOTE, ref, singleBranch: true, tags: false, depth: 1000, relative: true, cache });
        }
        return await check();
      } catch {
        return false;
      }
    }
  }

  /** Peels a fetched head to its commit and takes it through the gates (signature, fast-forward, tree, validation) to the listeners. */
  async function evaluateHead(head: string, o: { restoring?: boolean } = {}): Promise<void> {
    const peeled = await peel(head);
    const revision = peeled.commit;
    if (!o.restoring && !tracker.isNew(revision)) return;
    const last = tracker.lastApplied();

    // Signatures are checked against the keys of the fabric we already trust, never the new one's.
    if (!o.restoring) {
      const trust = trustedFabric?.repo ?? (opts.bootstrapSigningKeys ? { requireSignedCommits: true, allowedSigningKeys: opts.bootstrapSigningKeys } : null);
      const mode = opts.verifyMode ?? ('tag' in opts.ref ? 'tag-and-head' : 'head');
      const requireFromNew = trust === null;
      if (trust?.requireSignedCommits || requireFromNew) {
        let keys = trust?.allowedSigningKeys ?? [];
        let required = trust?.requireSignedCommits ?? false;
        if (requireFromNew) {
          // Trust on first use: the first revision's own fabric.yaml says whether signatures are required.
          const files = await readCommitTree(gitdir, revision, opts.limits, cache, blobs, droppedObjects);
          const first = load(files);
          required = first.ok && first.fabric.repo.requireSignedCommits;
          keys = first.ok ? first.fabric.repo.allowedSigningKeys : [];
        }
        if (required) {
          if (mode !== 'tag') {
            const { payload, signature } = splitSignedObject(await rawObject(revision), 'commit');
            const r = await verifyCommitSignature(payload, signature, keys);
            if (!r.ok) return tracker.rejected(revision, { stage: 'signature', message: `commit ${revision.slice(0, 12)}: ${r.reason}` });
          }
          if (mode !== 'head') {
            if (!peeled.tag) return tracker.rejected(revision, { stage: 'signature', message: 'verification of the tag was asked for, but the ref is not an annotated tag' });
            const { payload, signature } = splitSignedObject(await rawObject(peeled.tag.oid), 'tag');
            const r = await verifyCommitSignature(payload, signature, keys);
            if (!r.ok) return tracker.rejected(revision, { stage: 'signature', message: `tag: ${r.reason}` });
          }
        }
      }
      if (last && !opts.allowNonFastForward && !(await isFastForward(last.revision, revision))) {
        return tracker.rejected(revision, {
          stage: 'fast-forward',
          message: `${revision.slice(0, 12)} does not descend from the applied ${last.revision.slice(0, 12)} (history rewrite or rollback); refused — revert with a new commit instead, or set allowNonFastForward`,
        });
      }
    }

    let files: Map<string, Uint8Array>;
    const treeStarted = performance.now();
    try {
      files = await readCommitTree(gitdir, revision, opts.limits, cache, blobs, droppedObjects);
    } catch (err) {
      if (err instanceof TreeError) return tracker.rejected(revision, { stage: 'tree', message: err.message, ...(err.file ? { file: err.file } : {}) });
      throw err;
    }
    const validateStarted = performance.now();
    const result = load(files);
    log.debug({ revision, files: files.size, treeMs: Math.round(validateStarted - treeStarted), validateMs: Math.round(performance.now() - validateStarted) }, 'revision read and validated');
    if (!result.ok) {
      const first = result.errors[0];
      return tracker.rejected(revision, {
        stage: 'validate',
        message: `${result.errors.length} error(s); first: ${first ? `${first.message} — ${first.hint}` : 'unknown'}`,
        ...(first ? { file: first.file, line: first.line, column: first.column } : {}),
      });
    }
    const { commit } = await git.readCommit({ fs, gitdir, oid: revision, cache });
    const accepted = await tracker.accept({
      revision,
      fabric: result.fabric,
      files,
      warnings: result.warnings,
      committedAt: new Date(commit.committer.timestamp * 1000).toISOString(),
      message: commit.message.split('\n')[0] ?? '',
    });
    if (accepted) {
      trustedFabric = result.fabric;
      await saveState(revision);
    }
  }

  async function attempt(): Promise<void> {
    if (tracker.suspended() || stopped) return;
    let head: string;
    try {
      await init();
      const fetchStarted = performance.now();
      head = await fetchHead();
      log.debug({ head, fetchMs: Math.round(performance.now() - fetchStarted) }, 'fetched');
      tracker.fetched();
      failures = 0;
    } catch (err) {
      failures++;
      tracker.rejected(null, { stage: 'fetch', message: (err as Error).message.replaceAll(opts.url, shownUrl) });
      log.warn({ url: shownUrl, failures, err: (err as Error).message.replaceAll(opts.url, shownUrl) }, 'fetch failed; the last good revision keeps serving');
      return;
    }
    try {
      await evaluateHead(head);
    } catch (err) {
      // Corrupt objects, unreadable commits: the revision is refused, nothing downstream changes.
      tracker.rejected(head, { stage: 'tree', message: (err as Error).message });
    }
  }

  function nextDelay(): number {
    if (failures === 0) return pollIntervalMs;
    const backoff = Math.min(maxBackoffMs, pollIntervalMs * 2 ** Math.min(failures - 1, 20));
    return Math.max(50, Math.round(backoff * (0.5 + random() / 2)));
  }

  function schedule(): void {
    if (stopped) return;
    timer = setTimeout(() => {
      timer = null;
      void refresh().finally(schedule);
    }, nextDelay());
    timer.unref?.();
  }

  /**
   * At most one fetch runs and one waits: a request while one runs joins the waiting one (which
   * starts after it, so it sees every push made before the request). A burst of webhooks or
   * replays costs two fetches, not one per request.
   */
  function refresh(): Promise<void> {
    if (queued) return queued;
    if (!running) return (running = runOnce());
    const next: Promise<void> = running.then(() => {
      queued = null;
      return (running = runOnce());
    });
    queued = next;
    return next;
  }

  function runOnce(): Promise<void> {
    const p: Promise<void> = attempt()
      .catch((err: unknown) => log.error({ err: (err as Error).message }, 'fetch attempt failed'))
      .finally(() => {
        if (running === p) running = null;
      });
    return p;
  }

  return {
    async start() {
      stopped = false;
      await init();
      await restoreFromCache();
      await refresh();
      schedule();
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
      await (queued ?? running);
    },
    onRevision(listener: RevisionListener) {
      tracker.onRevision(listener);
    },
    refresh,
    status: () => tracker.status(),
    suspend: (on) => tracker.suspend(on),
  };
}
