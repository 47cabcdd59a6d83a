// Bounds a fetched pack by what its object headers declare, before anything inflates it whole.
// A pack object's header carries its inflated size (a delta's target size is in the first bytes
// of its delta data), so a 200 MB file of zeros — a few hundred KB on the wire — is known to be
// 200 MB before a byte of it is materialised. Such objects are cut out of the pack (their zlib
// stream is skipped by a streaming inflate whose output is hashed and dropped, never held), the
// pack is rebuilt without them (object count, delta offsets, trailing SHA-1), and isomorphic-git
// indexes only what is left. The commit that needs a dropped object is then refused at the tree
// stage with the object's size, while a later commit that no longer references it (the revert)
// is fetched and applied normally. Counts and the total inflated size are bounded too.
import { createHash } from 'node:crypto';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import zlib from 'node:zlib';

export interface PackLimits {
  /** Inflated size of any one object (blob, tree, commit, tag, or a delta's result). */
  maxObjectBytes: number;
  /** Objects in one pack. */
  maxObjects: number;
  /** Inflated size of all objects kept from one pack (deltas counted by their result). */
  maxInflatedBytes: number;
}

export interface DroppedObject {
  /** Object id (for deltas: unknown, null). */
  oid: string | null;
  type: 'commit' | 'tree' | 'blob' | 'tag' | 'delta';
  /** Declared inflated size. */
  bytes: number;
}

/** The pack is refused as a whole (too many objects, too much in total, malformed). */
export class PackRefusedError extends Error {
  override name = 'PackRefusedError';
}

const TYPES = { 1: 'commit', 2: 'tree', 3: 'blob', 4: 'tag' } as const;
const OFS_DELTA = 6;
const REF_DELTA = 7;
/** Work between two yields to the event loop while scanning (ms). */
const SLICE_MS = 5;

/**
 * Vets a `git-upload-pack` response (pkt-lines, side-band-64k) and returns the response to hand
 * on: the same bytes when every object is within the limits, else the response rebuilt without
 * the oversized objects (listed in `dropped`). Throws PackRefusedError for what cannot be kept.
 */
export async function guardUploadPackResponse(body: Buffer, limits: PackLimits): Promise<{ body: Buffer; dropped: DroppedObject[]; objects: number }> {
  const lines: Buffer[] = [];
  const packParts: Buffer[] = [];
  let pos = 0;
  while (pos < body.length) {
    if (pos + 4 > body.length) throw new PackRefusedError('truncated pkt-line in the upload-pack response');
    const len = Number.parseInt(body.toString('latin1', pos, pos + 4), 16);
    if (!Number.isInteger(len) || (len !== 0 && len < 4) || pos + Math.max(len, 4) > body.length) throw new PackRefusedError('malformed pkt-line in the upload-pack response');
    if (len === 0) {
      if (packParts.length === 0) lines.push(body.subarray(pos, pos + 4));
      pos += 4;
      continue;
    }
    const payload = body.subarray(pos + 4, pos + len);
    const channel = payload[0];
    // Channel 3 is the server's fatal error: isomorphic-git reports it; nothing to vet.
    if (channel === 3) return { body, dropped: [], objects: 0 };
    if (channel === 1) packParts.push(payload.subarray(1));
    else if (channel !== 2 && packParts.length === 0) lines.push(body.subarray(pos, pos + len));
    pos += len;
  }
  if (packParts.length === 0) return { body, dropped: [], objects: 0 };
  const pack = Buffer.concat(packParts);
  const scan = await scanPack(pack, limits);
  if (scan.dropped.length === 0) return { body, dropped: [], objects: scan.objects.length };
  const rebuilt = rebuildPack(pack, scan.objects);
  const out: Buffer[] = [...lines];
  const MAX_DATA = 65_515; // side-band-64k: 65,520-byte packets, 4 for the length, 1 for the channel
  for (let off = 0; off < rebuilt.length; off += MAX_DATA) {
    const chunk = rebuilt.subarray(off, off + MAX_DATA);
    out.push(Buffer.from((chunk.length + 5).toString(16).padStart(4, '0'), 'latin1'), Buffer.from([1]), chunk);
  }
  out.push(Buffer.from('0000', 'latin1'));
  return { body: Buffer.concat(out), dropped: scan.dropped, objects: scan.objects.length };
}

