// The repository layout: which path holds what (fabric.yaml, peers/<name>/...), the per-file checks
// (path, size, private keys, peer directory name) and where each file's objects go.
import type { z } from 'zod';
import { at, Diagnostics, lineOfOffset, positionOf } from './diagnostics.ts';
import { isRecord } from './fast-validate.ts';
import { API_VERSION, KINDS, PEER_NAME, kindSchemas, type Kind } from './kinds.ts';
import type { LoadLimits } from './limits.ts';
import { addObject, parseObjects, type ParsedObject, type PeerDraft } from './objects.ts';
import type { FileEntry } from './parse-cache.ts';
import { decode, parseFile } from './yaml-documents.ts';

const PRIVATE_KEY = /-----BEGIN ([A-Z0-9 ]+ )?PRIVATE KEY-----|PuTTY-User-Key-File|-----BEGIN PGP PRIVATE KEY BLOCK-----/;
const DIR_KIND: Record<string, Kind[]> = {
  exports: ['Export'],
  imports: ['Import'],
  policies: ['AccessPolicy', 'PrivilegedAccessPolicy'],
};


interface Classified {
  kind: 'fabric' | 'peer' | 'cert' | 'objects' | 'ignored' | 'unknown-peer-file';
  peer?: string;
  dir?: string;
}

const IGNORED: Classified = { kind: 'ignored' };
const FABRIC: Classified = { kind: 'fabric' };

function classify(path: string, parts: string[]): Classified {
  if (path === 'fabric.yaml' || path === 'fabric.yml') return FABRIC;
  if (parts[0] !== 'peers') return IGNORED;
  const peer = parts[1];
  if (peer === undefined || parts.length < 3) return IGNORED;
  if (parts.length === 3 && (parts[2] === 'peer.yaml' || parts[2] === 'peer.yml')) return { kind: 'peer', peer };
  if (parts.length === 3 && parts[2] === 'peer.pem') return { kind: 'cert', peer };
  if (parts.length === 3 && /^(README|CODEOWNERS|OWNERS)(\.md)?$/i.test(parts[2] ?? '')) return IGNORED;
  // ClusterLink ships policies as JSON, which is YAML: read both.
  if (parts.length === 4 && parts[2] && DIR_KIND[parts[2]] && /\.(ya?ml|json)$/.test(parts[3] ?? '')) return { kind: 'objects', peer, dir: parts[2] };
  if (parts.length === 4 && parts[2] && DIR_KIND[parts[2]] && /^README(\.md)?$/i.test(parts[3] ?? '')) return IGNORED;
  return { kind: 'unknown-peer-file', peer };
}

/** One pass over files, in path order: where diagnostics go, the peer drafts, the Fabric object. */
export interface Pass {
  limits: LoadLimits;
  diags: Diagnostics;
  draft(name: string): PeerDraft;
  fabricObj: ParsedObject | null;
  sawFabricFile: boolean;
}

const PEER_DIR_NAME = PEER_NAME;
const TEXTUAL_NAME = /\.(ya?ml|pem|key|crt|txt|md|json|env)$/i;

export const byteSize = (bytes: Uint8Array | string): number => (typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.byteLength);
export const upperSize = (bytes: Uint8Array | string): number => (typeof bytes === 'string' ? bytes.length * 3 : bytes.byteLength);
/** Every match of PRIVATE_KEY contains one of these: a cheap filter before the regex. */
const mayHoldKey = (text: string): boolean => text.includes('PRIVATE KEY') || text.includes('PuTTY-User-Key-File');

/**
 * The per-file step of a load. Returns false where the file was skipped by an early check
 * (which, as before, also skips the repository size check after it).
 */
