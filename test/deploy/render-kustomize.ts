// A small Kustomize renderer for the tests of deploy/ (kustomize and kubectl are not available in
// CI). It supports exactly what deploy/ uses and throws on anything else, so a kustomization that
// starts using a new feature fails loudly here instead of rendering something kustomize would not:
//
//   resources (files and directories), components (kind: Component), namespace,
//   labels (pairs, includeSelectors: false, includeTemplates), configMapGenerator (files,
//   literals; name hash suffix as kustomize computes it), patches (strategic merge patches by
//   path, matched to one resource by kind and name), images (newName, newTag, digest).
//
// Generated ConfigMaps keep their original name for references: pod templates that name the
// ConfigMap (volumes, env valueFrom, envFrom, projected volumes) get the hashed name, in the
// kustomization that sees both, like kustomize's name-reference transformer.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';

export type KObject = Record<string, unknown> & {
  apiVersion: string;
  kind: string;
  metadata: Record<string, unknown> & { name: string; namespace?: string; labels?: Record<string, string> };
};

interface Entry {
  obj: KObject;
  /** For generated ConfigMaps: the name before the hash suffix, which references use. */
  originalName?: string;
}

const KUSTOMIZATION_FILES = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'];
const KNOWN_FIELDS = new Set(['apiVersion', 'kind', 'resources', 'components', 'namespace', 'labels', 'configMapGenerator', 'patches', 'images']);

/** Kinds deploy/ uses (or could plausibly use) that have no namespace. */
export const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'PersistentVolume', 'StorageClass', 'PriorityClass', 'ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration']);

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function fail(where: string, message: string): never {
  throw new Error(`${where}: ${message}`);
}

