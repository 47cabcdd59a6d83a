// One document → a checked fabric object (kind, schema, directory), and objects → a peer's draft and PeerModel.
import { closest, distance } from 'fastest-levenshtein';
import type { Document } from 'yaml';
import type { z } from 'zod';
import { API_VERSION, KINDS, SERVER_METADATA_FIELDS, kindSchemas, type Kind } from './kinds.ts';
import { Diagnostics, positionOf, reportSchemaIssues, type FileText } from './diagnostics.ts';
import { DNS1123, fastValidate, isRecord } from './fast-validate.ts';
import type { LoadLimits } from './limits.ts';
import { assignListenPorts } from './listen-ports.ts';
import type { Diagnostic, ExportModel, ImportModel, PeerModel, PolicyModel, SourceRef } from './model.ts';
import type { FileEntry } from './parse-cache.ts';
import { parseFile, type ParsedDoc } from './yaml-documents.ts';

/** Import annotation choosing session affinity (Kubernetes' Service sessionAffinity values). */
export const SESSION_AFFINITY = 'clusterlink.net/session-affinity';
/** ClusterLink's Import label asking to merge the import into an existing Service (v1alpha1.LabelImportMerge). */
export const IMPORT_MERGE = 'import.clusterlink.net/merge';
const POLICY_ATTRIBUTE_PREFIXES = ['peer.clusterlink.net/', 'client.clusterlink.net/', 'export.clusterlink.net/'];

export interface ParsedObject {
  kind: Kind;
  file: FileText;
  readonly doc: Document.Parsed;
  source: SourceRef;
  data: unknown;
}

/** parseFile + parseObject for one file, through its cache entry when given (diagnostics are replayed). */
export function parseObjects(path: string, text: string, allowed: Kind[], dirHint: string, limits: LoadLimits, diags: Diagnostics, entry: FileEntry | null): ParsedObject[] | null {
  if (entry?.parsed) {
    for (const d of entry.parsed.errors) diags.add(d);
    for (const d of entry.parsed.warnings) diags.add(d);
    return entry.parsed.objects;
  }
  const local = entry ? new Diagnostics() : diags;
  const parsed = parseFile(path, text, limits, local);
  const objects: ParsedObject[] | null = parsed ? [] : null;
  if (parsed) {
    for (const d of parsed.docs) {
      const o = parseObject(parsed.file, d, allowed, dirHint, local);
      if (o) objects!.push(o);
    }
  }
  if (entry) {
    for (const d of local.errors) diags.add(d);
    for (const d of local.warnings) diags.add(d);
    entry.parsed = { objects, errors: local.errors, warnings: local.warnings };
  }
  return objects;
}

/** A document's file, start and (lazily) syntax tree: what positions are computed from. */
class DocRef {
  constructor(
    readonly file: FileText,
    readonly source: SourceRef,
    private readonly parsed: ParsedDoc,
  ) {}
  get doc(): Document.Parsed {
    return this.parsed.doc;
  }
}

class CheckedObject extends DocRef implements ParsedObject {
  constructor(
    readonly kind: Kind,
    file: FileText,
    source: SourceRef,
    readonly data: unknown,
    parsed: ParsedDoc,
  ) {
    super(file, source, parsed);
  }
}

