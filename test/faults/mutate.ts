// A seeded mutator for fabric YAML: structural (lines, indentation, truncation), lexical (YAML
// tokens, numbers, anchors, tags) and byte-level (random and invalid UTF-8) edits. Deterministic
// for a seed, so a failing case can be replayed from the seed the test prints.

export { prng } from '../fixtures/generate-fabric.ts';

const TOKENS = [
  ':', ': ', '- ', '-', '{', '}', '[', ']', ',', '&a ', '*a', '<<: *a', '!!binary ', '!!str ', '!!int ', '!custom ', '~', 'null', 'true', 'no', 'yes',
  '0x1F', '0o17', '1e400', '-1', '0', '65536', '99999999999999999999', '.inf', '.nan', '"', "'", '#', '|', '>', '|-', '---', '...', '%YAML 1.1', '?', '\t',
  'apiVersion: clusterlink.net/v1alpha1', 'kind: Peer', 'kind: Import', 'kind: AccessPolicy', 'metadata:', 'name: x', 'namespace: ""', 'spec:', 'sources: []',
  'peer: nobody', 'port: 0', 'host: ""', '127.0.0.1', 'UPPER_case', 'a'.repeat(300), '\u0000', '\u202e', '\ufeff', 'é', '😀', '\r', '\r\n',
  '-----BEGIN PRIVATE KEY-----', '-----BEGIN CERTIFICATE-----',
];

export function mutateText(text: string, rnd: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const int = (n: number): number => Math.floor(rnd() * n);
  const lines = text.split('\n');
  switch (int(10)) {
    case 0: // delete a line
      lines.splice(int(lines.length), 1);
      return lines.join('\n');
    case 1: { // duplicate a line elsewhere
      const l = lines[int(lines.length)] ?? '';
      lines.splice(int(lines.length + 1), 0, l);
      return lines.join('\n');
    }
    case 2: { // swap two lines
      const i = int(lines.length);
      const j = int(lines.length);
      [lines[i], lines[j]] = [lines[j]!, lines[i]!];
      return lines.join('\n');
    }
    case 3: { // re-indent a line
      const i = int(lines.length);
      lines[i] = ' '.repeat(int(9)) + (lines[i] ?? '').trimStart();
      return lines.join('\n');
    }
    case 4: { // insert a token
      const at = int(text.length + 1);
      return text.slice(0, at) + pick(TOKENS) + text.slice(at);
    }
    case 5: { // replace a word with a token
      const words = [...text.matchAll(/[A-Za-z0-9_.\-/]+/g)];
      if (words.length === 0) return text + pick(TOKENS);
      const w = pick(words);
      return text.slice(0, w.index) + pick(TOKENS) + text.slice(w.index + w[0].length);
    }
    case 6: // truncate
      return text.slice(0, int(text.length + 1));
    case 7: { // random characters
      let s = '';
      for (let k = int(8) + 1; k > 0; k--) s += String.fromCharCode(int(rnd() < 0.8 ? 128 : 0x3000));
      const at = int(text.length + 1);
      return text.slice(0, at) + s + text.slice(at);
    }
    case 8: { // a new line with a key at some depth
      lines.splice(int(lines.length + 1), 0, `${' '.repeat(2 * int(4))}${pick(['name', 'port', 'peer', 'labels', 'from', 'to', 'action', 'spec', 'extra'])}: ${pick(TOKENS)}`);
      return lines.join('\n');
    }
    default: { // an alias bomb-ish structure (bounded): anchors referencing anchors
      const depth = int(6) + 1;
      let s = 'x0: &a0 [lol, lol, lol, lol]\n';
      for (let d = 1; d <= depth; d++) s += `x${d}: &a${d} [${Array.from({ length: 6 }, () => `*a${d - 1}`).join(', ')}]\n`;
      return rnd() < 0.5 ? s + text : text + '\n' + s;
    }
  }
}

/** Byte-level damage (may produce invalid UTF-8). */
export function mutateBytes(bytes: Uint8Array, rnd: () => number): Uint8Array {
  const out = Buffer.from(bytes);
  for (let k = Math.floor(rnd() * 4) + 1; k > 0 && out.length > 0; k--) out[Math.floor(rnd() * out.length)] = Math.floor(rnd() * 256);
  return out;
}