interface ScannedObject {
  start: number;
  /** End of the type/size header (and, for deltas, of the base reference). */
  headerEnd: number;
  /** End of the type/size varint (an ofs-delta's base offset follows it). */
  sizeEnd: number;
  end: number;
  type: number;
  /** Pack offset of an ofs-delta's base. */
  base: number | null;
  dropped: boolean;
}

async function scanPack(pack: Buffer, limits: PackLimits): Promise<{ objects: ScannedObject[]; dropped: DroppedObject[] }> {
  if (pack.length < 32 || pack.toString('latin1', 0, 4) !== 'PACK') throw new PackRefusedError('the fetched data is not a pack');
  const version = pack.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw new PackRefusedError(`pack version ${version} is not supported`);
  const count = pack.readUInt32BE(8);
  if (count > limits.maxObjects) throw new PackRefusedError(`the pack holds ${count} objects, over the limit of ${limits.maxObjects}`);
  const objects: ScannedObject[] = [];
  const dropped: DroppedObject[] = [];
  const droppedOffsets = new Set<number>();
  const droppedOids = new Set<string>();
  let inflatedTotal = 0;
  let pos = 12;
  const bodyEnd = pack.length - 20;
  let sliceStart = performance.now();
  for (let i = 0; i < count; i++) {
    if (performance.now() - sliceStart > SLICE_MS) {
      await yieldToLoop();
      sliceStart = performance.now();
    }
    const start = pos;
    if (pos >= bodyEnd) throw new PackRefusedError('the pack ends before its last object');
    let c = pack[pos++]!;
    const type = (c >> 4) & 7;
    let size = c & 15;
    let scale = 16;
    while (c & 0x80) {
      if (pos >= bodyEnd || scale > 2 ** 49) throw new PackRefusedError(`malformed object header at pack offset ${start}`);
      c = pack[pos++]!;
      size += (c & 0x7f) * scale;
      scale *= 128;
    }
    const sizeEnd = pos;
    let base: number | null = null;
    let baseOid: string | null = null;
    if (type === OFS_DELTA) {
      c = pack[pos++]!;
      let rel = c & 0x7f;
      while (c & 0x80) {
        if (pos >= bodyEnd || rel > 2 ** 40) throw new PackRefusedError(`malformed delta offset at pack offset ${start}`);
        c = pack[pos++]!;
        rel = (rel + 1) * 128 + (c & 0x7f);
      }
      base = start - rel;
      if (base < 12) throw new PackRefusedError(`delta base outside the pack at pack offset ${start}`);
    } else if (type === REF_DELTA) {
      baseOid = pack.toString('hex', pos, pos + 20);
      pos += 20;
    } else if (!(type in TYPES)) {
      throw new PackRefusedError(`unknown object type ${type} at pack offset ${start}`);
    }
    const headerEnd = pos;
    const typeName = type === OFS_DELTA || type === REF_DELTA ? 'delta' : TYPES[type as keyof typeof TYPES];
    let drop = size > limits.maxObjectBytes;
    let declared = size;
    let consumed: number;
    if (drop) {
      // Over the limit by its header: skipped without holding it, its id computed on the way.
      const skipped = await skipZlibStream(pack.subarray(headerEnd, bodyEnd), size, typeName === 'delta' ? null : `${typeName} ${size}\0`);
      consumed = skipped.consumed;
      dropped.push({ oid: skipped.oid, type: typeName, bytes: size });
      if (skipped.oid) droppedOids.add(skipped.oid);
    } else {
      let inflated: { buffer: Buffer; engine: zlib.Inflate };
      try {
        inflated = zlib.inflateSync(pack.subarray(headerEnd, bodyEnd), { info: true, maxOutputLength: Math.max(size, 1) }) as unknown as { buffer: Buffer; engine: zlib.Inflate };
      } catch (err) {
        throw new PackRefusedError(`object at pack offset ${start} does not inflate to its declared ${size} bytes: ${(err as Error).message}`);
      }
      if (inflated.buffer.length !== size) throw new PackRefusedError(`object at pack offset ${start} inflates to ${inflated.buffer.length} bytes, not the declared ${size}`);
      consumed = inflated.engine.bytesWritten;
      if (typeName === 'delta') {
        // Delta data: base size, then result size (little-endian base-128 varints).
        const d = inflated.buffer;
        let p = 0;
        const varint = (): number => {
          let v = 0;
          let s = 1;
          let b: number;
          do {
            if (p >= d.length || s > 2 ** 49) throw new PackRefusedError(`malformed delta at pack offset ${start}`);
            b = d[p++]!;
            v += (b & 0x7f) * s;
            s *= 128;
          } while (b & 0x80);
          return v;
        };
        varint();
        declared = varint();
        const baseDropped = (base !== null && droppedOffsets.has(base)) || (baseOid !== null && droppedOids.has(baseOid));
        if (declared > limits.maxObjectBytes || baseDropped) {
          drop = true;
          dropped.push({ oid: null, type: 'delta', bytes: declared });
        }
      }
    }
    pos = headerEnd + consumed;
    if (drop) droppedOffsets.add(start);
    else {
      inflatedTotal += declared;
      if (inflatedTotal > limits.maxInflatedBytes) throw new PackRefusedError(`the pack inflates to more than ${limits.maxInflatedBytes} bytes in total`);
    }
    objects.push({ start, headerEnd, sizeEnd, end: pos, type, base, dropped: drop });
  }
  if (pos !== bodyEnd) throw new PackRefusedError('unexpected bytes after the last object of the pack');
  const sum = createHash('sha1').update(pack.subarray(0, bodyEnd)).digest();
  if (!sum.equals(pack.subarray(bodyEnd))) throw new PackRefusedError('pack checksum mismatch');
  return { objects, dropped };
}