/** Parses one YAML document into a checked object of the expected kinds. */
export function parseObject(file: FileText, parsed: ParsedDoc, allowed: Kind[], dirHint: string, diags: Diagnostics): ParsedObject | null {
  const source = parsed.start;
  const data = parsed.data;
  if (data === null || data === undefined) return null; // an empty document (e.g. trailing ---)
  if (typeof data !== 'object' || Array.isArray(data)) {
    diags.error(source, 'not-an-object', '', 'a document must be a Kubernetes-style object (apiVersion, kind, metadata, spec)', 'start the document with apiVersion: clusterlink.net/v1alpha1 and kind: ...');
    return null;
  }
  const rec = data as Record<string, unknown>;
  const kind = rec.kind;
  const allowedKind = typeof kind === 'string' && allowed.includes(kind as Kind);
  if (allowedKind && rec.apiVersion === API_VERSION) {
    // The common case first, without allocating anything for error reports.
    const fast = fastValidate(kind as Kind, rec);
    if (fast !== undefined) return new CheckedObject(kind as Kind, file, source, fast, parsed);
  }
  const base = new DocRef(file, source, parsed);
  if (typeof kind !== 'string' || !(KINDS as string[]).includes(kind)) {
    const s = typeof kind === 'string' ? closest(kind, KINDS) : null;
    diags.error(positionOf(base, ['kind']), 'unknown-kind', 'kind', `unknown kind ${JSON.stringify(kind ?? null)}`, s && distance(String(kind), s) <= 3 ? `did you mean "${s}"?` : `use one of: ${allowed.join(', ')}`);
    return null;
  }
  if (rec.apiVersion !== API_VERSION) {
    diags.error(positionOf(base, ['apiVersion']), 'bad-api-version', 'apiVersion', `apiVersion must be ${API_VERSION}, got ${JSON.stringify(rec.apiVersion ?? null)}`, `set apiVersion: ${API_VERSION}`);
    return null;
  }
  if (!allowed.includes(kind as Kind)) {
    diags.error(positionOf(base, ['kind']), 'wrong-directory', 'kind', `a ${kind} does not belong in ${dirHint}`, `move it to ${kindHome(kind as Kind)}`);
    return null;
  }
  const result = kindSchemas[kind as Kind].safeParse(data);
  if (!result.success) {
    reportSchemaIssues(base, kind, result.error.issues, diags);
    return null;
  }
  noteIgnoredFields(base, rec, diags);
  return new CheckedObject(kind as Kind, file, source, result.data, parsed);
}

/** `status:` and server-set metadata (kubectl get -o yaml output) are accepted; say once per object that they mean nothing here. */
function noteIgnoredFields(obj: DocRef, rec: Record<string, unknown>, diags: Diagnostics): void {
  const meta = isRecord(rec.metadata) ? rec.metadata : {};
  const ignored = [...(rec.status !== undefined ? ['status'] : []), ...SERVER_METADATA_FIELDS.filter((f) => meta[f] !== undefined).map((f) => `metadata.${f}`)];
  if (ignored.length === 0) return;
  const first = ignored[0]!;
  diags.warn(
    positionOf(obj, first.split('.'), true),
    'ignored-server-fields',
    first,
    `${ignored.join(', ')} ${ignored.length === 1 ? 'is' : 'are'} set by a Kubernetes API server and ignored here`,
    'nothing to do (kubectl get -o yaml output may be committed as is); delete them to silence this note',
  );
}

function kindHome(kind: Kind): string {
  switch (kind) {
    case 'Fabric':
      return 'fabric.yaml at the repository root';
    case 'Peer':
      return 'peers/<peer>/peer.yaml';
    case 'Export':
      return 'peers/<peer>/exports/';
    case 'Import':
      return 'peers/<peer>/imports/';
    default:
      return 'peers/<peer>/policies/';
  }
}

export const byNsName = <T extends { namespace: string | null; name: string }>(a: T, b: T): number =>
  (a.namespace ?? '').localeCompare(b.namespace ?? '') || a.name.localeCompare(b.name);

export interface PeerDraft {
  name: string;
  peerYaml: ParsedObject | null;
  certificatePem: string | null;
  exports: ExportModel[];
  imports: ImportModel[];
  policies: PolicyModel[];
  objects: Map<string, SourceRef>;
  /** The object each import was read from: positions of its sources for cross-reference errors. */
  importObjects: Map<ImportModel, ParsedObject>;
}

export const newDraft = (name: string): PeerDraft => ({ name, peerYaml: null, certificatePem: null, exports: [], imports: [], policies: [], objects: new Map(), importObjects: new Map() });

