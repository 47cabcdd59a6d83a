// Pod watch: IP → client attributes, driven by the real client-node Watch against the stand-in.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startKubeApiStandin, type KubeApiStandin } from '../fixtures/kube-api-standin.ts';
import { startPodWatcher, type PodWatcher } from '../../reconciler/kube/pods.ts';
import { waitFor } from './helpers.ts';
import { startKubeTarget } from '../../reconciler/kube/index.ts';

describe('pod watcher', () => {
  let api: KubeApiStandin;
  let w: PodWatcher | undefined;

  beforeEach(async () => {
    api = await startKubeApiStandin({ bookmarkIntervalMs: 100 });
  });
  afterEach(async () => {
    await w?.stop();
    w = undefined;
    await api.close();
  });

  const start = () => (w = startPodWatcher({ kubeConfig: api.kubeConfig(), backoff: { initialMs: 20, maxMs: 200 } }));

  it('maps pod IPs to namespace, service account and labels, following adds and deletes', async () => {
    api.addPod({ namespace: 'shop', name: 'cart-1', ip: '10.0.0.1', serviceAccount: 'cart', labels: { app: 'cart' } });
    const watcher = start();
    await watcher.ready;
    expect(watcher.clientAttributes('10.0.0.1')).toEqual({ namespace: 'shop', serviceAccount: 'cart', labels: { app: 'cart' } });
    expect(watcher.clientAttributes('10.0.0.9')).toBeNull();

    api.addPod({ namespace: 'bank', name: 'ledger-1', ip: '10.0.0.2', serviceAccount: 'ledger', labels: { app: 'ledger' } });
    await waitFor('added pod', () => watcher.clientAttributes('10.0.0.2'));
    expect(watcher.clientAttributes('10.0.0.2')?.namespace).toBe('bank');

    // Relabel: MODIFIED replaces the attributes.
    api.addPod({ namespace: 'bank', name: 'ledger-1', ip: '10.0.0.2', serviceAccount: 'ledger', labels: { app: 'ledger', tier: 'db' } });
    await waitFor('relabelled pod', () => watcher.clientAttributes('10.0.0.2')?.labels.tier === 'db');

    api.deletePod('shop', 'cart-1');
    await waitFor('deleted pod gone', () => watcher.clientAttributes('10.0.0.1') === null);
    expect(watcher.size()).toBe(1);
  });

  it('does not drop a reused IP when the old pod is deleted after the new one appeared', async () => {
    api.addPod({ namespace: 'a', name: 'old', ip: '10.0.0.5', labels: { v: 'old' } });
    const watcher = start();
    await watcher.ready;
    api.addPod({ namespace: 'a', name: 'new', ip: '10.0.0.5', labels: { v: 'new' } });
    await waitFor('new pod owns IP', () => watcher.clientAttributes('10.0.0.5')?.labels.v === 'new');
    api.deletePod('a', 'old');
    await new Promise((r) => setTimeout(r, 100));
    expect(watcher.clientAttributes('10.0.0.5')?.labels.v).toBe('new');
  });

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
  });

  it('advances its resourceVersion on bookmarks', async () => {
    const watcher = start();
    await watcher.ready;
    const rv0 = Number(watcher.stats().resourceVersion);
    // Unrelated writes bump the global resourceVersion; a bookmark tells the watcher.
    api.seed('configmaps', { metadata: { name: 'x', namespace: 'default' }, data: {} });
    await waitFor('bookmark', () => Number(watcher.stats().resourceVersion) > rv0, 2_000);
  });

  it('stop() ends the watch promptly', async () => {
    const watcher = start();
    await watcher.ready;
    await waitFor('watch open', () => api.openWatches() === 1);
    const t0 = Date.now();
    await watcher.stop();
    w = undefined;
    expect(Date.now() - t0).toBeLessThan(1_000);
    await waitFor('stream closed', () => api.openWatches() === 0, 2_000);
  });

  it('is exposed by the kube target, leader or not', async () => {
    api.addPod({ namespace: 'shop', name: 'cart-1', ip: '10.0.3.1', serviceAccount: 'cart', labels: { app: 'cart' } });
    const t = startKubeTarget({ kubeConfig: api.kubeConfig(), peer: 'east', namespace: 'clusterlink-system', dataplaneSelector: { app: 'dp' }, leaseDurationSeconds: 1, retryPeriodMs: 100 });
    try {
      await t.ready();
      expect(t.clientAttributes('10.0.3.1')).toEqual({ namespace: 'shop', serviceAccount: 'cart', labels: { app: 'cart' } });
      expect(t.clientAttributes('10.9.9.9')).toBeNull();
    } finally {
      await t.stop();
    }
  });
});
