// ClusterLink objects read from live clusters → the files of a fabric repository, plus what could
// not carry over. Pure: snapshots in, file texts and report items out (the CLI reads the clusters
// and writes the files).
//
// How ClusterLink's model maps onto the repository:
// - every cluster is one peer; its Exports, Imports and (Privileged)AccessPolicies go unchanged
//   (minus server fields) into peers/<peer>/{exports,imports,policies}/;
// - ClusterLink's Peer objects describe *remote* peers (name, gateways, the labels the remote
//   reported): they become the gateways of peers/<remote>/peer.yaml, where the remote peer's own
//   team owns them;
// - certificates cannot carry over (see certificateItem), and peer labels, which other peers'
//   policies trust, need the fabric admin's attestation.
import { isMap, parseDocument, stringify } from 'yaml';
import { API_VERSION } from '../../schema/kinds.ts';
import { peerGateways, type ClusterLinkObject } from './objects.ts';

export type ClusterLinkKind = 'Export' | 'Import' | 'AccessPolicy' | 'PrivilegedAccessPolicy';
export const MIGRATED_KINDS: readonly ClusterLinkKind[] = ['Export', 'Import', 'AccessPolicy', 'PrivilegedAccessPolicy'];

/** Everything read from one cluster. */
export interface ClusterSnapshot {
  /** kubeconfig context the cluster was read through. */
  context: string;
  /** Which peer this cluster is, and how that was found out (for the report). */
  peer: { name: string; source: string };
  /** The labels the cluster's control plane gives its own peer (`--peer-label`), or null if unknown. */
  labels: { values: Record<string, string>; source: string } | null;
  /** The ClusterLink ingress the cluster reports for itself (the operator's Instance status), if any. */
  ingress: { host: string; port: number; source: string } | null;
  /** ClusterLink Peer objects: this cluster's view of the *other* peers. */
  peers: ClusterLinkObject[];
  objects: Record<ClusterLinkKind, ClusterLinkObject[]>;
}

export interface MigrationOptions {
  /** Name of the target fabric (fabric.yaml metadata.name), for the commands the report suggests. */
  fabricName: string;
  /** The repository directory as the user typed it, for the commands the report suggests. */
  repoDir: string;
  /** Peers the repository already has (peers/<peer>/): a peer known only from Peer objects is then left as it is. */
  existingPeers?: ReadonlySet<string>;
}

/** First line of the peer.yaml written for a peer known only from other clusters: such a file may be replaced by a later migration of that peer. */
export const REMOTE_ONLY_MARK = 'known only from the other clusters\' Peer objects';

/** A validate diagnostic an item accounts for (until the item is done). */
export interface ExpectedDiagnostic {
  code: string;
  file: string;
}

export interface ReportItem {
  /** `todo`: must be done by hand before the fabric works; `note`: changed or worth a look. */
  severity: 'todo' | 'note';
  topic: 'certificate' | 'labels' | 'gateways' | 'peer' | 'object' | 'server-fields';
  peer: string | null;
  message: string;
  /** What to do, as commands or edits. */
  action: string[];
  /** The `clgo validate` errors this item explains while it is not done. */
  expects: ExpectedDiagnostic[];
}

export interface PeerSummary {
  name: string;
  /** The context it was read from, or null for a peer known only from other clusters' Peer objects. */
  context: string | null;
  source: string;
  counts: Record<ClusterLinkKind, number>;
}

export interface MigrationPlan {
  /** Repository-relative path → file text. */
  files: Map<string, string>;
  /** Peer labels for fabric.yaml spec.peers.<peer>.labels (the admin's attestation), by peer name; peers without labels absent. */
  attestations: Map<string, Record<string, string>>;
  peers: PeerSummary[];
  items: ReportItem[];
}

/** Annotations the server or kubectl keep that mean nothing in Git. */
const DROPPED_ANNOTATIONS = new Set(['kubectl.kubernetes.io/last-applied-configuration']);
/** Metadata fields written by the API server. */
const SERVER_METADATA = ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'selfLink', 'deletionGracePeriodSeconds', 'generateName'] as const;
/** Field manager of ClusterLink's control plane (controller-runtime names it after the binary). */
const CLUSTERLINK_MANAGER = /^cl-controlplane\b/;

