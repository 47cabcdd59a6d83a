// A copy of fabric-example/ with a fresh CA and fresh peer certificates, whose private keys are
// returned to the caller (the demo and the tests keep them in memory or a temp dir; they never
// touch the repository). Everything else in the example is left as written.
import { readFabricDir } from '../../schema/read-dir.ts';
import { createCertificateAuthority, issuePeerCertificate, type KeyType } from '../pki/index.ts';
import { renderFabricYaml, replaceCaInFabricYaml } from '../pki/repo.ts';
import { join } from 'node:path';
import { packageRoot } from '../package-root.ts';

export const EXAMPLE_DIR = join(packageRoot(), 'fabric-example');

export interface FreshFabric {
  fabricName: string;
  files: Map<string, Uint8Array>;
  ca: { certificatePem: string; privateKeyPem: string };
  peers: Record<string, { certificatePem: string; privateKeyPem: string }>;
}

/**
 * `rewrite` edits every YAML file's text (tests use it to move the example's 127.0.x addresses
 * to a range of their own, so test files running in parallel never share an address).
 */
export async function freshExampleFabric(opts: { dir?: string; keyType?: KeyType; fabricName?: string; rewrite?: (yamlText: string) => string } = {}): Promise<FreshFabric> {
  const fabricName = opts.fabricName ?? 'example';
  const files = await readFabricDir(opts.dir ?? EXAMPLE_DIR);
  if (opts.rewrite) for (const [path, bytes] of files) if (path.endsWith('.yaml')) files.set(path, Buffer.from(opts.rewrite(Buffer.from(bytes).toString('utf8'))));
  const ca = await createCertificateAuthority({ fabricName, keyType: opts.keyType });
  // The CA is the fresh one; the rest of fabric.yaml (attested peer labels) carries over.
  const original = files.get('fabric.yaml');
  const text = original ? replaceCaInFabricYaml(Buffer.from(original).toString('utf8'), [ca.certificatePem]).replace(/^(\s*name:) \S+$/m, `$1 ${fabricName}`) : renderFabricYaml(fabricName, [ca.certificatePem]);
  files.set('fabric.yaml', Buffer.from(text));
  const peers: FreshFabric['peers'] = {};
  const names = [...new Set([...files.keys()].map((p) => /^peers\/([^/]+)\/peer\.yaml$/.exec(p)?.[1]).filter((n): n is string => n !== undefined))].sort();
  for (const name of names) {
    const cert = await issuePeerCertificate({ peerName: name, fabricName, ca, keyType: opts.keyType });
    files.set(`peers/${name}/peer.pem`, Buffer.from(cert.certificatePem));
    peers[name] = { certificatePem: cert.certificatePem, privateKeyPem: cert.privateKeyPem };
  }
  return { fabricName, files, ca, peers };
}
