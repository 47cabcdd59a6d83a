import { describe, expect, it } from 'vitest';
import { ANNOTATION_IMPORT, ANNOTATION_SOURCE, ANNOTATION_SPEC_HASH, FIELD_MANAGER, LABEL_MANAGED_BY, LABEL_PEER, planServices, serviceManifest, type PlanOptions, type ServiceObject } from './services.ts';
import type { SliceImport } from '../slice/types.ts';

const opts: PlanOptions = { peer: 'east', revision: 'r1', fieldManager: FIELD_MANAGER, createNamespaces: false };

function imp(namespace: string, name: string, port = 80, extra: Partial<SliceImport> = {}): SliceImport {
  return { name, namespace, labels: {}, port, targetPort: null, listenPort: extra.targetPort ?? port, lbScheme: 'round-robin', sessionAffinity: 'None', sources: [], source: { file: 'peers/east/imports/x.yaml', line: 3, column: 1 }, ...extra };
}

function existingFrom(i: SliceImport, peer = 'east'): ServiceObject {
  const m = serviceManifest(i, { peer });
  return { namespace: m.metadata.namespace, name: m.metadata.name, labels: m.metadata.labels, annotations: m.metadata.annotations };
}

describe('planServices', () => {
  it('builds a selector-less ClusterIP Service per import with ownership labels, annotations and a tcp port', () => {
    const p = planServices([imp('shop', 'cart', 8080, { targetPort: 18080, labels: { tier: 'web' } })], [], opts);
    expect(p.apply).toHaveLength(1);
    const m = p.apply[0]!;
    expect(m.metadata.labels).toEqual({ tier: 'web', [LABEL_MANAGED_BY]: 'clusterlink-gitops', [LABEL_PEER]: 'east' });
    expect(m.metadata.annotations[ANNOTATION_IMPORT]).toBe('shop/cart');
    expect(m.metadata.annotations[ANNOTATION_SOURCE]).toBe('peers/east/imports/x.yaml:3');
    expect(m.metadata.annotations[ANNOTATION_SPEC_HASH]).toMatch(/^[0-9a-f]{32}$/);
    // No selector: it could only match Pods in shop; the endpoints are EndpointSlices we write.
    expect(m.spec).toEqual({ type: 'ClusterIP', ports: [{ name: 'tcp', protocol: 'TCP', port: 8080, targetPort: 18080 }] });
  });

  it('defaults targetPort to port', () => {
    expect(planServices([imp('a', 'b', 443)], [], opts).apply[0]?.spec.ports[0]?.targetPort).toBe(443);
  });

  it('does not let import labels override ownership labels', () => {
    const p = planServices([imp('a', 'b', 80, { labels: { [LABEL_MANAGED_BY]: 'helm', [LABEL_PEER]: 'west' } })], [], opts);
    expect(p.apply[0]?.metadata.labels[LABEL_MANAGED_BY]).toBe('clusterlink-gitops');
    expect(p.apply[0]?.metadata.labels[LABEL_PEER]).toBe('east');
  });

  it('skips owned Services whose hash matches, and applies those that differ', () => {
    const same = imp('a', 'same');
    const changed = imp('a', 'changed', 81);
    const p = planServices([same, changed], [existingFrom(same), existingFrom(imp('a', 'changed', 80))], opts);
    expect(p.apply.map((m) => m.metadata.name)).toEqual(['changed']);
    expect(p.unchanged).toEqual([{ namespace: 'a', name: 'same' }]);
    expect(p.prune).toEqual([]);
  });

  it('the hash does not depend on the revision or on key order', () => {
    const a = serviceManifest(imp('a', 'b', 80, { labels: { x: '1', y: '2' } }), opts);
    const b = serviceManifest(imp('a', 'b', 80, { labels: { y: '2', x: '1' } }), { peer: opts.peer });
    expect(a.metadata.annotations[ANNOTATION_SPEC_HASH]).toBe(b.metadata.annotations[ANNOTATION_SPEC_HASH]);
    expect(planServices([imp('a', 'b')], [existingFrom(imp('a', 'b'))], { ...opts, revision: 'r2' }).apply).toEqual([]);
  });

  it('prunes owned Services without an import, never foreign ones', () => {
    const foreign: ServiceObject = { namespace: 'a', name: 'theirs', labels: { app: 'x' }, annotations: {} };
    const otherPeer = existingFrom(imp('a', 'west-owned'), 'west');
    const p = planServices([], [existingFrom(imp('a', 'gone')), foreign, otherPeer], opts);
    expect(p.prune).toEqual([{ namespace: 'a', name: 'gone' }]);
  });

  it('reports a same-named Service it does not own as a conflict and leaves it alone', () => {
    const foreign: ServiceObject = { namespace: 'shop', name: 'cart', labels: { [LABEL_MANAGED_BY]: 'Helm' }, annotations: {} };
    const otherPeer = existingFrom(imp('shop', 'pay'), 'west');
    const p = planServices([imp('shop', 'cart'), imp('shop', 'pay')], [foreign, otherPeer], opts);
    expect(p.apply).toEqual([]);
    expect(p.prune).toEqual([]);
    expect(p.conflicts.map((c) => c.name)).toEqual(['cart', 'pay']);
    expect(p.conflicts[0]?.reason).toContain('Helm');
    expect(p.conflicts[1]?.reason).toContain('peer west');
  });

  it('reports duplicate imports once', () => {
    const p = planServices([imp('a', 'b'), imp('a', 'b', 81)], [], opts);
    expect(p.apply).toHaveLength(1);
    expect(p.conflicts).toHaveLength(1);
    expect(p.conflicts[0]?.reason).toContain('duplicate');
  });

  it('handles missing namespaces: skipped unless createNamespaces', () => {
    const known = new Set(['a']);
    const skip = planServices([imp('a', 'x'), imp('new', 'y')], [], { ...opts, knownNamespaces: known });
    expect(skip.missingNamespaces).toEqual(['new']);
    expect(skip.apply.map((m) => m.metadata.name)).toEqual(['x']);
    const create = planServices([imp('a', 'x'), imp('new', 'y')], [], { ...opts, knownNamespaces: known, createNamespaces: true });
    expect(create.missingNamespaces).toEqual(['new']);
    expect(create.apply.map((m) => m.metadata.name)).toEqual(['x', 'y']);
  });

  it('orders its output deterministically', () => {
    const p = planServices([imp('b', 'z'), imp('a', 'y'), imp('a', 'x')], [], opts);
    expect(p.apply.map((m) => `${m.metadata.namespace}/${m.metadata.name}`)).toEqual(['a/x', 'a/y', 'b/z']);
  });
});