const DIR: Record<ClusterLinkKind, string> = { Export: 'exports', Import: 'imports', AccessPolicy: 'policies', PrivilegedAccessPolicy: 'policies' };

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** True when ClusterLink's control plane, and nobody else, set spec.targetPort (it leases one when the user gave none). */
export function targetPortLeasedByClusterLink(obj: ClusterLinkObject): boolean {
  const owners = (obj.metadata.managedFields ?? []).filter((m) => {
    const spec = isRecord(m.fieldsV1) ? m.fieldsV1['f:spec'] : undefined;
    return isRecord(spec) && 'f:targetPort' in spec;
  });
  return owners.length > 0 && owners.every((m) => CLUSTERLINK_MANAGER.test(m.manager ?? ''));
}

interface Cleaned {
  doc: Record<string, unknown>;
  /** Server or cluster-local fields that were removed (for the report). */
  dropped: string[];
  leasedTargetPort: number | null;
}

/** The object as it goes into Git: apiVersion, kind, name, namespace, labels, annotations, spec. */
export function cleanObject(kind: ClusterLinkKind, obj: ClusterLinkObject): Cleaned {
  const m = obj.metadata;
  const dropped: string[] = SERVER_METADATA.filter((k) => m[k] !== undefined && m[k] !== null).map((k) => `metadata.${k}`);
  if (obj.status !== undefined && obj.status !== null) dropped.push('status');
  for (const k of ['finalizers', 'ownerReferences', 'deletionTimestamp'] as const) if (m[k] !== undefined && m[k] !== null) dropped.push(`metadata.${k}`);
  const metadata: Record<string, unknown> = { name: m.name };
  if (kind !== 'PrivilegedAccessPolicy' && m.namespace !== undefined) metadata.namespace = m.namespace;
  if (m.labels && Object.keys(m.labels).length > 0) metadata.labels = m.labels;
  const annotations = Object.entries(m.annotations ?? {}).filter(([k]) => !DROPPED_ANNOTATIONS.has(k));
  if (annotations.length < Object.keys(m.annotations ?? {}).length) dropped.push('metadata.annotations[kubectl.kubernetes.io/last-applied-configuration]');
  if (annotations.length > 0) metadata.annotations = Object.fromEntries(annotations);
  const spec: Record<string, unknown> = { ...(obj.spec ?? {}) };
  let leasedTargetPort: number | null = null;
  if (kind === 'Import' && typeof spec.targetPort === 'number' && targetPortLeasedByClusterLink(obj)) {
    leasedTargetPort = spec.targetPort;
    delete spec.targetPort;
  }
  return { doc: { apiVersion: API_VERSION, kind, metadata, spec }, dropped, leasedTargetPort };
}

/** The peers an Import's sources name, as far as the spec has that shape. */
function sourcePeers(imp: ClusterLinkObject): string[] {
  const sources = Array.isArray(imp.spec?.sources) ? (imp.spec.sources as unknown[]) : [];
  return sources.flatMap((src) => (isRecord(src) && typeof src.peer === 'string' ? [src.peer] : []));
}

const header = (lines: string[]): string => lines.map((l) => `# ${l}\n`).join('');

function render(doc: Record<string, unknown>, comment: string[]): string {
  return header(comment) + stringify(doc, { lineWidth: 0 });
}

/** File name of an object inside its directory: namespaces have no dots, so `<namespace>.<name>` cannot be ambiguous. */
function fileName(kind: ClusterLinkKind, obj: ClusterLinkObject): string {
  const safe = (s: string): string => s.replace(/[^A-Za-z0-9._-]/g, '_');
  return kind === 'PrivilegedAccessPolicy' ? `privileged.${safe(obj.metadata.name)}.yaml` : `${safe(obj.metadata.namespace ?? 'default')}.${safe(obj.metadata.name)}.yaml`;
}

interface GatewayObservation {
  context: string;
  gateways: { host: string; port: number }[];
}

const gatewaysKey = (g: { host: string; port: number }[]): string => g.map((x) => `${x.host}:${x.port}`).join(', ');

