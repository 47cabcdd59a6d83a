// JSON Schema (draft 2020-12) per kind, generated from the zod kinds so editors (yaml-language-
// server) and other tools check fabric files by the same rules as `clgo validate`. The committed
// files in schema/json/ are regenerated with `npm run schema:json`; a test fails when they are stale.
import { z } from 'zod';
import { API_VERSION, KINDS, kindSchemas, type Kind } from './kinds.ts';

export function jsonSchemaFor(kind: Kind): Record<string, unknown> {
  const schema = z.toJSONSchema(kindSchemas[kind], { target: 'draft-2020-12', unrepresentable: 'any', io: 'input' }) as Record<string, unknown>;
  return {
    $id: `https://clusterlink-gitops.dev/schema/${API_VERSION}/${kind}.json`,
    title: `${kind} (${API_VERSION})`,
    description: `A clusterlink-gitops ${kind}. Generated from schema/kinds.ts by npm run schema:json; do not edit.`,
    ...schema,
  };
}

/** File name → pretty JSON text, for every kind. */
export function renderJsonSchemas(): Map<string, string> {
  return new Map(KINDS.map((k) => [`${k}.json`, `${JSON.stringify(jsonSchemaFor(k), null, 2)}\n`]));
}
