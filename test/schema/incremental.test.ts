// The incremental loader (ParseCache: per-file parses, per-peer drafts and models, per-peer
// cross-reference checks) must give exactly what a full load gives: same model, same diagnostics
// in the same order. Random edit sequences (changes, additions, deletions, including edits that
// introduce and then fix errors) are applied to a generated fabric, comparing after every step.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createIncrementalLoader } from '../../schema/incremental.ts';
import { loadFabricFiles } from '../../schema/load.ts';
import { indexFabric, createFabricIndexer, sliceFromIndex } from '../../reconciler/slice/slice.ts';
import { generateFabricFiles, peerName } from '../fixtures/generate-fabric.ts';

type Files = Map<string, Uint8Array | string>;

const PEERS = 8;
const base = (): Files => generateFabricFiles({ peers: PEERS, exports: 24, imports: 40, policies: 16, seed: 3 });

const text = (v: Uint8Array | string | undefined): string | undefined => (v === undefined ? undefined : typeof v === 'string' ? v : Buffer.from(v).toString('utf8'));
const pick = <T>(list: readonly T[], n: number): T | undefined => (list.length ? list[n % list.length] : undefined);
const under = (files: Files, part: string): string[] => [...files.keys()].filter((p) => p.includes(part)).sort();

const PEM = '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2VydGlmaWNhdGUgZm9yIHRlc3Rz\n-----END CERTIFICATE-----\n';

