// Builders for slices and imports, and a bounded wait, shared by the kube tests and the bench.
import type { Slice, SliceImport } from '../../reconciler/slice/types.ts';

export function imp(namespace: string, name: string, port = 8080, extra: Partial<SliceImport> = {}): SliceImport {
  return {
    name,
    namespace,
    labels: {},
    port,
    targetPort: null,
    lbScheme: 'round-robin',
    sessionAffinity: 'None',
    sources: [],
    source: { file: `peers/east/imports/${namespace}-${name}.yaml`, line: 1, column: 1 },
    ...extra,
  };
}

export function slice(imports: SliceImport[], fabric = 'test'): Slice {
  return {
    fabric,
    self: { name: 'east', labels: {}, gateways: [], certificatePem: null },
    caCertificates: [],
    revoked: { serials: [], fingerprints: [] },
    members: [],
    exports: [],
    imports,
    policies: [],
  };
}

/** Polls until check() is truthy; throws after timeoutMs (every wait in these tests is bounded). */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 5_000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