function readYamlDocs(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const out: unknown[] = [];
  for (const d of docs) {
    if (d.errors.length > 0) fail(file, d.errors.map((e) => e.message).join('; '));
    const v: unknown = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

function asObject(v: unknown, where: string): KObject {
  if (!isMap(v) || typeof v.apiVersion !== 'string' || typeof v.kind !== 'string' || !isMap(v.metadata) || typeof v.metadata.name !== 'string') {
    fail(where, 'not a Kubernetes object (apiVersion, kind, metadata.name)');
  }
  return v as KObject;
}

function kustomizationFile(dir: string): string {
  for (const f of KUSTOMIZATION_FILES) if (existsSync(join(dir, f))) return join(dir, f);
  return fail(dir, 'no kustomization.yaml');
}

function readKustomization(dir: string, expectKind: 'Kustomization' | 'Component'): Record<string, unknown> {
  const file = kustomizationFile(dir);
  const docs = readYamlDocs(file);
  const k = docs[0];
  if (docs.length !== 1 || !isMap(k)) fail(file, 'must hold one mapping');
  const kind = k.kind ?? 'Kustomization';
  if (kind !== expectKind) fail(file, `kind ${String(kind)}, expected ${expectKind}`);
  const apiVersion = expectKind === 'Component' ? 'kustomize.config.k8s.io/v1alpha1' : 'kustomize.config.k8s.io/v1beta1';
  if (k.apiVersion !== undefined && k.apiVersion !== apiVersion) fail(file, `apiVersion ${String(k.apiVersion)}, expected ${apiVersion}`);
  for (const key of Object.keys(k)) if (!KNOWN_FIELDS.has(key)) fail(file, `unsupported field "${key}" (extend test/deploy/render-kustomize.ts)`);
  return k;
}

function stringList(v: unknown, where: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) fail(where, 'must be a list of strings');
  return v as string[];
}

/** Renders the kustomization in `dir` to its list of objects. */
export function renderKustomization(dir: string): KObject[] {
  return build(resolve(dir), 'Kustomization', [], []).map((e) => e.obj);
}

function build(dir: string, kind: 'Kustomization' | 'Component', input: Entry[], stack: string[]): Entry[] {
  if (stack.includes(dir)) fail(dir, `cycle: ${[...stack, dir].join(' -> ')}`);
  const where = kustomizationFile(dir);
  const k = readKustomization(dir, kind);
  let entries = [...input];

  for (const r of stringList(k.resources, `${where} resources`)) {
    const path = resolve(dir, r);
    if (!existsSync(path)) fail(where, `resource ${r} does not exist`);
    if (statSync(path).isDirectory()) entries.push(...build(path, 'Kustomization', [], [...stack, dir]));
    else entries.push(...readYamlDocs(path).map((d, i) => ({ obj: asObject(d, `${path} document ${i + 1}`) })));
  }
  for (const c of stringList(k.components, `${where} components`)) {
    entries = build(resolve(dir, c), 'Component', entries, [...stack, dir]);
  }
  entries.push(...generateConfigMaps(dir, k.configMapGenerator, where));
  entries = applyPatches(dir, entries, k.patches, where);
  if (k.namespace !== undefined) {
    if (typeof k.namespace !== 'string') fail(where, 'namespace must be a string');
    setNamespace(entries, k.namespace);
  }
  applyLabels(entries, k.labels, where);
  applyImages(entries, k.images, where);
  fixConfigMapReferences(entries);
  assertUnique(entries, where);
  return entries;
}

// ---- configMapGenerator -------------------------------------------------------------------

/** kustomize's hash suffix: sha256 of the JSON {data, kind, name} (sorted keys), 10 hex digits, some letters remapped. */
export function configMapHash(name: string, data: Record<string, string>): string {
  const sorted = Object.fromEntries(Object.keys(data).sort().map((key) => [key, data[key]]));
  const json = JSON.stringify({ data: sorted, kind: 'ConfigMap', name }).replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
  const hex = createHash('sha256').update(json).digest('hex');
  const remap: Record<string, string> = { '0': 'g', '1': 'h', '3': 'k', a: 'm', e: 't' };
  return [...hex.slice(0, 10)].map((c) => remap[c] ?? c).join('');
}

function generateConfigMaps(dir: string, gens: unknown, where: string): Entry[] {
  if (gens === undefined) return [];
  if (!Array.isArray(gens)) fail(where, 'configMapGenerator must be a list');
  return gens.map((g, i) => {
    const at = `${where} configMapGenerator[${i}]`;
    if (!isMap(g) || typeof g.name !== 'string') fail(at, 'needs a name');
    for (const key of Object.keys(g)) if (!['name', 'files', 'literals'].includes(key)) fail(at, `unsupported field "${key}"`);
    const data: Record<string, string> = {};
    const put = (key: string, value: string): void => {
      if (key in data) fail(at, `duplicate key ${key}`);
      if (!/^[-._a-zA-Z0-9]+$/.test(key)) fail(at, `invalid key ${key}`);
      data[key] = value;
    };
    for (const f of stringList(g.files, `${at} files`)) {
      const eq = f.indexOf('=');
      const [key, rel] = eq >= 0 ? [f.slice(0, eq), f.slice(eq + 1)] : [basename(f), f];
      const path = resolve(dir, rel);
      // kustomize's default load restrictor: generator files must be inside the kustomization.
      if (!path.startsWith(dir + '/')) fail(at, `${rel} is outside ${dir} (kustomize refuses it)`);
      put(key, readFileSync(path, 'utf8'));
    }
    for (const l of stringList(g.literals, `${at} literals`)) {
      const eq = l.indexOf('=');
      if (eq <= 0) fail(at, `literal "${l}" is not KEY=VALUE`);
      put(l.slice(0, eq), l.slice(eq + 1));
    }
    const obj: KObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `${g.name}-${configMapHash(g.name, data)}` }, data };
    return { obj, originalName: g.name };
  });
}

// ---- patches (strategic merge) ------------------------------------------------------------

/** Merge keys of the lists deploy/ patches (as in Kubernetes' strategic merge patch). */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  volumes: 'name',
  env: 'name',
  volumeMounts: 'mountPath',
  imagePullSecrets: 'name',
};

function listMergeKey(field: string, list: unknown[]): string | undefined {
  if (field === 'ports') return list.some((p) => isMap(p) && 'containerPort' in p) ? 'containerPort' : 'port';
  return MERGE_KEYS[field];
}

/** Strategic merge of `patch` into `base` (neither is modified). Supports `$patch: delete` on list elements and `$patch: replace` on maps and lists. */
export function strategicMerge(base: unknown, patch: unknown, path = ''): unknown {
  if (!isMap(patch)) return structuredClone(patch);
  if (patch.$patch === 'replace') {
    const { $patch: _drop, ...rest } = patch;
    return structuredClone(rest);
  }
  if (patch.$patch !== undefined) fail(path || '/', `unsupported $patch: ${String(patch.$patch)} here`);
  const out: Record<string, unknown> = isMap(base) ? structuredClone(base) : {};
  for (const [key, pv] of Object.entries(patch)) {
    const at = `${path}/${key}`;
    if (key.startsWith('$')) fail(at, 'unsupported directive');
    if (pv === null) {
      delete out[key];
    } else if (Array.isArray(pv)) {
      const bv = out[key];
      const mk = listMergeKey(key, [...(Array.isArray(bv) ? bv : []), ...pv]);
      out[key] = mk ? mergeList(Array.isArray(bv) ? bv : [], pv, mk, at) : structuredClone(pv);
    } else if (isMap(pv)) {
      out[key] = strategicMerge(out[key], pv, at);
    } else {
      out[key] = pv;
    }
  }
  return out;
}