/** One edit; `a` and `b` pick files and values. Returns a short label (for failure reports). */
const EDITS: Array<(files: Files, original: Files, a: number, b: number) => string> = [
  // Policies: allow <-> deny, a selector error and its fix, an unknown attribute (warning).
  (f, _o, a) => {
    const p = pick(under(f, '/policies/'), a);
    if (!p) return 'noop';
    const t = text(f.get(p))!;
    f.set(p, t.includes('action: allow') ? t.replace('action: allow', 'action: deny') : t.replace('action: deny', 'action: allow'));
    return `toggle ${p}`;
  },
  (f, _o, a) => {
    const p = pick(under(f, '/policies/'), a);
    if (!p) return 'noop';
    f.set(p, text(f.get(p))!.replace('operator: In', 'operator: Exists').replace('peer.clusterlink.net/name', 'client.example.com/x'));
    return `selector ${p}`;
  },
  // Imports: a dangling source peer, a dangling export, a duplicate port, a self-import, duplicate sources.
  (f, _o, a, b) => {
    const p = pick(under(f, '/imports/'), a);
    if (!p) return 'noop';
    f.set(p, text(f.get(p))!.replace(/- peer: p\d+/, b % 2 ? '- peer: p99' : `- peer: ${peerName(b % PEERS)}`));
    return `source peer ${p}`;
  },
  (f, _o, a, b) => {
    const p = pick(under(f, '/imports/'), a);
    if (!p) return 'noop';
    f.set(p, text(f.get(p))!.replace(/exportName: svc-\d+/, `exportName: svc-${String(b % 30).padStart(4, '0')}`));
    return `export name ${p}`;
  },
  (f, _o, a, b) => {
    const p = pick(under(f, '/imports/'), a);
    if (!p) return 'noop';
    f.set(p, text(f.get(p))!.replace(/port: \d+/, `port: ${10001 + (b % 4)}`));
    return `port ${p}`;
  },
  (f, _o, a) => {
    const p = pick(under(f, '/imports/'), a);
    if (!p) return 'noop';
    const t = text(f.get(p))!;
    const m = /( {4}- peer: \S+\n {6}exportName: \S+\n {6}exportNamespace: \S+\n)/.exec(t);
    if (m) f.set(p, `${t}${m[1]}`);
    return `duplicate source ${p}`;
  },
  // Valid rewiring: point an import at an existing export, add an export (new importers appear in slices).
  (f, _o, a, b) => {
    const imp = pick(under(f, '/imports/'), a);
    const exp = pick(under(f, '/exports/'), b);
    if (!imp || !exp) return 'noop';
    const t = text(f.get(exp))!;
    const name = /name: (\S+)/.exec(t)?.[1];
    const ns = /namespace: (\S+)/.exec(t)?.[1];
    if (!name || !ns) return 'noop';
    const source = `- peer: ${exp.split('/')[1]}\n      exportName: ${name}\n      exportNamespace: ${ns}\n`;
    f.set(imp, text(f.get(imp))!.replace(/- peer: \S+\n {6}exportName: \S+\n {6}exportNamespace: \S+\n/, source));
    return `retarget ${imp} to ${exp}`;
  },
  (f, _o, a, b) => {
    const owner = peerName(a % PEERS);
    const name = `svc-${String(b % 30).padStart(4, '0')}`;
    f.set(`peers/${owner}/exports/web-${name}.yaml`, `apiVersion: clusterlink.net/v1alpha1\nkind: Export\nmetadata:\n  name: ${name}\n  namespace: web\nspec:\n  port: 8080\n`);
    return `add export ${owner}/web/${name}`;
  },
  // Exports: delete one (its importers now dangle), change its port, duplicate it.
  (f, _o, a) => {
    const p = pick(under(f, '/exports/'), a);
    if (p) f.delete(p);
    return `delete ${p}`;
  },
  (f, _o, a, b) => {
    const p = pick(under(f, '/exports/'), a);
    if (!p) return 'noop';
    f.set(p, text(f.get(p))!.replace(/port: \d+/, `port: ${8000 + (b % 3)}`));
    return `export port ${p}`;
  },
  (f, _o, a) => {
    const p = pick(under(f, '/exports/'), a);
    if (!p) return 'noop';
    f.set(p.replace('.yaml', '-copy.yaml'), f.get(p)!);
    return `duplicate ${p}`;
  },
  // Restore any file of the original fabric (fixes most errors above), or all of them.
  (f, o, a) => {
    const p = pick([...o.keys()].sort(), a)!;
    f.set(p, o.get(p)!);
    return `restore ${p}`;
  },
  (f, o) => {
    f.clear();
    for (const [k, v] of o) f.set(k, v);
    return 'restore all';
  },
  // Peers: remove peer.yaml (missing-peer, dangling imports), add a peer, a gateway clash, a bad directory name.
  (f, _o, a) => {
    const p = `peers/${peerName(a % PEERS)}/peer.yaml`;
    f.delete(p);
    return `delete ${p}`;
  },
  (f, _o, a) => {
    const n = `q${a % 3}`;
    f.set(`peers/${n}/peer.yaml`, `apiVersion: clusterlink.net/v1alpha1\nkind: Peer\nmetadata:\n  name: ${n}\nspec:\n  gateways:\n    - host: 10.9.${a % 3}.1\n      port: 443\n`);
    f.set(`peers/${n}/exports/web-svc-0001.yaml`, 'apiVersion: clusterlink.net/v1alpha1\nkind: Export\nmetadata:\n  name: svc-0001\n  namespace: web\nspec:\n  port: 80\n');
    return `add peer ${n}`;
  },
  (f, _o, a, b) => {
    const p = `peers/${peerName(a % PEERS)}/peer.yaml`;
    const t = text(f.get(p));
    if (t) f.set(p, t.replace(/host: \S+/, `host: 10.0.${b % PEERS}.1`));
    return `gateway ${p}`;
  },
  (f, _o, a) => {
    f.set(`peers/Bad${a % 2}/peer.yaml`, 'apiVersion: clusterlink.net/v1alpha1\nkind: Peer\n');
    return 'bad peer dir';
  },
  // Files: YAML syntax error, unknown field, wrong kind, an empty objects file, comments and quotes
  // (the slower parser paths), bytes instead of text, a private key, unknown and ignored files.
  (f, _o, a, b) => {
    const p = pick([...f.keys()].filter((k) => k.endsWith('.yaml')).sort(), a);
    if (!p) return 'noop';
    const t = text(f.get(p))!;
    const variants = [
      t.replace(/port: (\d+)/, 'port: [$1'),
      t.replace('metadata:', 'metadat:'),
      t.replace(/kind: \w+/, 'kind: Export'),
      '# nothing here yet\n',
      `# a comment & more\n${t.replace(/name: (\S+)/, "name: '$1'")}`,
      `---\n${t}---\n`,
      t.replace(/name: (\S+)/, 'name: $1 # trailing comment'),
      t.replace('apiVersion', 'apiVersion: v2\nfoo'),
    ];
    f.set(p, variants[b % variants.length]!);
    return `variant ${b % variants.length} of ${p}`;
  },
  (f, _o, a) => {
    const p = pick([...f.keys()].sort(), a)!;
    const v = f.get(p)!;
    f.set(p, typeof v === 'string' ? new Uint8Array(Buffer.from(v)) : Buffer.from(v).toString('utf8'));
    return `bytes/text ${p}`;
  },
  (f, _o, a, b) => {
    const p = `peers/${peerName(a % PEERS)}/${['notes.txt', 'peer.pem', 'README.md', 'exports/key.yaml'][b % 4]}`;
    f.set(p, p.endsWith('key.yaml') ? '# oops\nkey: |\n  -----BEGIN PRIVATE KEY-----\n  MC4CAQAwBQYDK2VwBCIEIA==\n  -----END PRIVATE KEY-----\n' : PEM);
    return `add ${p}`;
  },
  (f, _o, a) => {
    const p = pick([...f.keys()].filter((k) => !k.endsWith('peer.yaml')).sort(), a);
    if (p) f.delete(p);
    return `delete ${p}`;
  },
  (f, o, a) => {
    if (a % 2 && f.has('fabric.yaml')) f.delete('fabric.yaml');
    else f.set('fabric.yaml', o.get('fabric.yaml')!);
    f.set(a % 3 ? 'README.md' : 'docs/x.md', `edit ${a}\n`);
    return 'fabric.yaml / root files';
  },
];

