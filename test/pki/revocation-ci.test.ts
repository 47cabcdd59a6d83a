// An emergency revocation must pass CI: a commit that only adds a peer's certificate to
// fabric.yaml spec.revoked is valid (exit 0), with warnings naming every import that still lists
// the revoked peer as a source — reconcilers apply it at once, and CI must not block it.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { EXAMPLE_DIR } from '../../reconciler/demo/fresh-fabric.ts';
import { fingerprintSha256 } from '../../reconciler/pki/index.ts';
import { runClgo } from '../fixtures/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'clgo-revoke-ci-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('clgo validate on a revocation-only commit', () => {
  it('passes with a warning per affected import instead of failing with import-source-revoked', async () => {
    cpSync(EXAMPLE_DIR, dir, { recursive: true });
    expect((await runClgo('validate', dir)).code).toBe(0);
    const doc = parseDocument(readFileSync(join(dir, 'fabric.yaml'), 'utf8'));
    doc.setIn(['spec', 'revoked'], doc.createNode({ fingerprints: [fingerprintSha256(readFileSync(join(dir, 'peers/edge/peer.pem'), 'utf8'))] }));
    writeFileSync(join(dir, 'fabric.yaml'), doc.toString());

    const r = await runClgo('validate', dir);
    expect(r.out).toMatch(/^valid: /m);
    expect(r.code).toBe(0);
    // east imports iperf3 from west and edge: the warning names that import and what is left of it.
    expect(r.out).toMatch(/peers\/east\/imports\/iperf3\.yaml:\d+:\d+: warning\[import-source-revoked\]: import perf\/iperf3 of peer east uses peer edge, whose certificate is revoked: traffic goes to the remaining source\(s\): west/);
    expect(r.out).toContain('warning[peer-certificate-revoked]');
    // --strict still lets a team gate on warnings if it wants to.
    expect((await runClgo('validate', dir, '--strict')).code).toBe(1);
  });
});
