// Pod watch: IP → client attributes, driven by the real client-node Watch against a real
// kube-apiserver (Pods created through the API, status written as a kubelet would). Two faults a
// real server cannot be made to produce on demand stay on the in-process stand-in, at the end of
// this file: a watch stream cut mid-way (resume from the last resourceVersion without a re-list)
// and a watch answered with 410 Gone (history compacted → re-list).
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CoreV1Api } from '@kubernetes/client-node';
import { startKubeApiStandin, type KubeApiStandin } from '../fixtures/kube-api-standin.ts';
import { startPodWatcher, type PodWatcher } from '../../reconciler/kube/pods.ts';
import { startKubeTarget } from '../../reconciler/kube/index.ts';
import { RECONCILER_USER, SYSTEM_NS, startKubeEnv, waitFor, type KubeEnv } from './helpers.ts';

describe('pod watcher (real API server)', () => {
  let env: KubeEnv;
  let w: PodWatcher | undefined;

  beforeAll(async () => {
    env = await startKubeEnv(['shop', 'bank', 'a']);
  });
  afterAll(async () => {
    await env?.stop();
  });
  afterEach(async () => {
    await w?.stop();
    w = undefined;
  });

  const start = (extra: { watchTimeoutSeconds?: number } = {}) => (w = startPodWatcher({ kubeConfig: env.reconciler, backoff: { initialMs: 50, maxMs: 500 }, ...extra }));
  /** Pod watches the reconciler opened and the server has not finished yet (from the audit log). */
  const openWatches = async (mark: number) => {
    const f = { resource: 'pods', user: RECONCILER_USER, verbs: ['watch'] };
    return (await env.api.requests(mark, f)).length - (await env.api.responses(mark, f)).length;
  };

  it('maps pod IPs to namespace, service account and labels, following adds, relabels and deletes', async () => {
    await env.api.applyYaml('apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: cart}\n', 'shop');
    await env.api.applyYaml('apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: ledger}\n', 'bank');
    await env.api.createPod({ namespace: 'shop', name: 'cart-1', ip: '10.0.0.1', serviceAccount: 'cart', labels: { app: 'cart' } });
    const watcher = start();
    await watcher.ready;
    expect(watcher.clientAttributes('10.0.0.1')).toEqual({ namespace: 'shop', serviceAccount: 'cart', labels: { app: 'cart' } });
    expect(watcher.clientAttributes('10.0.0.9')).toBeNull();

    await env.api.createPod({ namespace: 'bank', name: 'ledger-1', ip: '10.0.0.2', serviceAccount: 'ledger', labels: { app: 'ledger' } });
    await waitFor('added pod', () => watcher.clientAttributes('10.0.0.2'), 10_000);
    expect(watcher.clientAttributes('10.0.0.2')).toEqual({ namespace: 'bank', serviceAccount: 'ledger', labels: { app: 'ledger' } });

    // Relabel: MODIFIED replaces the attributes.
    await env.admin.makeApiClient(CoreV1Api).patchNamespacedPod({ namespace: 'bank', name: 'ledger-1', body: [{ op: 'add', path: '/metadata/labels/tier', value: 'db' }] });
    await waitFor('relabelled pod', () => watcher.clientAttributes('10.0.0.2')?.labels.tier === 'db', 10_000);

    await env.api.deletePod('shop', 'cart-1');
    await waitFor('deleted pod gone', () => watcher.clientAttributes('10.0.0.1') === null, 10_000);
    expect(watcher.clientAttributes('10.0.0.2')).not.toBeNull();
  });

  it('does not drop a reused IP when the old pod is deleted after the new one appeared', async () => {
    await env.api.createPod({ namespace: 'a', name: 'old', ip: '10.0.0.5', labels: { v: 'old' } });
    const watcher = start();
    await watcher.ready;
    await env.api.createPod({ namespace: 'a', name: 'new', ip: '10.0.0.5', labels: { v: 'new' } });
    await waitFor('new pod owns IP', () => watcher.clientAttributes('10.0.0.5')?.labels.v === 'new', 10_000);
    await env.api.deletePod('a', 'old');
    await env.api.createPod({ namespace: 'a', name: 'marker', ip: '10.0.0.6', labels: {} });
    await waitFor('events after the delete seen', () => watcher.clientAttributes('10.0.0.6'), 10_000);
    expect(watcher.clientAttributes('10.0.0.5')?.labels.v).toBe('new');
  });

  it('renews its watch when the server ends it (timeoutSeconds) without re-listing, and misses nothing', async () => {
    const mark = await env.api.mark();
    const watcher = start({ watchTimeoutSeconds: 2 });
    await watcher.ready;
    await waitFor('second watch', () => watcher.stats().watches >= 2, 10_000, 50);
    await env.api.createPod({ namespace: 'a', name: 'after-renewal', ip: '10.0.0.7', labels: {} });
    await waitFor('event on the renewed watch', () => watcher.clientAttributes('10.0.0.7'), 10_000);
    expect(watcher.stats().lists).toBe(1);
    // Each watch resumed from the resourceVersion reached, never from scratch.
    const watches = await env.api.requests(mark, { resource: 'pods', user: RECONCILER_USER, verbs: ['watch'] });
    expect(watches.length).toBeGreaterThanOrEqual(2);
    for (const r of watches) expect(r.requestURI).toMatch(/resourceVersion=[1-9]\d*/);
  });

  it('stop() ends the watch promptly', async () => {
    const mark = await env.api.mark();
    const watcher = start();
    await watcher.ready;
    await waitFor('watch open', async () => (await openWatches(mark)) === 1, 10_000, 50);
    const t0 = Date.now();
    await watcher.stop();
    w = undefined;
    expect(Date.now() - t0).toBeLessThan(2_000);
    await waitFor('stream closed on the server', async () => (await openWatches(mark)) === 0, 10_000, 50);
  });

  it('is exposed by the kube target, leader or not', async () => {
    await env.api.createPod({ namespace: 'shop', name: 'cart-2', ip: '10.0.3.1', labels: { app: 'cart' } });
    const t = startKubeTarget({ kubeConfig: env.reconciler, peer: 'pods', namespace: SYSTEM_NS, dataplaneSelector: { app: 'dp' }, leaseDurationSeconds: 2, retryPeriodMs: 200 });
    try {
      await t.ready();
      expect(t.clientAttributes('10.0.3.1')).toEqual({ namespace: 'shop', serviceAccount: 'default', labels: { app: 'cart' } });
      expect(t.clientAttributes('10.9.9.9')).toBeNull();
    } finally {
      await t.stop();
    }
  });
});

