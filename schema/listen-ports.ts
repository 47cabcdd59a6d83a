// Where a peer's data plane listens for each of its imports. ClusterLink leases a listen port per
// import when targetPort is absent, so two imports may use the same Service port in two namespaces.
// We need the same freedom, but every reconciler replica and `clgo plan` must agree without a
// lease store, so the assignment is a pure function of the peer's imports:
//  1. an explicit targetPort is kept (two equal ones are a port-conflict error, reported by the loader);
//  2. otherwise the import listens on its port, unless that is taken: by an explicit targetPort, or
//     by an import earlier in (namespace, name) order;
//  3. an import whose port is taken listens on a port derived from a hash of `<namespace>/<name>`
//     in LEASE_RANGE, probing upwards past ports in use. Adding an import changes no other
//     import's port unless the new one sorts first among imports sharing a port.
export const LEASE_RANGE = { first: 20000, size: 10000 } as const;

export interface ListenPortInput {
  namespace: string;
  name: string;
  port: number;
  targetPort: number | null;
}

/** FNV-1a 32-bit: stable across processes and versions (unlike a runtime hash). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** Listen port of each import, in the order given (which must be the peer's (namespace, name) order). */
export function assignListenPorts(imports: readonly ListenPortInput[]): number[] {
  const used = new Set<number>();
  for (const i of imports) if (i.targetPort !== null) used.add(i.targetPort);
  const out: number[] = imports.map((i) => i.targetPort ?? 0);
  const leased: number[] = [];
  imports.forEach((i, k) => {
    if (i.targetPort !== null) return;
    if (!used.has(i.port)) {
      used.add(i.port);
      out[k] = i.port;
    } else leased.push(k);
  });
  for (const k of leased) {
    const i = imports[k]!;
    let offset = fnv1a(`${i.namespace}/${i.name}`) % LEASE_RANGE.size;
    for (let n = 0; n < LEASE_RANGE.size && used.has(LEASE_RANGE.first + offset); n++) offset = (offset + 1) % LEASE_RANGE.size;
    out[k] = LEASE_RANGE.first + offset;
    used.add(out[k]);
  }
  return out;
}
