// `npm run schema:json`: writes schema/json/<Kind>.json from the zod kinds.
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderJsonSchemas } from './json-schema.ts';

const dir = fileURLToPath(new URL('./json/', import.meta.url));
mkdirSync(dir, { recursive: true });
for (const [name, text] of renderJsonSchemas()) {
  writeFileSync(`${dir}${name}`, text);
  process.stdout.write(`wrote schema/json/${name}\n`);
}