// Faults the real API server cannot be made to produce at a chosen moment: a stream cut mid-way
// and 410 Gone on resume. The stand-in (test/fixtures/kube-api-standin.ts) serves just enough.
describe('pod watcher faults (API stand-in)', () => {
  let api: KubeApiStandin;
  let w: PodWatcher | undefined;

  beforeEach(async () => {
    api = await startKubeApiStandin();
  });
  afterEach(async () => {
    await w?.stop();
    w = undefined;
    await api.close();
  });

  const start = () => (w = startPodWatcher({ kubeConfig: api.kubeConfig(), backoff: { initialMs: 20, maxMs: 200 } }));

  it('survives a dropped stream: re-watches from the last resourceVersion without re-listing', async () => {
    const watcher = start();
    await watcher.ready;
    await waitFor('watch open', () => api.openWatches() === 1);
    api.dropWatches();
    // Changes while no watch is open are replayed from the resourceVersion we resume at.
    api.addPod({ namespace: 'shop', name: 'p', ip: '10.0.1.1', serviceAccount: 'sa', labels: {} });
    await waitFor('event after re-watch', () => watcher.clientAttributes('10.0.1.1'), 3_000);
    expect(watcher.stats().lists).toBe(1);
    expect(watcher.stats().watches).toBeGreaterThanOrEqual(2);
  });

  it('re-lists after 410 Gone and ends up consistent', async () => {
    api.addPod({ namespace: 'shop', name: 'gone-soon', ip: '10.0.2.1', labels: {} });
    const watcher = start();
    await watcher.ready;
    await waitFor('watch open', () => api.openWatches() === 1);
    // Drop the stream, change things, then forget history: the resumed watch gets 410.
    api.dropWatches();
    api.deletePod('shop', 'gone-soon');
    api.addPod({ namespace: 'shop', name: 'fresh', ip: '10.0.2.2', labels: { x: 'y' } });
    api.compact();
    await waitFor('re-list after 410', () => watcher.stats().lists >= 2, 3_000);
    await waitFor('consistent map', () => watcher.clientAttributes('10.0.2.2') && watcher.clientAttributes('10.0.2.1') === null, 3_000);
    api.addPod({ namespace: 'shop', name: 'later', ip: '10.0.2.3', labels: {} });
    await waitFor('watching again', () => watcher.clientAttributes('10.0.2.3'), 3_000);
    expect(watcher.stats().lists).toBe(2);
  });

  it('backs off when every resumed watch is Gone at once (no list storm)', async () => {
    const watcher = start();
    await watcher.ready;
    await waitFor('watch open', () => api.openWatches() === 1);
    // Every watch from now on is answered 410, whatever resourceVersion it asks for.
    api.compact({ forever: true });
    api.dropWatches();
    await new Promise((r) => setTimeout(r, 1_000));
    // Backoff 20 ms doubling to 200 ms: about eight lists in a second, not hundreds.
    expect(watcher.stats().lists).toBeGreaterThanOrEqual(2);
    expect(watcher.stats().lists).toBeLessThanOrEqual(12);
  });
});
