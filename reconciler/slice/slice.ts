// Fabric × peer → Slice: the part of the fabric one peer needs, and nothing else. Pure and
// deterministic: the same fabric always gives byte-identical JSON. Peers with no import/export
// relation to this peer do not appear (the "limit information sharing" promise).
import { X509Certificate } from 'node:crypto';
import { normalizeSerial } from '../pki/encoding.ts';
import type { ExportModel, FabricModel, PeerModel } from '../../schema/model.ts';
import type { Slice, SliceExport, SliceImport, SliceImportSource, SliceMember } from './types.ts';

/** Indexes over a whole fabric, built once and shared by the slices of every peer. */
export interface FabricIndex {
  fabric: FabricModel;
  peers: Map<string, PeerModel>;
  exports: Map<string, ExportModel>;
  /** `<exportingPeer>/<ns>/<name>` → importing peers, sorted. */
  importers: Map<string, string[]>;
  fingerprints: Map<string, string | null>;
}

const exportKey = (peer: string, namespace: string, name: string): string => `${peer}/${namespace}/${name}`;

const fingerprintCache = new Map<string, string | null>();

/** SHA-256 of a PEM certificate as lower-case hex; null if it does not parse. Cached by PEM text. */
export function certificateFingerprint(pem: string | null): string | null {
  if (pem === null) return null;
  let fp = fingerprintCache.get(pem);
  if (fp === undefined) {
    try {
      fp = new X509Certificate(pem).fingerprint256.replaceAll(':', '').toLowerCase();
    } catch {
      fp = null;
    }
    if (fingerprintCache.size > 100_000) fingerprintCache.clear();
    fingerprintCache.set(pem, fp);
  }
  return fp;
}

export function indexFabric(fabric: FabricModel): FabricIndex {
  const peers = new Map<string, PeerModel>();
  const exports = new Map<string, ExportModel>();
  const importers = new Map<string, string[]>();
  const fingerprints = new Map<string, string | null>();
  for (const p of fabric.peers) {
    peers.set(p.name, p);
    fingerprints.set(p.name, certificateFingerprint(p.certificatePem));
    for (const e of p.exports) exports.set(exportKey(p.name, e.namespace, e.name), e);
  }
  for (const p of fabric.peers) {
    for (const imp of p.imports) {
      for (const src of imp.sources) {
        const k = exportKey(src.peer, src.exportNamespace, src.exportName);
        if (!exports.has(k)) continue;
        const list = importers.get(k);
        if (!list) importers.set(k, [p.name]);
        else if (!list.includes(p.name)) list.push(p.name);
      }
    }
  }
  for (const list of importers.values()) list.sort();
  return { fabric, peers, exports, importers, fingerprints };
}

/** Keeps one FabricIndex up to date across revisions of a fabric. */
export interface FabricIndexer {
  /**
   * The index of `fabric`. Peers whose PeerModel object is the one of the previous revision (as the
   * incremental loader keeps them when none of their files changed) are not re-indexed. The index
   * returned is updated in place by the next call: take slices from it before that.
   */
  update(fabric: FabricModel): FabricIndex;
}

export function createFabricIndexer(): FabricIndexer {
  let index: FabricIndex | null = null;
  /** Export key → peers whose imports name it, whether or not the export exists. */
  const refs = new Map<string, Set<string>>();
  const refKeys = (p: PeerModel): string[] => p.imports.flatMap((imp) => imp.sources.map((src) => exportKey(src.peer, src.exportNamespace, src.exportName)));
  return {
    update(fabric) {
      if (!index) {
        index = indexFabric(fabric);
        for (const p of fabric.peers) {
          for (const k of refKeys(p)) {
            let set = refs.get(k);
            if (!set) refs.set(k, (set = new Set()));
            set.add(p.name);
          }
        }
        return index;
      }
      const idx = index;
      const removed: PeerModel[] = [];
      const added: PeerModel[] = [];
      const next = new Set<string>();
      for (const p of fabric.peers) {
        next.add(p.name);
        const old = idx.peers.get(p.name);
        if (old === p) continue;
        if (old) removed.push(old);
        added.push(p);
      }
      if (next.size !== idx.peers.size + added.length - removed.length) {
        for (const [name, old] of idx.peers) if (!next.has(name)) removed.push(old);
      }
      const affected = new Set<string>();
      for (const p of removed) {
        idx.peers.delete(p.name);
        idx.fingerprints.delete(p.name);
        for (const e of p.exports) {
          const k = exportKey(p.name, e.namespace, e.name);
          idx.exports.delete(k);
          affected.add(k);
        }
        for (const k of refKeys(p)) {
          refs.get(k)?.delete(p.name);
          affected.add(k);
        }
      }
      for (const p of added) {
        idx.peers.set(p.name, p);
        idx.fingerprints.set(p.name, certificateFingerprint(p.certificatePem));
        for (const e of p.exports) {
          const k = exportKey(p.name, e.namespace, e.name);
          idx.exports.set(k, e);
          affected.add(k);
        }
        for (const k of refKeys(p)) {
          let set = refs.get(k);
          if (!set) refs.set(k, (set = new Set()));
          set.add(p.name);
          affected.add(k);
        }
      }
      for (const k of affected) {
        const set = refs.get(k);
        if (set && set.size === 0) refs.delete(k);
        if (set && set.size > 0 && idx.exports.has(k)) idx.importers.set(k, [...set].sort());
        else idx.importers.delete(k);
      }
      // Peers keep the fabric's order (indexFabric inserts them in it).
      if (added.length > 0 || removed.length > 0) {
        const ordered = new Map<string, PeerModel>();
        for (const p of fabric.peers) ordered.set(p.name, idx.peers.get(p.name)!);
        idx.peers = ordered;
      }
      idx.fabric = fabric;
      return idx;
    },
  };
}