/** A draft's PeerModel (with its warnings), or the diagnostic saying its peer.yaml is missing. */
export function buildPeer(d: PeerDraft): { model: PeerModel; missing: null; warnings: Diagnostic[] } | { model: null; missing: Diagnostic } {
  if (!d.peerYaml) {
    const anyObject = d.exports[0]?.source ?? d.imports[0]?.source ?? d.policies[0]?.source;
    const missing: Diagnostic = {
      severity: 'error',
      file: `peers/${d.name}/peer.yaml`,
      line: 1,
      column: 1,
      path: '',
      message: `peers/${d.name}/ has no peer.yaml${anyObject ? ` (objects such as ${anyObject.file} need it)` : ''}`,
      hint: `add peers/${d.name}/peer.yaml with kind: Peer and metadata.name: ${d.name}`,
      code: 'missing-peer',
    };
    return { model: null, missing };
  }
  const spec = d.peerYaml.data as z.infer<typeof kindSchemas.Peer>;
  const declaredLabels = spec.metadata.labels ?? {};
  const warnings = new Diagnostics();
  if (Object.keys(declaredLabels).length > 0) {
    warnings.warn(
      positionOf(d.peerYaml, ['metadata', 'labels'], true),
      'unattested-peer-labels',
      'metadata.labels',
      `labels in peers/${d.name}/peer.yaml feed no policy decision: other peers' policies trust peer labels, so only the fabric admins set them`,
      `ask the fabric admins to set them in fabric.yaml (spec.peers.${d.name}.labels), then remove them here (docs/policy.md, "Who may change what")`,
    );
  }
  const imports = d.imports.sort(byNsName);
  const listenPorts = assignListenPorts(imports);
  imports.forEach((imp, i) => (imp.listenPort = listenPorts[i]!));
  return {
    warnings: warnings.warnings,
    model: {
      name: d.name,
      declaredLabels,
      gateways: spec.spec.gateways,
      certificatePem: d.certificatePem,
      exports: d.exports.sort(byNsName),
      imports,
      policies: [...d.policies.filter((p) => p.tier === 'privileged').sort(byNsName), ...d.policies.filter((p) => p.tier === 'user').sort(byNsName)],
      source: d.peerYaml.source,
    },
    missing: null,
  };
}

export function addObject(d: PeerDraft, obj: ParsedObject, diags: Diagnostics): void {
  const meta = (obj.data as { metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> } }).metadata;
  const claimed = meta.labels?.['clusterlink.net/peer'];
  if (claimed !== undefined && claimed !== d.name) {
    diags.error(positionOf(obj, ['metadata', 'labels', 'clusterlink.net/peer']), 'ownership', 'metadata.labels.clusterlink.net/peer', `object under peers/${d.name}/ claims to belong to peer "${claimed}"`, `everything under peers/${d.name}/ is ${d.name}'s decision: move it to peers/${claimed}/ or fix the label`);
    return;
  }
  const privileged = obj.kind === 'PrivilegedAccessPolicy';
  if (privileged && meta.namespace !== undefined) {
    diags.error(positionOf(obj, ['metadata', 'namespace'], true), 'cluster-scoped', 'metadata.namespace', 'PrivilegedAccessPolicy is cluster-wide and takes no namespace', 'remove metadata.namespace, or use a (namespaced) AccessPolicy');
    return;
  }
  const namespace = privileged ? null : (meta.namespace ?? 'default');
  const key = `${obj.kind}/${namespace ?? ''}/${meta.name}`;
  const first = d.objects.get(key);
  if (first) {
    diags.error(positionOf(obj, ['metadata', 'name']), 'duplicate', 'metadata.name', `duplicate ${obj.kind} ${namespace ? `${namespace}/` : ''}${meta.name} in peer ${d.name} (first defined at ${first.file}:${first.line})`, 'rename one of them or delete the duplicate');
    return;
  }
  d.objects.set(key, obj.source);
  const labels = meta.labels ?? {};
  switch (obj.kind) {
    case 'Export': {
      const s = (obj.data as z.infer<typeof kindSchemas.Export>).spec;
      if (s.host === undefined && !DNS1123.test(meta.name)) {
        diags.warn(positionOf(obj, ['metadata', 'name']), 'export-host-default', 'spec.host', `export ${meta.name} has no host, and its default ${meta.name}.${namespace}.svc.cluster.local names a Service that cannot exist (Service names are DNS-1123 labels)`, 'set spec.host to the Service (or host) that serves this export');
      }
      d.exports.push({ peer: d.name, name: meta.name, namespace: namespace!, labels, host: s.host ?? `${meta.name}.${namespace}.svc.cluster.local`, port: s.port, source: obj.source });
      break;
    }
    case 'Import': {
      const s = (obj.data as z.infer<typeof kindSchemas.Import>).spec;
      if (labels[IMPORT_MERGE] !== undefined) {
        diags.error(
          positionOf(obj, ['metadata', 'labels', IMPORT_MERGE], true),
          'unsupported',
          `metadata.labels.${IMPORT_MERGE}`,
          `${IMPORT_MERGE} (merging the import into an existing Service) is not supported: the reconciler owns the Services it applies and deletes them with the import, which would delete a Service it does not own`,
          'remove the label and point clients at the import\'s own Service (its name and namespace); see docs/policy.md, "YAML accepted"',
        );
        return;
      }
      if (s.sources.length === 0) {
        diags.warn(positionOf(obj, ['spec', 'sources'], true), 'import-no-sources', 'spec.sources', `import ${namespace}/${meta.name} has no sources: its Service is created and every connection to it is refused`, 'add a source (peer, exportName, exportNamespace), or delete the import');
      }
      const imp: ImportModel = {
        peer: d.name,
        name: meta.name,
        namespace: namespace!,
        labels,
        port: s.port,
        targetPort: s.targetPort ?? null,
        listenPort: s.targetPort ?? s.port, // final value set per peer by assignListenPorts
        // Empty or absent export name/namespace: the import's own (ClusterLink's authz manager does the same).
        sources: s.sources.map((src) => ({ peer: src.peer, exportName: src.exportName || meta.name, exportNamespace: src.exportNamespace || namespace! })),
        lbScheme: s.lbScheme ?? 'round-robin',
        sessionAffinity: 'None',
        source: obj.source,
      };
      const affinity = meta.annotations?.[SESSION_AFFINITY];
      if (affinity === 'ClientIP') imp.sessionAffinity = 'ClientIP';
      else if (affinity !== undefined && affinity !== 'None') {
        diags.error(positionOf(obj, ['metadata', 'annotations', SESSION_AFFINITY]), 'bad-annotation', `metadata.annotations.${SESSION_AFFINITY}`, `session affinity "${affinity}" is not known`, 'use ClientIP (a client keeps its exporter) or None');
        return;
      }
      d.imports.push(imp);
      d.importObjects.set(imp, obj);
      break;
    }
    case 'AccessPolicy':
    case 'PrivilegedAccessPolicy': {
      const s = (obj.data as z.infer<typeof kindSchemas.AccessPolicy>).spec;
      if (!checkSelectors(obj, s, diags)) return;
      d.policies.push({ peer: d.name, tier: privileged ? 'privileged' : 'user', kind: obj.kind, name: meta.name, namespace, action: s.action, from: s.from, to: s.to, source: obj.source });
      break;
    }
    default:
      break;
  }
}

