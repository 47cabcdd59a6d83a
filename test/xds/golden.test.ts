// Golden files: the Envoy resources generated for each peer of fabric-example (committed
// certificates from peers/*/peer.pem, a placeholder private key) decode with Envoy's protos,
// re-encode to the same bytes, pass protoc-gen-validate-style checks and references that resolve,
// and equal test/xds/golden/<peer>.json. Nested Any fields are expanded ("@type" + fields) so a
// diff of the golden file reads as a diff of the Envoy config.
//
// Regenerate after an intended change:  UPDATE_GOLDEN=1 npx vitest run test/xds/golden.test.ts
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeAny, encodeAny, knowsType, TYPE_URL } from '../../protocol/envoy-protos.ts';
import { EXAMPLE_DIR } from '../../reconciler/demo/fresh-fabric.ts';
import { slice } from '../../reconciler/slice/slice.ts';
import { buildResources, resourceHash, ROUTE_TYPE_URL, XDS_NAMES, type XdsResources } from '../../reconciler/xds/resources.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import type { FabricModel } from '../../schema/model.ts';
import { readFabricDir } from '../../schema/read-dir.ts';

const GOLDEN_DIR = fileURLToPath(new URL('./golden/', import.meta.url));
const UPDATE = process.env.UPDATE_GOLDEN === '1';
const PEERS = ['east', 'edge', 'west'] as const;
// As deploy/ mounts the peer Secret in the tunnel pods.
const OPTIONS = { egressAddress: '127.0.0.1', authz: { host: '127.0.0.1', port: 9191 }, identityFiles: { certificateFile: '/var/run/clgo/peer/tls.crt', privateKeyFile: '/var/run/clgo/peer/tls.key' } };

let fabric: FabricModel;
const built = new Map<string, XdsResources>();

beforeAll(async () => {
  const r = loadFabricFiles(await readFabricDir(EXAMPLE_DIR));
  if (!r.ok) throw new Error(`fabric-example invalid: ${JSON.stringify(r.errors[0])}`);
  fabric = r.fabric;
  for (const peer of PEERS) built.set(peer, buildResources(slice(fabric, peer), OPTIONS));
});

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Decoded message → JSON with every nested google.protobuf.Any expanded (and checked to be a known type). */
function expand(v: unknown, anyTypes: string[]): Json {
  if (v === null || v === undefined) return null;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (Array.isArray(v)) return v.map((x) => expand(x, anyTypes));
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (typeof o.type_url === 'string' && o.value instanceof Uint8Array && Object.keys(o).length === 2) {
      anyTypes.push(o.type_url);
      return { '@type': o.type_url, ...(expand(decodeAny(o.type_url, o.value), anyTypes) as Record<string, Json>) };
    }
    // decodeAny adds each set oneof's name → chosen field ("address": "socket_address"): drop those echoes.
    const virtualOneof = (k: string, x: unknown): boolean => typeof x === 'string' && x !== k && /^[a-z][A-Za-z0-9_]*$/.test(x) && Object.hasOwn(o, x);
    return Object.fromEntries(Object.entries(o).filter(([k, x]) => !virtualOneof(k, x)).map(([k, x]) => [k, expand(x, anyTypes)]));
  }
  return v as Json;
}

type Doc = Record<'listeners' | 'clusters' | 'endpoints' | 'secrets' | 'routes', Record<string, Record<string, Json>>>;

function toDoc(r: XdsResources): { doc: Doc; anyTypes: string[] } {
  const anyTypes: string[] = [];
  const section = (m: Map<string, { type_url: string; value: Buffer }>) =>
    Object.fromEntries([...m].sort(([a], [b]) => a.localeCompare(b)).map(([name, any]) => [name, expand(decodeAny(any.type_url, any.value), anyTypes) as Record<string, Json>]));
  return { doc: { listeners: section(r.listeners), clusters: section(r.clusters), endpoints: section(r.endpoints), secrets: section(r.secrets), routes: section(r.routes ?? new Map()) }, anyTypes };
}

