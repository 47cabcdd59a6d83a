import { describe, expect, it } from 'vitest';
import { endpointSliceManifest, endpointsByFamily, planEndpointSlices, sliceName, type EndpointSliceTarget } from './endpointslices.ts';
import type { DataplaneEndpoint } from './pods.ts';
import type { ServiceObject } from './services.ts';

const cart: EndpointSliceTarget = { namespace: 'shop', name: 'cart', port: 18080, uid: 'u-cart' };
const pods: DataplaneEndpoint[] = [
  { namespace: 'clusterlink-system', name: 't-2', ips: ['10.0.0.2', 'fd00::2'] },
  { namespace: 'clusterlink-system', name: 't-1', ips: ['10.0.0.1'], nodeName: 'n1' },
];

function existingFrom(t: EndpointSliceTarget, family: 'IPv4' | 'IPv6', p: DataplaneEndpoint[] = pods, peer = 'east'): ServiceObject {
  const m = endpointSliceManifest(t, family, endpointsByFamily(p)[family], peer);
  return { namespace: m.metadata.namespace, name: m.metadata.name, labels: m.metadata.labels, annotations: m.metadata.annotations };
}

describe('planEndpointSlices', () => {
  it('one slice per Service and address family, endpoints sorted by pod, port = listen port', () => {
    const p = planEndpointSlices([cart], pods, [], 'east');
    expect(p.apply.map((m) => [m.metadata.name, m.addressType, m.endpoints.map((e) => e.addresses[0])])).toEqual([
      ['cart-clgo-ipv4', 'IPv4', ['10.0.0.1', '10.0.0.2']],
      ['cart-clgo-ipv6', 'IPv6', ['fd00::2']],
    ]);
    const m = p.apply[0]!;
    expect(m.ports).toEqual([{ name: 'tcp', port: 18080, protocol: 'TCP' }]);
    expect(m.metadata.labels).toEqual({ 'kubernetes.io/service-name': 'cart', 'endpointslice.kubernetes.io/managed-by': 'clusterlink-gitops', 'clusterlink.net/peer': 'east' });
    expect(m.metadata.ownerReferences).toEqual([{ apiVersion: 'v1', kind: 'Service', name: 'cart', uid: 'u-cart' }]);
    expect(m.endpoints[0]).toEqual({ addresses: ['10.0.0.1'], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: 'Pod', namespace: 'clusterlink-system', name: 't-1' }, nodeName: 'n1' });
  });

  it('an empty IPv4 slice without ready pods, no IPv6 slice without IPv6 addresses (an old one is pruned)', () => {
    const p = planEndpointSlices([cart], [], [existingFrom(cart, 'IPv6')], 'east');
    expect(p.apply.map((m) => [m.metadata.name, m.endpoints.length])).toEqual([['cart-clgo-ipv4', 0]]);
    expect(p.prune).toEqual([{ namespace: 'shop', name: sliceName('cart', 'IPv6') }]);
  });

  it('writes nothing when the hashes match, whatever order the pods come in', () => {
    const p = planEndpointSlices([cart], [...pods].reverse(), [existingFrom(cart, 'IPv4'), existingFrom(cart, 'IPv6')], 'east');
    expect(p).toEqual({ apply: [], prune: [], unchanged: 2, conflicts: [] });
  });

  it('re-applies on a port or endpoint change only', () => {
    const existing = [existingFrom(cart, 'IPv4'), existingFrom(cart, 'IPv6')];
    expect(planEndpointSlices([{ ...cart, port: 1 }], pods, existing, 'east').apply).toHaveLength(2);
    const fewer = planEndpointSlices([cart], pods.slice(1), existing, 'east');
    expect(fewer.apply.map((m) => m.metadata.name)).toEqual(['cart-clgo-ipv4']);
    expect(fewer.prune).toEqual([{ namespace: 'shop', name: 'cart-clgo-ipv6' }]);
  });

  it('never applies over or prunes a slice it does not own', () => {
    const foreign: ServiceObject = { namespace: 'shop', name: 'cart-clgo-ipv4', labels: { 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' }, annotations: {} };
    const otherPeer = existingFrom({ namespace: 'shop', name: 'pay', port: 80 }, 'IPv4', pods, 'west');
    const p = planEndpointSlices([cart], pods.slice(1), [foreign, otherPeer], 'east');
    expect(p.apply).toEqual([]);
    expect(p.prune).toEqual([]);
    expect(p.conflicts).toEqual([{ namespace: 'shop', name: 'cart', reason: expect.stringContaining('endpointslice-controller.k8s.io') }]);
  });
});