const serialCache = new Map<string, string | null>();

/** Serial number of a PEM certificate, normalised as fabric.yaml revocations are; cached by PEM text. */
function certificateSerial(pem: string | null): string | null {
  if (pem === null) return null;
  let serial = serialCache.get(pem);
  if (serial === undefined) {
    try {
      serial = normalizeSerial(new X509Certificate(pem).serialNumber);
    } catch {
      serial = null;
    }
    if (serialCache.size > 100_000) serialCache.clear();
    serialCache.set(pem, serial);
  }
  return serial;
}

/** A member whose committed certificate is revoked, by fingerprint or by serial, is left out of slices. */
function isRevoked(fabric: FabricModel, index: FabricIndex, peer: string): boolean {
  const fingerprint = index.fingerprints.get(peer) ?? null;
  if (fingerprint !== null && fabric.revoked.fingerprints.some((f) => f.replaceAll(':', '').toLowerCase() === fingerprint)) return true;
  if (fabric.revoked.serials.length === 0) return false;
  const serial = certificateSerial(index.peers.get(peer)?.certificatePem ?? null);
  return serial !== null && fabric.revoked.serials.some((s) => normalizeSerial(s) === serial);
}

/** The slice of one peer, from a prebuilt index (use `slice` for a one-off). */
export function sliceFromIndex(index: FabricIndex, peerName: string): Slice {
  const { fabric } = index;
  const self = index.peers.get(peerName);
  // Peer labels come only from fabric.yaml (admin-attested), never from a peer's own directory.
  const labelsOf = (name: string): Record<string, string> => ({ ...(fabric.peerLabels[name] ?? {}) });
  const revoked = { serials: [...fabric.revoked.serials].sort(), fingerprints: [...fabric.revoked.fingerprints].sort() };
  if (!self) {
    // Not (or no longer) a member: an empty slice, so everything this peer had is torn down.
    return { fabric: fabric.name, self: { name: peerName, labels: {}, gateways: [], certificatePem: null }, caCertificates: [...fabric.caCertificates], revoked, members: [], exports: [], imports: [], policies: [] };
  }

  const memberGateways = new Map<string, boolean>(); // peer → do we connect to it (need gateways)?
  const imports: SliceImport[] = self.imports.map((imp) => ({
    name: imp.name,
    namespace: imp.namespace,
    labels: { ...imp.labels },
    port: imp.port,
    targetPort: imp.targetPort,
    listenPort: imp.listenPort,
    lbScheme: imp.lbScheme,
    sessionAffinity: imp.sessionAffinity,
    sources: imp.sources.map((src): SliceImportSource => {
      const peer = index.peers.get(src.peer);
      const exp = index.exports.get(exportKey(src.peer, src.exportNamespace, src.exportName));
      // A revoked exporter is treated as absent: no tunnel is opened to it.
      const resolved = peer !== undefined && exp !== undefined && src.peer !== peerName && !isRevoked(fabric, index, src.peer);
      if (resolved) memberGateways.set(src.peer, true);
      return {
        peer: src.peer,
        exportName: src.exportName,
        exportNamespace: src.exportNamespace,
        resolved,
        exportLabels: resolved ? { ...exp.labels } : {},
        exportPort: resolved ? exp.port : null,
        peerLabels: resolved ? labelsOf(src.peer) : {},
        gateways: resolved ? peer.gateways.map((g) => ({ ...g })) : [],
      };
    }),
    source: imp.source,
  }));

  const exports: SliceExport[] = self.exports.map((e) => {
    const importers = (index.importers.get(exportKey(peerName, e.namespace, e.name)) ?? []).filter((p) => p !== peerName);
    for (const p of importers) if (!memberGateways.has(p)) memberGateways.set(p, false);
    return { name: e.name, namespace: e.namespace, labels: { ...e.labels }, host: e.host, port: e.port, importers: [...importers], source: e.source };
  });

  const members: SliceMember[] = [...memberGateways.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, connects]) => {
      const peer = index.peers.get(name)!;
      return {
        name,
        labels: labelsOf(name),
        certificateFingerprint: index.fingerprints.get(name) ?? null,
        gateways: connects ? peer.gateways.map((g) => ({ ...g })) : [],
      };
    })
    // A revoked member stays out: its tunnels close and new ones are refused.
    .filter((m) => !isRevoked(fabric, index, m.name));

  return {
    fabric: fabric.name,
    self: { name: self.name, labels: labelsOf(self.name), gateways: self.gateways.map((g) => ({ ...g })), certificatePem: self.certificatePem },
    caCertificates: [...fabric.caCertificates],
    revoked,
    members,
    exports,
    imports,
    policies: self.policies.map((p) => ({ ...p })),
  };
}

export function slice(fabric: FabricModel, peerName: string): Slice {
  return sliceFromIndex(indexFabric(fabric), peerName);
}

/** Every peer's slice, sharing one index (1,000 peers in one pass). */
export function sliceAll(fabric: FabricModel): Map<string, Slice> {
  const index = indexFabric(fabric);
  return new Map(fabric.peers.map((p) => [p.name, sliceFromIndex(index, p.name)]));
}