/** Inflates one zlib stream at the start of `data` without keeping its output; how many input bytes it used, and the object id when a git header is given. */
function skipZlibStream(data: Buffer, declared: number, gitHeader: string | null): Promise<{ consumed: number; oid: string | null }> {
  return new Promise((resolve, reject) => {
    const hash = gitHeader === null ? null : createHash('sha1').update(gitHeader, 'latin1');
    const inflate = zlib.createInflate({ chunkSize: 64 * 1024 });
    let out = 0;
    inflate.on('data', (chunk: Buffer) => {
      out += chunk.length;
      // More than the header declared: corrupt or hostile; stop here rather than inflate on.
      if (out > declared) inflate.destroy(new Error(`inflates past its declared ${declared} bytes`));
      else hash?.update(chunk);
    });
    inflate.on('error', (err) => reject(new PackRefusedError(`an oversized object does not inflate: ${err.message}`)));
    inflate.on('end', () => resolve({ consumed: inflate.bytesWritten, oid: hash ? hash.digest('hex') : null }));
    inflate.end(data);
  });
}

function encodeOfs(rel: number): Buffer {
  const bytes = [rel & 0x7f];
  let n = Math.floor(rel / 128);
  while (n > 0) {
    n -= 1;
    bytes.unshift(0x80 | (n & 0x7f));
    n = Math.floor(n / 128);
  }
  return Buffer.from(bytes);
}

/** The pack without its dropped objects: count, ofs-delta distances and the trailing SHA-1 redone. */
function rebuildPack(pack: Buffer, objects: ScannedObject[]): Buffer {
  const kept = objects.filter((o) => !o.dropped);
  const parts: Buffer[] = [];
  const header = Buffer.from(pack.subarray(0, 12));
  header.writeUInt32BE(kept.length, 8);
  parts.push(header);
  const newStart = new Map<number, number>();
  let at = 12;
  for (const o of kept) {
    newStart.set(o.start, at);
    let piece: Buffer[];
    if (o.type === OFS_DELTA) {
      const baseAt = newStart.get(o.base!);
      // A kept delta's base is kept (a delta on a dropped base is dropped itself).
      if (baseAt === undefined) throw new PackRefusedError(`delta at pack offset ${o.start} has no base in the pack`);
      piece = [pack.subarray(o.start, o.sizeEnd), encodeOfs(at - baseAt), pack.subarray(o.headerEnd, o.end)];
    } else piece = [pack.subarray(o.start, o.end)];
    for (const p of piece) {
      parts.push(p);
      at += p.length;
    }
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([body, createHash('sha1').update(body).digest()]);
}