/** Policies' references to peer labels: `peer.clusterlink.net/labels.<key>` in any selector. */
export function peerLabelKeysUsedByPolicies(snapshots: readonly ClusterSnapshot[]): Map<string, string[]> {
  const used = new Map<string, string[]>();
  const PREFIX = 'peer.clusterlink.net/labels.';
  for (const s of snapshots) {
    for (const kind of ['AccessPolicy', 'PrivilegedAccessPolicy'] as const) {
      for (const p of s.objects[kind]) {
        const keys = new Set<string>();
        const visit = (v: unknown): void => {
          if (Array.isArray(v)) v.forEach(visit);
          else if (isRecord(v)) {
            for (const [k, x] of Object.entries(v)) {
              if (k.startsWith(PREFIX)) keys.add(k.slice(PREFIX.length));
              if (k === 'key' && typeof x === 'string' && x.startsWith(PREFIX)) keys.add(x.slice(PREFIX.length));
              visit(x);
            }
          }
        };
        visit(p.spec);
        const where = `${s.peer.name}: ${kind} ${p.metadata.namespace ? `${p.metadata.namespace}/` : ''}${p.metadata.name}`;
        for (const k of keys) used.set(k, [...(used.get(k) ?? []), where]);
      }
    }
  }
  return used;
}

/** Labels as YAML-ish `k=v` for messages. */
const showLabels = (labels: Record<string, string>): string =>
  Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');

