import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { guardUploadPackResponse, PackRefusedError, type PackLimits } from './pack-guard.ts';

const dir = mkdtempSync(join(tmpdir(), 'clgo-pack-guard-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const git = (args: string[], input?: Buffer): Buffer => execFileSync('git', ['-C', dir, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { input, maxBuffer: 64 * 1024 * 1024 });
const LIMITS: PackLimits = { maxObjectBytes: 1024 * 1024, maxObjects: 10_000, maxInflatedBytes: 64 * 1024 * 1024 };

/** An upload-pack response as git http-backend sends it: NAK, then the pack on side-band channel 1 (with a progress line), then a flush. */
function response(pack: Buffer): Buffer {
  const pkt = (payload: Buffer): Buffer => Buffer.concat([Buffer.from((payload.length + 4).toString(16).padStart(4, '0')), payload]);
  const out = [pkt(Buffer.from('NAK\n')), pkt(Buffer.from('\x02Counting objects\n'))];
  for (let i = 0; i < pack.length; i += 1000) out.push(pkt(Buffer.concat([Buffer.from([1]), pack.subarray(i, i + 1000)])));
  out.push(Buffer.from('0000'));
  return Buffer.concat(out);
}

/** The pack inside a response (side-band channel 1). */
function packOf(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let pos = 0; pos < body.length; ) {
    const len = Number.parseInt(body.toString('latin1', pos, pos + 4), 16);
    if (len === 0) {
      pos += 4;
      continue;
    }
    if (body[pos + 4] === 1) parts.push(body.subarray(pos + 5, pos + len));
    pos += len;
  }
  return Buffer.concat(parts);
}

describe('guardUploadPackResponse', () => {
  git(['init', '-q', '-b', 'main']);
  // Similar files over several commits so the pack holds ofs-deltas, then a 20 MB file of zeros, then more deltas after it.
  const text = (n: number): string => Array.from({ length: 2000 }, (_, i) => `line ${i} ${i % 97 === n ? 'changed' : ''}`).join('\n');
  for (let n = 0; n < 3; n++) {
    writeFileSync(join(dir, 'policy.yaml'), text(n));
    git(['add', '.']);
    git(['commit', '-qm', `c${n}`]);
  }
  writeFileSync(join(dir, 'big.bin'), Buffer.alloc(20 * 1024 * 1024));
  git(['add', '.']);
  git(['commit', '-qm', 'bomb']);
  for (let n = 3; n < 6; n++) {
    writeFileSync(join(dir, 'policy.yaml'), text(n));
    git(['add', '.']);
    git(['commit', '-qm', `c${n}`]);
  }
  git(['rm', '-q', 'big.bin']);
  git(['commit', '-qm', 'revert']);
  const pack = git(['pack-objects', '--stdout', '--revs', '-q'], Buffer.from('main\n'));
  const bigOid = git(['rev-parse', 'HEAD~1:big.bin']).toString().trim();

  it('passes a pack within the limits through unchanged', async () => {
    const body = response(pack);
    const r = await guardUploadPackResponse(body, { ...LIMITS, maxObjectBytes: 32 * 1024 * 1024 });
    expect(r.dropped).toEqual([]);
    expect(r.body).toBe(body);
  });

  it('cuts an object over the limit out by its header (without holding it) and rebuilds a pack git accepts', async () => {
    expect(pack.length).toBeLessThan(1024 * 1024); // 20 MB of zeros: a few KB on the wire
    const r = await guardUploadPackResponse(response(pack), LIMITS);
    expect(r.dropped).toEqual([{ oid: bigOid, type: 'blob', bytes: 20 * 1024 * 1024 }]);
    const rebuilt = packOf(r.body);
    // git itself checks the rebuilt pack: object count, delta offsets, trailing checksum.
    const verify = join(dir, 'check.pack');
    writeFileSync(verify, rebuilt);
    const out = git(['index-pack', '-v', verify]).toString();
    expect(out).toMatch(/^[0-9a-f]{40}$/m);
    const listed = git(['verify-pack', '-v', verify.replace(/\.pack$/, '.idx')]).toString();
    expect(listed).not.toContain(bigOid);
    expect(listed).toMatch(/chain length = 1: \d+ object/); // deltas survived the rebuild
    expect(r.body.subarray(0, 8).toString()).toBe('0008NAK\n');
  });

  it('refuses a pack with more objects than allowed, or more inflated bytes in total', async () => {
    await expect(guardUploadPackResponse(response(pack), { ...LIMITS, maxObjects: 5 })).rejects.toThrow(PackRefusedError);
    await expect(guardUploadPackResponse(response(pack), { ...LIMITS, maxObjectBytes: 32 * 1024 * 1024, maxInflatedBytes: 10 * 1024 * 1024 })).rejects.toThrow(/inflates to more than/);
  });

  it('refuses a corrupted pack and an object that inflates past its declared size', async () => {
    const bad = Buffer.from(pack);
    bad[bad.length - 30]! ^= 0xff;
    await expect(guardUploadPackResponse(response(bad), LIMITS)).rejects.toThrow(PackRefusedError);
    // An object header declaring 1 byte in front of a longer zlib stream.
    const zlib = await import('node:zlib');
    const data = zlib.deflateSync(Buffer.alloc(5000, 0x61));
    const body = Buffer.concat([Buffer.from('PACK'), Buffer.from([0, 0, 0, 2, 0, 0, 0, 1]), Buffer.from([0x31]), data]);
    const { createHash } = await import('node:crypto');
    const lying = Buffer.concat([body, createHash('sha1').update(body).digest()]);
    await expect(guardUploadPackResponse(response(lying), LIMITS)).rejects.toThrow(/declared 1 bytes/);
  });
});