const edit = fc.record({ op: fc.nat({ max: EDITS.length - 1 }), a: fc.nat({ max: 1000 }), b: fc.nat({ max: 1000 }) });

describe('incremental load equals a full load', () => {
  it('after every step of random edit sequences (property)', () => {
    const original = base();
    fc.assert(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 25 }), (steps) => {
        const files: Files = new Map(original);
        const loader = createIncrementalLoader();
        const indexer = createFabricIndexer();
        const log: string[] = [];
        expect(JSON.stringify(loader.load(files))).toBe(JSON.stringify(loadFabricFiles(files)));
        for (const s of steps) {
          log.push(EDITS[s.op]!(files, original, s.a, s.b));
          // A fresh Map per revision, as the sources hand over.
          const snapshot: Files = new Map(files);
          const full = loadFabricFiles(snapshot);
          const inc = loader.load(snapshot);
          expect(JSON.stringify(inc), log.join(' → ')).toBe(JSON.stringify(full));
          if (full.ok && inc.ok) {
            // The incremental index gives the slices a fresh index gives.
            const fresh = indexFabric(full.fabric);
            const index = indexer.update(inc.fabric);
            for (const p of [...inc.fabric.peers.map((x) => x.name), 'nobody']) {
              expect(JSON.stringify(sliceFromIndex(index, p)), `${log.join(' → ')} slice ${p}`).toBe(JSON.stringify(sliceFromIndex(fresh, p)));
            }
          }
        }
      }),
      { numRuns: 100 },
    );
  });

  it('reuses unchanged peers: a one-file change keeps every other PeerModel object', () => {
    const files = base();
    const loader = createIncrementalLoader();
    const first = loader.load(files);
    const path = under(files, '/policies/')[0]!;
    const next = new Map(files);
    next.set(path, text(files.get(path))!.replace('action: allow', 'action: deny').replace('action: deny', 'action: allow') + '# edited\n');
    const second = loader.load(next);
    if (!first.ok || !second.ok) throw new Error('generated fabric invalid');
    const owner = path.split('/')[1];
    for (let i = 0; i < first.fabric.peers.length; i++) {
      const a = first.fabric.peers[i]!;
      expect(a === second.fabric.peers[i], a.name).toBe(a.name !== owner);
    }
  });

  it('sees a byte array overwritten in place, and a change of limits', () => {
    const files = base();
    const path = under(files, '/exports/')[0]!;
    const buf = new Uint8Array(Buffer.from(text(files.get(path))!));
    const withBytes: Files = new Map(files).set(path, buf);
    const loader = createIncrementalLoader();
    expect(loader.load(withBytes).ok).toBe(true);
    // Same array object, new content: "kind: Export" becomes "kind: Exprt " (an unknown kind).
    buf.set(Buffer.from('kind: Exprt '), Buffer.from(buf).indexOf('kind: Export'));
    const again = loader.load(new Map(withBytes));
    expect(again.ok).toBe(false);
    expect(JSON.stringify(again)).toBe(JSON.stringify(loadFabricFiles(withBytes)));
    const small = createIncrementalLoader({ limits: { maxFileBytes: 100 } });
    expect(JSON.stringify(small.load(files))).toBe(JSON.stringify(loadFabricFiles(files, { limits: { maxFileBytes: 100 } })));
  });

  it('gives the same bytes whether files come as text or as bytes', () => {
    const files = base();
    const bytes: Files = new Map([...files].map(([k, v]) => [k, new Uint8Array(Buffer.from(text(v)!))]));
    const loader = createIncrementalLoader();
    expect(JSON.stringify(loader.load(files))).toBe(JSON.stringify(loader.load(bytes)));
    expect(JSON.stringify(loader.load(bytes))).toBe(JSON.stringify(loadFabricFiles(files)));
  });
});
