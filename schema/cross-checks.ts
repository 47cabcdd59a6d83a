// Checks across peers and files once every peer is read: gateways, import sources, the Fabric object.
import { closest } from 'fastest-levenshtein';
import type { z } from 'zod';
import { at, closeEnough, Diagnostics, positionOf } from './diagnostics.ts';
import type { kindSchemas } from './kinds.ts';
import type { Pass } from './layout.ts';
import type { FabricModel, ImportModel, LoadResult, PeerModel, SourceRef } from './model.ts';
import type { ParsedObject, PeerDraft } from './objects.ts';

/** The checks after the per-file pass, once peers and their cross-references are known. */
export function finish(pass: Pass, peerModels: PeerModel[]): LoadResult {
  const { diags, fabricObj } = pass;
  if (pass.sawFabricFile && !fabricObj && diags.errors.length === 0) {
    diags.error(at('fabric.yaml'), 'missing-fabric', '', 'fabric.yaml holds no Fabric object', 'add the Fabric document (apiVersion: clusterlink.net/v1alpha1, kind: Fabric, metadata.name, spec.caCertificates)');
  }
  if (!fabricObj || diags.errors.length > 0) return { ok: false, errors: diags.errors, warnings: diags.warnings };
  const f = fabricObj.data as z.infer<typeof kindSchemas.Fabric>;
  const peerLabels: Record<string, Record<string, string>> = {};
  const names = new Set(peerModels.map((p) => p.name));
  for (const [name, attested] of Object.entries(f.spec.peers ?? {})) {
    peerLabels[name] = attested.labels ?? {};
    if (!names.has(name)) {
      // A warning, not an error: a peer's team deleting its directory must not be blocked by fabric.yaml.
      diags.warn(positionOf(fabricObj, ['spec', 'peers', name], true), 'attested-peer-missing', `spec.peers.${name}`, `fabric.yaml attests labels of peer "${name}", which has no peers/${name}/ directory`, 'remove the entry, or fix the name (a typo leaves the real peer without its labels)');
    }
  }
  const fabric: FabricModel = {
    name: f.metadata.name,
    caCertificates: f.spec.caCertificates,
    revoked: { serials: f.spec.revoked?.serials ?? [], fingerprints: f.spec.revoked?.fingerprints ?? [] },
    repo: { requireSignedCommits: f.spec.repo?.requireSignedCommits ?? false, allowedSigningKeys: f.spec.repo?.allowedSigningKeys ?? [] },
    peers: peerModels,
    peerLabels,
    source: fabricObj.source,
  };
  return { ok: true, fabric, warnings: diags.warnings };
}

export const missingFabric = (diags: Diagnostics): void =>
  diags.error(at('fabric.yaml'), 'missing-fabric', '', 'fabric.yaml is missing', 'create fabric.yaml with kind: Fabric (clgo create fabric does it)');

/** `<ns>/<name>` of each export of a peer (computed once per PeerModel). */
const exportKeysOf = new WeakMap<PeerModel, Set<string>>();
function exportKeys(p: PeerModel): Set<string> {
  let keys = exportKeysOf.get(p);
  if (!keys) {
    keys = new Set(p.exports.map((e) => `${e.namespace}/${e.name}`));
    exportKeysOf.set(p, keys);
  }
  return keys;
}

export function sameExportKeys(a: PeerModel, b: PeerModel): boolean {
  if (a.exports.length !== b.exports.length) return false;
  for (let i = 0; i < a.exports.length; i++) {
    const x = a.exports[i]!;
    const y = b.exports[i]!;
    if (x.namespace !== y.namespace || x.name !== y.name) return false;
  }
  return true;
}

export function checkGateways(peersList: PeerModel[], diags: Diagnostics): void {
  const gatewayOwner = new Map<string, string>();
  for (const p of peersList) {
    for (const g of p.gateways) {
      const key = `${g.host}:${g.port}`;
      const other = gatewayOwner.get(key);
      if (other && other !== p.name) diags.error(p.source, 'duplicate-gateway', 'spec.gateways', `gateway ${key} is also peer ${other}'s`, 'each peer needs its own gateway address');
      gatewayOwner.set(key, p.name);
    }
  }
}