function checkSelectors(obj: ParsedObject, spec: z.infer<typeof kindSchemas.AccessPolicy>['spec'], diags: Diagnostics): boolean {
  let ok = true;
  for (const side of ['from', 'to'] as const) {
    spec[side].forEach((wsos, i) => {
      if (wsos.workloadSets && wsos.workloadSets.length > 0) {
        ok = false;
        diags.error(positionOf(obj, ['spec', side, i, 'workloadSets'], true), 'unsupported', `spec.${side}[${i}].workloadSets`, 'workloadSets are not supported (as in ClusterLink)', 'use workloadSelector with matchLabels or matchExpressions');
      }
      const sel = wsos.workloadSelector;
      const keys: Array<[string, PropertyKey[]]> = [
        ...Object.keys(sel?.matchLabels ?? {}).map((k): [string, PropertyKey[]] => [k, ['spec', side, i, 'workloadSelector', 'matchLabels', k]]),
        ...(sel?.matchExpressions ?? []).map((e, j): [string, PropertyKey[]] => [e.key, ['spec', side, i, 'workloadSelector', 'matchExpressions', j, 'key']]),
      ];
      for (const [k, keyPath] of keys) {
        if (!POLICY_ATTRIBUTE_PREFIXES.some((p) => k.startsWith(p))) {
          diags.warn(positionOf(obj, keyPath, true), 'unknown-attribute', `spec.${side}[${i}].workloadSelector`, `attribute "${k}" is not one ClusterLink defines, so this selector can never match it`, `use peer.clusterlink.net/..., client.clusterlink.net/... or export.clusterlink.net/... (see docs/policy.md)`);
        }
      }
      (sel?.matchExpressions ?? []).forEach((e, j) => {
        const needsValues = e.operator === 'In' || e.operator === 'NotIn';
        const hasValues = (e.values?.length ?? 0) > 0;
        if (needsValues !== hasValues) {
          ok = false;
          diags.error(
            positionOf(obj, ['spec', side, i, 'workloadSelector', 'matchExpressions', j, 'operator']),
            'bad-selector',
            `spec.${side}[${i}].workloadSelector.matchExpressions[${j}]`,
            needsValues ? `operator ${e.operator} needs a non-empty values list` : `operator ${e.operator} takes no values`,
            needsValues ? 'add values: [...]' : 'remove values',
          );
        }
      });
    });
  }
  return ok;
}

