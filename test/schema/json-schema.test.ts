// The committed JSON Schemas match the zod kinds (regenerate with `npm run schema:json`), and
// they agree with the loader: every example document passes, a broken one fails.
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { EXAMPLE_DIR } from '../../reconciler/demo/fresh-fabric.ts';
import { renderJsonSchemas } from '../../schema/json-schema.ts';
import { readFabricDir } from '../../schema/read-dir.ts';

const JSON_DIR = new URL('../../schema/json/', import.meta.url);

describe('JSON Schema of the fabric kinds', () => {
  it('schema/json/ is up to date with schema/kinds.ts (run npm run schema:json if this fails)', () => {
    for (const [name, text] of renderJsonSchemas()) expect(readFileSync(new URL(name, JSON_DIR), 'utf8'), name).toBe(text);
  });

  it('accepts every document of the example fabric and rejects a broken one', async () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    const validators = new Map([...renderJsonSchemas()].map(([name, text]) => [name.replace(/\.json$/, ''), ajv.compile(JSON.parse(text) as object)]));
    let checked = 0;
    for (const [path, bytes] of await readFabricDir(EXAMPLE_DIR)) {
      // Fabric documents only: fabric.yaml and peers/**; .github/ workflows and the like are not fabric kinds.
      if (!path.endsWith('.yaml') || !(path === 'fabric.yaml' || path.startsWith('peers/'))) continue;
      for (const doc of parseAllDocuments(Buffer.from(bytes).toString())) {
        const obj = doc.toJS() as { kind: string };
        const validate = validators.get(obj.kind)!;
        expect(validate(obj), `${path}: ${JSON.stringify(validate.errors)}`).toBe(true);
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(18);
    const exportSchema = validators.get('Export')!;
    expect(exportSchema({ apiVersion: 'clusterlink.net/v1alpha1', kind: 'Export', metadata: { name: 'x', namespace: 'y' }, spec: { port: 70000 } })).toBe(false);
    expect(exportSchema({ apiVersion: 'clusterlink.net/v1alpha1', kind: 'Export', metadata: { name: 'x', namespace: 'y' }, spec: { port: 80, hots: 'a' } })).toBe(false);
  });
});

describe('fast and reference YAML paths', () => {
  it('give the same model, positions included, for the example and a generated fabric', async () => {
    const { loadFabricFiles } = await import('../../schema/load.ts');
    const { generateFabricFiles } = await import('../fixtures/generate-fabric.ts');
    const example = await readFabricDir(EXAMPLE_DIR);
    for (const files of [new Map<string, Uint8Array | string>(example), generateFabricFiles({ peers: 6, exports: 12, imports: 20, policies: 10 })]) {
      // A trailing comment holding "&" sends every file through the reference parser, changing nothing else.
      const forced = new Map([...files].map(([p, b]) => [p, p.endsWith('.yaml') ? `${Buffer.from(b).toString()}\n# & reference parser\n` : b]));
      const fast = loadFabricFiles(files);
      const reference = loadFabricFiles(forced);
      expect(fast.ok).toBe(true);
      expect(JSON.stringify(fast)).toBe(JSON.stringify(reference));
    }
  });
});