/**
 * The cross-reference checks of one peer's imports. What they read of other peers: the peers
 * named by its sources (`deps`), and the list of all peer names when a "did you mean" was needed.
 */
function sourcePosition(obj: ParsedObject | undefined, imp: ImportModel, i: number): SourceRef {
  return obj ? positionOf(obj, ['spec', 'sources', i]) : imp.source;
}

export function checkImports(p: PeerModel, draft: PeerDraft | undefined, byName: Map<string, PeerModel>, allNames: () => string[], diags: Diagnostics, deps: Set<string> | null): { usedNames: boolean } {
  let usedNames = false;
  const objects = draft?.importObjects;
  const ports = new Map<number, ImportModel>();
  for (const imp of p.imports) {
    // Positions only when reporting: computing them needs the file's full syntax tree.
    const obj = objects?.get(imp);
    const listenPort = imp.listenPort;
    const clash = ports.get(listenPort);
    if (clash) {
      const where = obj ? positionOf(obj, ['spec', (obj.data as z.infer<typeof kindSchemas.Import>).spec.targetPort !== undefined ? 'targetPort' : 'port']) : imp.source;
      diags.error(where, 'port-conflict', 'spec.targetPort', `import ${imp.namespace}/${imp.name} listens on targetPort ${listenPort}, already used by import ${clash.namespace}/${clash.name} (${clash.source.file}:${clash.source.line})`, 'give one of them another targetPort, or drop targetPort and let the listen port be assigned');
    }
    ports.set(listenPort, imp);
    const sources = imp.sources;
    for (let i = 0; i < sources.length; i++) {
      const src = sources[i]!;
      deps?.add(src.peer);
      const exporter = byName.get(src.peer);
      if (!exporter) {
        usedNames = true;
        const names = allNames();
        const s = names.length ? closeEnough(src.peer, closest(src.peer, names)) : null;
        diags.error(sourcePosition(obj, imp, i), 'unknown-peer', `spec.sources[${i}].peer`, `import source names peer "${src.peer}", which is not in the fabric`, s ? `did you mean "${s}"? (peers live in peers/<name>/)` : 'add the peer (peers/<name>/peer.yaml), fix the name, or remove this source if the peer left the fabric');
      } else if (!exportKeys(exporter).has(`${src.exportNamespace}/${src.exportName}`)) {
        const candidates = exporter.exports.map((e) => `${e.namespace}/${e.name}`);
        const s = candidates.length ? closeEnough(`${src.exportNamespace}/${src.exportName}`, closest(`${src.exportNamespace}/${src.exportName}`, candidates)) : null;
        diags.error(sourcePosition(obj, imp, i), 'unknown-export', `spec.sources[${i}].exportName`, `peer ${src.peer} has no export ${src.exportNamespace}/${src.exportName}`, s ? `did you mean ${s}? (see peers/${src.peer}/exports/)` : candidates.length ? `peer ${src.peer} exports ${candidates.slice(0, 5).join(', ')}${candidates.length > 5 ? ', …' : ''} (see peers/${src.peer}/exports/)` : `peer ${src.peer} exports nothing yet: ask its owners to add peers/${src.peer}/exports/${src.exportName}.yaml`);
      } else if (src.peer === p.name) {
        diags.warn(sourcePosition(obj, imp, i), 'self-import', `spec.sources[${i}].peer`, `peer ${p.name} imports its own export ${src.exportNamespace}/${src.exportName}`, 'use the local Service directly instead');
      }
    }
    // A source listed twice: reported at each repetition.
    for (let i = 1; i < sources.length; i++) {
      const src = sources[i]!;
      let repeated = false;
      for (let j = 0; j < i && !repeated; j++) {
        const o = sources[j]!;
        repeated = o.peer === src.peer && o.exportNamespace === src.exportNamespace && o.exportName === src.exportName;
      }
      if (repeated) diags.error(sourcePosition(obj, imp, i), 'duplicate-source', `spec.sources[${i}]`, `source ${src.peer}/${src.exportNamespace}/${src.exportName} is listed twice`, 'remove the duplicate');
    }
  }
  return { usedNames };
}