export function processFile(pass: Pass, path: string, bytes: Uint8Array | string, entry: FileEntry | null): boolean {
  const { diags, limits } = pass;
  const parts = path.split('/');
  if (path.startsWith('/') || parts.some((s) => s === '..' || s === '')) {
    diags.error(at(path), 'bad-path', '', `path escapes the repository or is not normalised: ${path}`, 'use relative paths inside the repository');
    return false;
  }
  let size = entry?.size ?? null;
  if (upperSize(bytes) > limits.maxFileBytes) {
    size ??= byteSize(bytes);
    if (size > limits.maxFileBytes) {
      diags.error(at(path), 'file-too-large', '', `file is ${size} bytes (limit ${limits.maxFileBytes})`, 'split it into smaller files');
      return false;
    }
  }
  const cls = classify(path, parts);
  const isTextual = cls.kind !== 'ignored' || TEXTUAL_NAME.test(path) || (size ??= byteSize(bytes)) < 1024 * 1024;
  if (entry && size !== null) entry.size = size;
  let text = '';
  if (isTextual) text = entry ? (entry.text ??= decode(bytes)) : decode(bytes);
  // A file whose exact content passed the private-key scan before needs no second scan.
  if (!entry?.keyFree) {
    const keyMatch = mayHoldKey(text) ? PRIVATE_KEY.exec(text) : null;
    if (keyMatch) {
      const p = lineOfOffset(text, keyMatch.index);
      diags.error({ ...p, file: path }, 'private-key', '', 'this file contains a private key: private keys never belong in the fabric repository', 'delete it from the repository (and its history), and keep the key only on the peer that owns it; rotate it, it has been exposed');
      return false;
    }
    if (entry) entry.keyFree = true;
  }
  if (cls.peer !== undefined && !PEER_DIR_NAME.test(cls.peer)) {
    diags.error(at(path), 'bad-peer-name', '', `peer directory "${cls.peer}" is not a peer name (a DNS-1123 subdomain of at most 63 characters)`, 'rename the directory: lower-case letters, digits, "-" and "." (e.g. cluster17.us-east), at most 63 characters');
    return false;
  }
  switch (cls.kind) {
    case 'ignored':
      if (holdsFabricObject(path, text, limits)) misplaced(diags, path, text);
      break;
    case 'unknown-peer-file':
      if (holdsFabricObject(path, text, limits)) misplaced(diags, path, text);
      else diags.warn(at(path), 'unknown-file', '', `file is not part of the fabric layout and is ignored`, 'objects go in peers/<peer>/{peer.yaml,peer.pem,exports/,imports/,policies/}');
      break;
    case 'cert':
      pass.draft(cls.peer!).certificatePem = text;
      break;
    case 'fabric':
    case 'peer':
    case 'objects': {
      pass.sawFabricFile ||= cls.kind === 'fabric';
      const allowed: Kind[] = cls.kind === 'fabric' ? ['Fabric'] : cls.kind === 'peer' ? ['Peer'] : DIR_KIND[cls.dir!]!;
      const dirHint = cls.kind === 'objects' ? `peers/${cls.peer}/${cls.dir}/` : path;
      const objects = parseObjects(path, text, allowed, dirHint, limits, diags, entry);
      if (!objects) break;
      if (cls.kind === 'fabric') {
        if (objects.length > 1 || pass.fabricObj) diags.error(objects[1]?.source ?? at(path), 'duplicate-fabric', '', 'more than one Fabric object', 'keep exactly one Fabric in fabric.yaml');
        pass.fabricObj ??= objects[0] ?? null;
      } else if (cls.kind === 'peer') {
        const d = pass.draft(cls.peer!);
        if (objects.length > 1) diags.error(objects[1]!.source, 'duplicate-peer', '', 'more than one Peer object in peer.yaml', 'keep exactly one Peer per peer.yaml');
        const peerObj = objects[0];
        if (peerObj) {
          const name = (peerObj.data as z.infer<typeof kindSchemas.Peer>).metadata.name;
          if (name !== cls.peer) {
            diags.error(positionOf(peerObj, ['metadata', 'name']), 'ownership', 'metadata.name', `Peer "${name}" is defined in peers/${cls.peer}/: a peer's directory must carry its name`, `set metadata.name: ${cls.peer}, or move the file to peers/${name}/`);
          } else {
            d.peerYaml = peerObj;
          }
        }
      } else {
        for (const obj of objects) addObject(pass.draft(cls.peer!), obj, diags);
      }
      break;
    }
  }
  return true;
}

/**
 * Whether a file outside the layout holds a clusterlink.net object (a policy saved next to the
 * policies/ folder, a `.yml.bak`, a top-level policies/ folder...): loading nothing from it silently
 * would leave, say, a deny policy quietly unenforced, so it is an error.
 */
function holdsFabricObject(path: string, text: string, limits: LoadLimits): boolean {
  if (!/\.(ya?ml|json)$/i.test(path) || !text.includes(API_VERSION)) return false;
  const parsed = parseFile(path, text, limits, new Diagnostics());
  return parsed !== null && parsed.docs.some((d) => isRecord(d.data) && d.data.apiVersion === API_VERSION && (KINDS as unknown[]).includes(d.data.kind));
}

function misplaced(diags: Diagnostics, path: string, text: string): void {
  const p = lineOfOffset(text, text.indexOf(API_VERSION));
  diags.error({ ...p, file: path }, 'misplaced-object', '', `this file holds a ${API_VERSION} object, but it is not where the fabric layout reads objects: it would be ignored`, 'move it to fabric.yaml or peers/<peer>/{peer.yaml,exports/,imports/,policies/} (.yaml, .yml or .json)');
}