function mergeList(base: unknown[], patch: unknown[], key: string, path: string): unknown[] {
  let out = structuredClone(base);
  for (const p of patch) {
    if (!isMap(p)) fail(path, `elements must be maps with ${key}`);
    if (p.$patch === 'replace' && Object.keys(p).length === 1) {
      out = [];
      continue;
    }
    const id = p[key];
    if (id === undefined) fail(path, `element without merge key ${key}`);
    const i = out.findIndex((b) => isMap(b) && b[key] === id);
    if (p.$patch === 'delete') {
      if (i < 0) fail(path, `$patch: delete of ${key}=${String(id)}, which is not there`);
      out.splice(i, 1);
    } else if (i >= 0) {
      out[i] = strategicMerge(out[i], p, `${path}[${key}=${String(id)}]`);
    } else {
      out.push(strategicMerge({}, p, `${path}[${key}=${String(id)}]`));
    }
  }
  return out;
}

function applyPatches(dir: string, entries: Entry[], patches: unknown, where: string): Entry[] {
  if (patches === undefined) return entries;
  if (!Array.isArray(patches)) fail(where, 'patches must be a list');
  for (const [i, p] of patches.entries()) {
    const at = `${where} patches[${i}]`;
    if (!isMap(p) || typeof p.path !== 'string' || Object.keys(p).length !== 1) fail(at, 'only { path: FILE } (a strategic merge patch naming its target) is supported');
    const file = resolve(dir, p.path);
    for (const [j, doc] of readYamlDocs(file).entries()) {
      const patch = asObject(doc, `${file} document ${j + 1}`);
      const matches = entries.filter((e) => e.obj.kind === patch.kind && (e.originalName ?? e.obj.metadata.name) === patch.metadata.name && (patch.metadata.namespace === undefined || e.obj.metadata.namespace === patch.metadata.namespace));
      if (matches.length !== 1) fail(file, `patch for ${patch.kind}/${patch.metadata.name} matches ${matches.length} resources, expected 1`);
      const target = matches[0]!;
      if (target.obj.apiVersion !== patch.apiVersion) fail(file, `apiVersion ${patch.apiVersion} does not match the target's ${target.obj.apiVersion}`);
      const { metadata, ...rest } = patch;
      const { name: _name, namespace: _ns, ...metaRest } = metadata;
      target.obj = strategicMerge(target.obj, { ...rest, metadata: metaRest }, `${patch.kind}/${patch.metadata.name}`) as KObject;
    }
  }
  return entries;
}

// ---- namespace, labels, images ------------------------------------------------------------

function setNamespace(entries: Entry[], namespace: string): void {
  for (const { obj } of entries) {
    if (!CLUSTER_SCOPED.has(obj.kind)) obj.metadata.namespace = namespace;
    if (obj.kind === 'RoleBinding' || obj.kind === 'ClusterRoleBinding') {
      for (const s of (obj.subjects as unknown[] | undefined) ?? []) if (isMap(s) && s.kind === 'ServiceAccount') s.namespace = namespace;
    }
  }
}

const podTemplate = (obj: KObject): Record<string, unknown> | undefined => {
  const spec = obj.spec;
  if (!isMap(spec)) return undefined;
  if (['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job'].includes(obj.kind) && isMap(spec.template)) return spec.template;
  return undefined;
};

