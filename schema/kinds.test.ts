import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { KNOWN_FIELDS, SERVER_METADATA_FIELDS, fieldNames } from './kinds.ts';

describe('fieldNames (the "did you mean" vocabulary)', () => {
  it('reads field names through optional, array, union and record values, not record keys', () => {
    const schema = z.strictObject({
      outer: z.array(z.strictObject({ nested: z.string().optional() })).optional(),
      either: z.union([z.strictObject({ left: z.number() }), z.strictObject({ right: z.number() })]),
      byName: z.record(z.string(), z.strictObject({ inRecord: z.boolean().nullable() })),
    });
    expect(fieldNames([schema])).toEqual(['outer', 'nested', 'either', 'left', 'right', 'byName', 'inRecord']);
  });

  it('covers every field of every kind, including nested and server-set ones', () => {
    for (const f of ['apiVersion', 'status', 'requireSignedCommits', 'publicKey', 'gateways', 'targetPort', 'lbScheme', 'exportNamespace', 'matchExpressions', 'operator', ...SERVER_METADATA_FIELDS]) {
      expect(KNOWN_FIELDS).toContain(f);
    }
    expect(new Set(KNOWN_FIELDS).size).toBe(KNOWN_FIELDS.length);
  });
});
