// The revision of a slice's authorization inputs, shared by the xDS resources (Envoy tunnel pods)
// and the embedded data plane's config: a module of its own so that the embedded data plane
// (clgo run --local) does not load the Envoy protos and gRPC with resources.ts.
import { createHash } from 'node:crypto';
import type { Slice } from '../slice/types.ts';

/**
 * Hash of everything the right of a tunnel depends on (policies, members and their pins,
 * revocations, which peers import which export, which exporters an import may use) and nothing
 * else: data planes re-check their open tunnels when it changes, not when only addresses or ports
 * do (a gateway moving, an export's target, an import's port).
 */
export function authzInputsHash(slice: Slice): string {
  const inputs = {
    policies: slice.policies,
    members: slice.members.map((m) => [m.name, m.labels, m.certificateFingerprint]),
    revoked: slice.revoked,
    exports: slice.exports.map((e) => [e.namespace, e.name, e.labels, e.importers]),
    imports: slice.imports.map((i) => [i.namespace, i.name, i.labels, i.sources.map((s) => [s.peer, s.exportNamespace, s.exportName, s.resolved, s.exportLabels])]),
    self: slice.self.labels,
  };
  return createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 32);
}