function applyLabels(entries: Entry[], labels: unknown, where: string): void {
  if (labels === undefined) return;
  if (!Array.isArray(labels)) fail(where, 'labels must be a list');
  for (const [i, l] of labels.entries()) {
    const at = `${where} labels[${i}]`;
    if (!isMap(l) || !isMap(l.pairs)) fail(at, 'needs pairs');
    for (const key of Object.keys(l)) if (!['pairs', 'includeSelectors', 'includeTemplates'].includes(key)) fail(at, `unsupported field "${key}"`);
    if (l.includeSelectors === true) fail(at, 'includeSelectors: true is not supported (selectors are immutable; deploy/ does not use it)');
    const pairs = l.pairs as Record<string, unknown>;
    for (const v of Object.values(pairs)) if (typeof v !== 'string') fail(at, 'label values must be strings');
    for (const { obj } of entries) {
      obj.metadata.labels = { ...(obj.metadata.labels ?? {}), ...(pairs as Record<string, string>) };
      const t = podTemplate(obj);
      if (l.includeTemplates === true && t) {
        const meta = (t.metadata ??= {}) as Record<string, unknown>;
        meta.labels = { ...((meta.labels as Record<string, string> | undefined) ?? {}), ...(pairs as Record<string, string>) };
      }
    }
  }
}

function podContainers(obj: KObject): Record<string, unknown>[] {
  const spec = podTemplate(obj)?.spec;
  if (!isMap(spec)) return [];
  return [...((spec.initContainers as unknown[] | undefined) ?? []), ...((spec.containers as unknown[] | undefined) ?? [])].filter(isMap);
}

/** The image name without tag or digest. */
export function imageName(image: string): string {
  const at = image.indexOf('@');
  const noDigest = at >= 0 ? image.slice(0, at) : image;
  const colon = noDigest.lastIndexOf(':');
  return colon > noDigest.lastIndexOf('/') ? noDigest.slice(0, colon) : noDigest;
}

function applyImages(entries: Entry[], images: unknown, where: string): void {
  if (images === undefined) return;
  if (!Array.isArray(images)) fail(where, 'images must be a list');
  for (const [i, img] of images.entries()) {
    const at = `${where} images[${i}]`;
    if (!isMap(img) || typeof img.name !== 'string') fail(at, 'needs a name');
    for (const key of Object.keys(img)) if (!['name', 'newName', 'newTag', 'digest'].includes(key)) fail(at, `unsupported field "${key}"`);
    for (const { obj } of entries) {
      for (const c of podContainers(obj)) {
        if (typeof c.image !== 'string' || imageName(c.image) !== img.name) continue;
        const name = typeof img.newName === 'string' ? img.newName : img.name;
        const rest = c.image.slice(imageName(c.image).length);
        c.image = typeof img.digest === 'string' ? `${name}@${img.digest}` : typeof img.newTag === 'string' ? `${name}:${img.newTag}` : `${name}${rest}`;
      }
    }
  }
}

// ---- name references ----------------------------------------------------------------------

function fixConfigMapReferences(entries: Entry[]): void {
  const renamed = new Map<string, string>();
  for (const e of entries) {
    if (e.obj.kind === 'ConfigMap' && e.originalName) renamed.set(`${e.obj.metadata.namespace ?? ''}/${e.originalName}`, e.obj.metadata.name);
  }
  if (renamed.size === 0) return;
  for (const { obj } of entries) {
    const spec = podTemplate(obj)?.spec;
    if (!isMap(spec)) continue;
    const rename = (ref: unknown): void => {
      if (!isMap(ref) || typeof ref.name !== 'string') return;
      const to = renamed.get(`${obj.metadata.namespace ?? ''}/${ref.name}`);
      if (to) ref.name = to;
    };
    for (const v of ((spec.volumes as unknown[] | undefined) ?? []).filter(isMap)) {
      rename(v.configMap);
      if (isMap(v.projected)) for (const s of ((v.projected.sources as unknown[] | undefined) ?? []).filter(isMap)) rename(s.configMap);
    }
    for (const c of podContainers(obj)) {
      for (const env of ((c.env as unknown[] | undefined) ?? []).filter(isMap)) if (isMap(env.valueFrom)) rename(env.valueFrom.configMapKeyRef);
      for (const from of ((c.envFrom as unknown[] | undefined) ?? []).filter(isMap)) rename(from.configMapRef);
    }
  }
}

function assertUnique(entries: Entry[], where: string): void {
  const seen = new Set<string>();
  for (const { obj } of entries) {
    const id = `${obj.apiVersion.split('/')[0]}|${obj.kind}|${obj.metadata.namespace ?? ''}|${obj.metadata.name}`;
    if (seen.has(id)) fail(where, `duplicate resource ${obj.kind} ${obj.metadata.namespace ?? ''}/${obj.metadata.name}`);
    seen.add(id);
  }
}