/** Every value under `key` anywhere in a JSON tree. */
function collect(v: Json, key: string, out: Json[] = []): Json[] {
  if (Array.isArray(v)) for (const x of v) collect(x, key, out);
  else if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (k === key) out.push(x);
      collect(x, key, out);
    }
  }
  return out;
}

const obj = (v: Json | undefined): Record<string, Json> => (v && typeof v === 'object' && !Array.isArray(v) ? v : {});
function findTyped(v: Json, type: string, out: Array<Record<string, Json>> = []): Array<Record<string, Json>> {
  if (Array.isArray(v)) for (const x of v) findTyped(x, type, out);
  else if (v && typeof v === 'object') {
    if (v['@type'] === `type.googleapis.com/${type}`) out.push(v);
    for (const x of Object.values(v)) findTyped(x, type, out);
  }
  return out;
}

/** protoc-gen-validate-style rules (the cheap ones) and cross-references; returns the violations. */
function violations(doc: Doc): string[] {
  const errs: string[] = [];
  const port = (where: string, sa: Record<string, Json>) => {
    const p = sa.port_value;
    if (typeof p !== 'number' || p < 1 || p > 65535) errs.push(`${where}: port_value ${String(p)} not in 1..65535`);
    if (typeof sa.address !== 'string' || sa.address.length === 0) errs.push(`${where}: empty socket address`);
  };
  const positiveDuration = (where: string, d: Json | undefined) => {
    if (d === undefined) return;
    const s = Number(obj(d).seconds ?? 0) + Number(obj(d).nanos ?? 0) / 1e9;
    if (!(s > 0)) errs.push(`${where}: duration must be > 0`);
  };
  for (const [section, items] of Object.entries(doc)) {
    for (const [name, r] of Object.entries(items)) {
      if (name.length === 0) errs.push(`${section}: empty name`);
      if ((r.name ?? r.cluster_name) !== name) errs.push(`${section}/${name}: resource name ${String(r.name ?? r.cluster_name)} differs from its key`);
      for (const sa of collect(r, 'socket_address')) port(`${section}/${name}`, obj(sa));
    }
  }
  // Listeners: a filter chain, named filters with typed config.
  for (const [name, l] of Object.entries(doc.listeners)) {
    const chains = Array.isArray(l.filter_chains) ? l.filter_chains : [];
    if (chains.length === 0) errs.push(`listener ${name}: no filter_chains`);
    for (const c of chains) for (const f of (obj(c).filters as Json[] | undefined) ?? []) if (!obj(f).name || !obj(f).typed_config) errs.push(`listener ${name}: filter without name or typed_config`);
  }
  // Clusters: connect_timeout > 0; EDS ⇔ a ClusterLoadAssignment; STATIC/STRICT_DNS carry their endpoints.
  for (const [name, c] of Object.entries(doc.clusters)) {
    positiveDuration(`cluster ${name} connect_timeout`, c.connect_timeout);
    if (c.type === 'EDS') {
      if (!obj(obj(c.eds_cluster_config).eds_config).ads) errs.push(`cluster ${name}: EDS without an ADS config source`);
      if (!doc.endpoints[name]) errs.push(`cluster ${name}: EDS but no ClusterLoadAssignment`);
    } else if (!c.load_assignment) errs.push(`cluster ${name}: ${String(c.type)} without load_assignment`);
  }
  for (const name of Object.keys(doc.endpoints)) if (doc.clusters[name]?.type !== 'EDS') errs.push(`ClusterLoadAssignment ${name}: no EDS cluster of that name`);
  for (const [name, e] of Object.entries(doc.endpoints)) if (collect(e, 'lb_endpoints').flat().length === 0) errs.push(`ClusterLoadAssignment ${name}: no endpoints`);
  // References: tcp_proxy, routes and gRPC services name existing clusters; SDS configs name existing secrets.
  const all = doc as unknown as Json;
  const clusterRefs = [
    ...findTyped(all, 'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy').map((t) => ['tcp_proxy', t.cluster] as const),
    ...collect(all, 'route').map((r) => ['route', obj(r).cluster] as const),
    ...collect(all, 'envoy_grpc').map((g) => ['envoy_grpc', obj(g).cluster_name] as const),
  ];
  for (const [what, ref] of clusterRefs) if (typeof ref !== 'string' || !doc.clusters[ref]) errs.push(`${what} names cluster ${String(ref)}, which does not exist`);
  const sdsRefs = [...collect(all, 'tls_certificate_sds_secret_configs').flat(), ...collect(all, 'validation_context_sds_secret_config')];
  for (const s of sdsRefs) if (typeof obj(s).name !== 'string' || !doc.secrets[obj(s).name as string]) errs.push(`SDS config names secret ${String(obj(s).name)}, which does not exist`);
  for (const s of sdsRefs) if (!obj(obj(s).sds_config).ads) errs.push(`SDS config ${String(obj(s).name)} without an ADS config source`);
  // Secrets: pins are SHA-256 hex (PGV: 64 hex, or 95 with colons); the CA bundle is not empty.
  for (const h of collect(all, 'verify_certificate_hash').flat()) if (typeof h !== 'string' || !/^([0-9a-fA-F]{64}|([0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2})$/.test(h)) errs.push(`verify_certificate_hash ${String(h)} is not a SHA-256`);
  for (const ca of collect(all, 'trusted_ca')) if (!String(obj(ca).inline_string ?? '').includes('BEGIN CERTIFICATE')) errs.push('trusted_ca without a certificate');
  return errs;
}

describe('golden Envoy resources for the 3-peer fabric-example', () => {
  for (const peer of PEERS) {
    it(`${peer}: decode/re-encode losslessly, pass the checks, and equal golden/${peer}.json`, () => {
      const r = built.get(peer)!;
      for (const [type, map] of [[TYPE_URL.listener, r.listeners], [TYPE_URL.cluster, r.clusters], [TYPE_URL.endpoint, r.endpoints], [TYPE_URL.secret, r.secrets], [ROUTE_TYPE_URL, r.routes ?? new Map()]] as const) {
        for (const any of map.values()) {
          expect(any.type_url).toBe(type);
          expect(encodeAny(type, decodeAny(type, any.value)).value.equals(any.value)).toBe(true);
        }
      }
      const { doc, anyTypes } = toDoc(r);
      for (const t of anyTypes) expect(knowsType(t), t).toBe(true);
      expect(violations(doc)).toEqual([]);
      // No real key material in a golden file.
      expect(JSON.stringify(doc)).not.toMatch(/BEGIN (EC |RSA )?PRIVATE KEY-----\n(?!\(placeholder)/);

      const file = join(GOLDEN_DIR, `${peer}.json`);
      const text = JSON.stringify(doc, null, 2) + '\n';
      if (UPDATE) {
        mkdirSync(GOLDEN_DIR, { recursive: true });
        writeFileSync(file, text);
      }
      expect(existsSync(file), `${file} missing: run UPDATE_GOLDEN=1 npx vitest run test/xds/golden.test.ts`).toBe(true);
      expect(JSON.parse(text)).toEqual(JSON.parse(readFileSync(file, 'utf8')));
    });
  }

  it('the checks catch what they claim to (a broken reference, a bad port, an EDS cluster without endpoints)', () => {
    const { doc } = toDoc(built.get('east')!);
    const broken = structuredClone(doc);
    const tcp = findTyped(broken.listeners[XDS_NAMES.egress('web', 'http')]!, 'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy')[0]!;
    tcp.cluster = 'clusterlink/peer/nowhere';
    obj(obj(broken.listeners[XDS_NAMES.egress('perf', 'iperf3')]!.address).socket_address).port_value = 70000;
    delete broken.endpoints[XDS_NAMES.peer('west')];
    const errs = violations(broken);
    expect(errs).toContain('tcp_proxy names cluster clusterlink/peer/nowhere, which does not exist');
    expect(errs.some((e) => /port_value 70000 not in 1\.\.65535/.test(e))).toBe(true);
    expect(errs).toContain(`cluster ${XDS_NAMES.peer('west')}: EDS but no ClusterLoadAssignment`);
  });

  it('the golden files show the slice mapping of docs/xds.md', () => {
    const names = (peer: string) => Object.fromEntries(Object.entries(toDoc(built.get(peer)!).doc).map(([k, v]) => [k, Object.keys(v)]));
    expect(names('east')).toEqual({
      listeners: [XDS_NAMES.egress('perf', 'iperf3'), XDS_NAMES.egress('web', 'http')],
      clusters: [XDS_NAMES.authz, XDS_NAMES.import('perf', 'iperf3'), XDS_NAMES.import('web', 'http'), XDS_NAMES.peer('edge'), XDS_NAMES.peer('west')],
      endpoints: [XDS_NAMES.import('perf', 'iperf3'), XDS_NAMES.import('web', 'http'), XDS_NAMES.peer('edge'), XDS_NAMES.peer('west')],
      secrets: [XDS_NAMES.fabricCa, XDS_NAMES.identity],
      routes: [],
    });
    expect(names('west')).toEqual({
      listeners: [XDS_NAMES.ingress],
      clusters: [XDS_NAMES.authz, XDS_NAMES.export('perf', 'iperf3'), XDS_NAMES.export('web', 'http')],
      endpoints: [],
      secrets: [XDS_NAMES.fabricCa, XDS_NAMES.identity],
      routes: [XDS_NAMES.ingress],
    });
  });

  // What a commit changes for a running Envoy (docs/xds.md "Closing open tunnels"): Envoy rebuilds
  // a changed cluster (TLS contexts included) and drains a changed filter chain.
  it('moving an import between exporters already in use changes only its endpoints; revoking an exporter still changes every egress filter chain', () => {
    const changed = (a: XdsResources, b: XdsResources): string[] =>
      (['listeners', 'clusters', 'endpoints', 'secrets'] as const).flatMap((kind) =>
        [...new Set([...a[kind].keys(), ...b[kind].keys()])].filter((n) => !a[kind].get(n) || !b[kind].get(n) || resourceHash(a[kind].get(n)!) !== resourceHash(b[kind].get(n)!)).map((n) => `${kind} ${n}`),
      );
    const base = slice(fabric, 'east');
    const before = buildResources(base, OPTIONS);
    const iperf = base.imports.find((i) => i.name === 'iperf3')!;
    expect(iperf.sources.map((s) => s.peer)).toEqual(['west', 'edge']);
    // Only edge now: west stays in use by web/http, so the peers east tunnels to are the same.
    const moved = { ...base, imports: base.imports.map((i) => (i === iperf ? { ...i, sources: i.sources.filter((s) => s.peer === 'edge') } : i)) };
    const diff = changed(before, buildResources(moved, OPTIONS));
    // The ext_authz cluster carries the hash of the authorization inputs (imports' exporters among them).
    expect(diff.sort()).toEqual([`clusters ${XDS_NAMES.authz}`, `endpoints ${XDS_NAMES.import('perf', 'iperf3')}`]);
    // A new certificate of edge (as a revocation and re-issue would give): every egress chain and import cluster changes.
    const rekeyed = { ...base, members: base.members.map((m) => (m.name === 'edge' ? { ...m, certificateFingerprint: 'ab'.repeat(32) } : m)) };
    const rekeyDiff = changed(before, buildResources(rekeyed, OPTIONS));
    for (const imp of base.imports) {
      expect(rekeyDiff).toContain(`listeners ${XDS_NAMES.egress(imp.namespace, imp.name)}`);
      expect(rekeyDiff).toContain(`clusters ${XDS_NAMES.import(imp.namespace, imp.name)}`);
    }
    // A removed member (a revoked one is no member): its pin leaves every egress chain.
    const removed = { ...base, members: base.members.filter((m) => m.name !== 'edge') };
    const removedDiff = changed(before, buildResources(removed, OPTIONS));
    for (const imp of base.imports) expect(removedDiff).toContain(`listeners ${XDS_NAMES.egress(imp.namespace, imp.name)}`);
  });
});