export function planMigration(snapshots: readonly ClusterSnapshot[], opts: MigrationOptions): MigrationPlan {
  const files = new Map<string, string>();
  const attestations = new Map<string, Record<string, string>>();
  const items: ReportItem[] = [];
  const peers: PeerSummary[] = [];
  const migrated = new Map<string, ClusterSnapshot>();
  for (const s of snapshots) {
    const other = migrated.get(s.peer.name);
    if (other) throw new Error(`contexts ${other.context} and ${s.context} are both peer ${s.peer.name}: give each cluster its own peer name (--peer <context>=<peer>)`);
    migrated.set(s.peer.name, s);
  }

  // Each cluster's Peer objects: what it knows of the others' gateways and labels.
  const gatewaySeen = new Map<string, GatewayObservation[]>();
  const labelsSeen = new Map<string, { context: string; labels: Record<string, string> }[]>();
  for (const s of snapshots) {
    for (const p of s.peers) {
      const name = p.metadata.name;
      if (name === s.peer.name) {
        items.push({ severity: 'note', topic: 'peer', peer: name, message: `context ${s.context} has a ClusterLink Peer object for its own peer ${name}; ClusterLink's Peer objects describe remote peers, so it was ignored`, action: [], expects: [] });
        continue;
      }
      const gw = peerGateways.safeParse(p.spec?.gateways);
      if (gw.success && gw.data.length > 0) {
        gatewaySeen.set(name, [...(gatewaySeen.get(name) ?? []), { context: s.context, gateways: gw.data.map((g) => ({ host: g.host, port: g.port })) }]);
      }
      const reported = p.status?.labels;
      if (reported && Object.keys(reported).length > 0) labelsSeen.set(name, [...(labelsSeen.get(name) ?? []), { context: s.context, labels: reported }]);
    }
  }
  const described = new Set(snapshots.flatMap((s) => s.peers.map((p) => p.metadata.name)).filter((n) => !migrated.has(n)));
  // A peer already in the repository keeps its directory: only peers migrated now are (re)written.
  const remoteOnly = [...described].filter((n) => !opts.existingPeers?.has(n)).sort();

  const labelUse = peerLabelKeysUsedByPolicies(snapshots);
  const allPeerNames = [...[...migrated.keys()].sort(), ...remoteOnly.sort()];

  /** Each written Import: its file and the peers its sources name (what validate's import errors point at). */
  const importFiles: { peer: string; ref: string; path: string; sourcePeers: string[] }[] = [];

  for (const name of allPeerNames) {
    const s = migrated.get(name) ?? null;
    const dir = `peers/${name}`;

    // Gateways: what the other clusters dial (their Peer objects), else what the cluster reports for itself.
    const observations = gatewaySeen.get(name) ?? [];
    let gateways: { host: string; port: number }[] = [];
    let gatewaySource = '';
    if (observations.length > 0) {
      const byKey = new Map<string, GatewayObservation[]>();
      for (const o of observations) byKey.set(gatewaysKey(o.gateways), [...(byKey.get(gatewaysKey(o.gateways)) ?? []), o]);
      const ranked = [...byKey.values()].sort((a, b) => b.length - a.length);
      gateways = ranked[0]![0]!.gateways;
      gatewaySource = `ClusterLink Peer object ${name} in context${ranked[0]!.length > 1 ? 's' : ''} ${ranked[0]!.map((o) => o.context).join(', ')}`;
      if (ranked.length > 1) {
        items.push({
          severity: 'todo',
          topic: 'gateways',
          peer: name,
          message: `the clusters disagree on ${name}'s gateways: ${ranked.map((g) => `${gatewaysKey(g[0]!.gateways)} (${g.map((o) => o.context).join(', ')})`).join('; ')}; ${dir}/peer.yaml has the most common one`,
          action: [`check ${dir}/peer.yaml spec.gateways: the address every other peer should dial to reach ${name}`],
          expects: [],
        });
      }
    } else if (s?.ingress) {
      gateways = [{ host: s.ingress.host, port: s.ingress.port }];
      gatewaySource = s.ingress.source;
      items.push({
        severity: 'note',
        topic: 'gateways',
        peer: name,
        message: `no other migrated cluster has a Peer object for ${name}; its gateway ${s.ingress.host}:${s.ingress.port} comes from ${s.ingress.source}`,
        action: [`check ${dir}/peer.yaml spec.gateways is the address other peers reach`],
        expects: [],
      });
    } else {
      items.push({
        severity: 'todo',
        topic: 'gateways',
        peer: name,
        message: `${name}'s gateway address is unknown: no migrated cluster has a ClusterLink Peer object for it and its ingress reports no address`,
        action: [`set ${dir}/peer.yaml spec.gateways to the host and port other peers reach ${name}'s gateway on (its ClusterLink ingress Service, \`kubectl -n clusterlink-system get svc clusterlink\`)`],
        expects: [
          { code: 'invalid-field', file: `${dir}/peer.yaml` },
          { code: 'missing-peer', file: `${dir}/peer.yaml` },
        ],
      });
    }

    // Labels: what the cluster's own control plane says, else what it reported to the others.
    let labels: Record<string, string> = {};
    let labelSource = '';
    const reported = labelsSeen.get(name) ?? [];
    if (s?.labels) {
      labels = s.labels.values;
      labelSource = s.labels.source;
      for (const r of reported) {
        if (showLabels(r.labels) !== showLabels(labels)) {
          items.push({ severity: 'note', topic: 'labels', peer: name, message: `context ${r.context} last heard ${name} report labels {${showLabels(r.labels)}}, its control plane now has {${showLabels(labels)}} (the control plane's were kept)`, action: [], expects: [] });
        }
      }
    } else if (reported.length > 0) {
      labels = reported[0]!.labels;
      labelSource = `the labels ${name} reported to context ${reported[0]!.context} (ClusterLink Peer status)`;
    }
    // Labels go to fabric.yaml, where the admin attests them: in a peer's own peer.yaml they decide nothing.
    const hasLabels = Object.keys(labels).length > 0;
    if (hasLabels) {
      items.push(labelsItem(name, labels, labelSource, labelUse));
      attestations.set(name, labels);
    }

    const peerDoc: Record<string, unknown> = { apiVersion: API_VERSION, kind: 'Peer', metadata: { name }, spec: { gateways } };
    files.set(
      `${dir}/peer.yaml`,
      render(peerDoc, [
        `Peer ${name}, migrated from ClusterLink${s ? ` (context ${s.context})` : ` (${REMOTE_ONLY_MARK})`}.`,
        gateways.length > 0 ? `Gateways from ${gatewaySource}.` : 'Gateways UNKNOWN: set spec.gateways (see MIGRATION.md).',
        ...(hasLabels ? [`Its labels (from ${labelSource}) are in fabric.yaml spec.peers.${name}: the fabric admin attests them, not ${name}.`] : []),
      ]),
    );
    items.push(certificateItem(name, opts));

    const counts: Record<ClusterLinkKind, number> = { Export: 0, Import: 0, AccessPolicy: 0, PrivilegedAccessPolicy: 0 };
    if (!s) {
      // Migrated peers come first, so every import naming this peer is written by now.
      const importers = importFiles.filter((f) => f.sourcePeers.includes(name));
      items.push({
        severity: 'todo',
        topic: 'peer',
        peer: name,
        message:
          `${name} appears only in other clusters' ClusterLink Peer objects: its own Exports, Imports and policies were not read` +
          (importers.length > 0 ? `, so the exports imported from it (by ${importers.map((f) => `${f.peer}'s Import ${f.ref}`).join(', ')}) are missing` : ''),
        action: [`run \`clgo migrate\` again with ${name}'s kubeconfig context added (--context <ctx> --peer <ctx>=${name}), or let ${name}'s team fill ${dir}/`],
        expects: importers.map((f) => ({ code: 'unknown-export', file: f.path })),
      });
      peers.push({ name, context: null, source: 'ClusterLink Peer objects in other clusters', counts });
      continue;
    }

    const dropped = new Set<string>();
    const used = new Set<string>();
    for (const kind of MIGRATED_KINDS) {
      for (const obj of [...s.objects[kind]].sort((a, b) => (a.metadata.namespace ?? '').localeCompare(b.metadata.namespace ?? '') || a.metadata.name.localeCompare(b.metadata.name))) {
        const cleaned = cleanObject(kind, obj);
        let base = fileName(kind, obj);
        for (let i = 2; used.has(`${DIR[kind]}/${base}`); i++) base = fileName(kind, obj).replace(/\.yaml$/, `-${i}.yaml`);
        used.add(`${DIR[kind]}/${base}`);
        const path = `${dir}/${DIR[kind]}/${base}`;
        const ref = `${kind} ${obj.metadata.namespace && kind !== 'PrivilegedAccessPolicy' ? `${obj.metadata.namespace}/` : ''}${obj.metadata.name}`;
        files.set(path, render(cleaned.doc, [`Migrated from ClusterLink: ${ref} in context ${s.context} (server fields removed).`]));
        if (kind === 'Import') importFiles.push({ peer: name, ref: `${obj.metadata.namespace ?? 'default'}/${obj.metadata.name}`, path, sourcePeers: sourcePeers(obj) });
        counts[kind]++;
        for (const d of cleaned.dropped) if (!['metadata.finalizers', 'metadata.ownerReferences', 'metadata.deletionTimestamp'].includes(d)) dropped.add(d);
        if (cleaned.leasedTargetPort !== null) {
          items.push({ severity: 'note', topic: 'object', peer: name, message: `${path}: spec.targetPort ${cleaned.leasedTargetPort} was leased by ClusterLink's control plane, not set by a user; removed so clgo chooses the data plane's listen port`, action: [], expects: [] });
        }
        if (obj.metadata.deletionTimestamp !== undefined && obj.metadata.deletionTimestamp !== null) {
          items.push({ severity: 'todo', topic: 'object', peer: name, message: `${path}: ${ref} was being deleted in the cluster (deletionTimestamp set)`, action: [`delete ${path} unless it should live on`], expects: [] });
        }
        const owners = obj.metadata.ownerReferences ?? [];
        if ((obj.metadata.finalizers ?? []).length > 0 || owners.length > 0) {
          items.push({
            severity: 'note',
            topic: 'object',
            peer: name,
            message: `${path}: cluster-local ${[(obj.metadata.finalizers ?? []).length > 0 ? `finalizers (${obj.metadata.finalizers!.join(', ')})` : '', owners.length > 0 ? `owner references (${owners.map((o) => `${o.kind}/${o.name}`).join(', ')})` : ''].filter(Boolean).join(' and ')} removed${owners.length > 0 ? `: ${ref} was managed by another object in the cluster, which will not manage the Git copy` : ''}`,
            action: [],
            expects: [],
          });
        }
        for (const c of obj.status?.conditions ?? []) {
          if (c.status === 'False') {
            items.push({ severity: 'note', topic: 'object', peer: name, message: `${path}: ClusterLink reported ${c.type}=False${c.message ? ` (${c.message})` : c.reason ? ` (${c.reason})` : ''}: it did not work in ClusterLink either`, action: [], expects: [] });
          }
        }
      }
    }
    if (dropped.size > 0) {
      items.push({ severity: 'note', topic: 'server-fields', peer: name, message: `server-populated fields removed from ${name}'s objects: ${[...dropped].sort().join(', ')}`, action: [], expects: [] });
    }
    peers.push({ name, context: s.context, source: s.peer.source, counts });
  }

  // Imports naming a peer nobody knows: validate reports them; say where they came from.
  for (const f of importFiles) {
    for (const peer of new Set(f.sourcePeers)) {
      if (!migrated.has(peer) && !described.has(peer) && !opts.existingPeers?.has(peer)) {
        items.push({
          severity: 'todo',
          topic: 'peer',
          peer: f.peer,
          message: `Import ${f.ref} on ${f.peer} imports from peer ${peer}, which no migrated cluster is and no ClusterLink Peer object describes`,
          action: [`migrate ${peer}'s cluster too (--context <ctx> --peer <ctx>=${peer}), or remove the source from ${f.path}`],
          expects: [{ code: 'unknown-peer', file: f.path }],
        });
      }
    }
  }
  return { files, attestations, peers, items };
}

function certificateItem(name: string, opts: MigrationOptions): ReportItem {
  return {
    severity: 'todo',
    topic: 'certificate',
    peer: name,
    message:
      `${name} needs a certificate from this fabric's CA: ClusterLink's peer certificate cannot carry over ` +
      `(it names only DNS:${name}, not clusterlink://${opts.fabricName}/${name}, and it is signed by ClusterLink's fabric CA; ` +
      'its private key stays in the cluster and is never copied into the repository)',
    action: [
      `on ${name}'s side: clgo create peer ${name} --fabric ${opts.repoDir}   (writes ${name}.key, mode 0600, and ${name}.csr)`,
      `fabric admin: clgo sign ${name}.csr --ca <ca.crt> --ca-key <ca.key> --fabric ${opts.repoDir}   (writes peers/${name}/peer.pem)`,
      `deploy: kubectl -n clusterlink-system create secret tls clgo-peer-key --cert peers/${name}/peer.pem --key ${name}.key`,
    ],
    expects: [{ code: 'peer-certificate-missing', file: `peers/${name}/peer.yaml` }],
  };
}

function labelsItem(name: string, labels: Record<string, string>, source: string, used: Map<string, string[]>): ReportItem {
  const keys = Object.keys(labels).sort();
  const relied = keys.filter((k) => used.has(k));
  const lines = keys.map((k) => (used.has(k) ? `${k}=${labels[k]} — key used by ${used.get(k)!.join('; ')}` : `${k}=${labels[k]} — no migrated policy refers to it`));
  return {
    severity: 'todo',
    topic: 'labels',
    peer: name,
    message:
      `${name}'s peer labels are claims about ${name} that other peers' policies decide on; in ClusterLink each peer announced its own, ` +
      `here the fabric admin attests them. ${relied.length > 0 ? `Policies rely on ${relied.map((k) => `peer.clusterlink.net/labels.${k}`).join(', ')}: without the attestation, allow policies on them stop matching and deny policies on them stop denying.` : 'No migrated policy refers to them.'} Read from ${source}:\n` +
      lines.map((l) => `    ${l}`).join('\n'),
    action: [`fabric admin: review fabric.yaml spec.peers.${name}.labels (written by this migration); keep only what is true of ${name} — merging attests them`],
    expects: [],
  };
}

/**
 * fabric.yaml with the migrated peer labels under spec.peers.<peer>.labels (the admin's
 * attestation). Edits the document in place, so comments and other fields stay; labels the
 * admin already attested for a peer are kept as they are (a note says where they differ).
 */
export function withPeerAttestations(fabricYaml: string, attestations: ReadonlyMap<string, Record<string, string>>): { text: string; items: ReportItem[] } {
  const items: ReportItem[] = [];
  if (attestations.size === 0) return { text: fabricYaml, items };
  const doc = parseDocument(fabricYaml);
  if (doc.errors.length > 0 || !isMap(doc.get('spec', true))) throw new Error('fabric.yaml is not a Fabric document with a spec: fix it first (clgo validate)');
  for (const [peer, labels] of [...attestations].sort(([a], [b]) => a.localeCompare(b))) {
    const existing: unknown = doc.getIn(['spec', 'peers', peer, 'labels']);
    if (existing !== undefined) {
      const current = isMap(existing) ? (existing.toJSON() as Record<string, string>) : existing;
      if (!isRecord(current) || showLabels(current as Record<string, string>) !== showLabels(labels)) {
        items.push({
          severity: 'todo',
          topic: 'labels',
          peer,
          message: `fabric.yaml already attests labels for ${peer} (${isRecord(current) ? showLabels(current as Record<string, string>) : 'not a map'}); the cluster has {${showLabels(labels)}}; fabric.yaml was left as it was`,
          action: [`fabric admin: decide which of the two is true of ${peer} and edit fabric.yaml spec.peers.${peer}.labels`],
          expects: [],
        });
      }
      continue;
    }
    doc.setIn(['spec', 'peers', peer, 'labels'], doc.createNode(Object.fromEntries(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)))));
  }
  const peersNode = doc.getIn(['spec', 'peers'], true);
  if (isMap(peersNode) && !peersNode.commentBefore) peersNode.commentBefore = ' Peer labels other peers\' policies may trust (peer.clusterlink.net/labels.*), attested by the fabric admins.\n Labels added by `clgo migrate` were read from each ClusterLink cluster: review them (MIGRATION.md).';
  return { text: doc.toString({ lineWidth: 0 }), items };
}
