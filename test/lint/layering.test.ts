// The folder layering is enforced by lint (eslint.config.js `layer`): a forbidden import fails `npm run lint`.
import { ESLint } from 'eslint';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const eslint = new ESLint({ cwd: ROOT });

async function errorsFor(file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: join(ROOT, file) });
  return (result?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('layering', () => {
  it('refuses the data plane importing the reconciler, and protocol/ importing either side', async () => {
    expect(await errorsFor('dataplane/example.ts', "import { slice } from '../reconciler/slice/slice.ts';\nexport const x = slice;\n")).toEqual([expect.stringContaining('share through protocol/')]);
    expect(await errorsFor('dataplane/xds-client/example.ts', "import { derToPem } from '../../reconciler/pki/encoding.ts';\nexport const x = derToPem;\n")).toHaveLength(1);
    expect(await errorsFor('protocol/example.ts', "import { startDataplane } from '../dataplane/dataplane.ts';\nexport const x = startDataplane;\n")).toEqual([expect.stringContaining('imports neither side')]);
    expect(await errorsFor('schema/example.ts', "import { TUNNEL } from '../protocol/contracts.ts';\nimport { slice } from '../reconciler/slice/slice.ts';\nexport const x = [TUNNEL, slice];\n")).toHaveLength(1);
  });

  it('allows what the layering allows', async () => {
    expect(await errorsFor('dataplane/example.ts', "import { TUNNEL } from '../protocol/contracts.ts';\nexport const x = TUNNEL;\n")).toEqual([]);
    expect(await errorsFor('reconciler/xds/example.ts', "import { TUNNEL } from '../../protocol/contracts.ts';\nimport { startDataplane } from '../../dataplane/dataplane.ts';\nexport const x = [TUNNEL, startDataplane];\n")).toEqual([]);
  });
});
