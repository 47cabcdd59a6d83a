// Regenerates the example fabric's public certificates: a fresh CA in fabric.yaml and a
// peers/<peer>/peer.pem for every peer directory. The CA and peer private keys live only in
// memory and are discarded: the committed example carries public material only. The demo
// (`npm start`) makes its own CA and keys in a temporary directory.
//   node --import tsx fabric-example/generate-certs.ts
import { readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCertificateAuthority, issuePeerCertificate } from '../reconciler/pki/index.ts';
import { renderFabricYaml } from '../reconciler/pki/repo.ts';

const FABRIC = 'example';
/** Five years, so the committed example does not expire under CI; real peers default to one. */
const LIFETIME_DAYS = 5 * 365;

/**
 * Peer labels other peers' policies trust (west's allow-core-perf, east's allow-web): attested here,
 * in the admin-owned fabric.yaml, never in a peer's own peer.yaml (docs/policy.md).
 */
const PEER_LABELS = {
  east: { labels: { region: 'us-east', tier: 'core' } },
  edge: { labels: { region: 'eu-central', tier: 'edge' } },
  west: { labels: { region: 'us-west', tier: 'core' } },
};

const root = dirname(fileURLToPath(import.meta.url));
const ca = await createCertificateAuthority({ fabricName: FABRIC, lifetimeDays: LIFETIME_DAYS + 30 });
const header = [
  '# yaml-language-server: $schema=../schema/json/Fabric.json',
  '# Every peer certificate must chain to a CA listed here; clgo validate refuses private keys',
  '# anywhere in this repository. Regenerate with: node --import tsx fabric-example/generate-certs.ts',
  '',
].join('\n');
writeFileSync(join(root, 'fabric.yaml'), header + renderFabricYaml(FABRIC, [ca.certificatePem], PEER_LABELS));
for (const peer of readdirSync(join(root, 'peers')).sort()) {
  const cert = await issuePeerCertificate({ peerName: peer, fabricName: FABRIC, ca, lifetimeDays: LIFETIME_DAYS });
  writeFileSync(join(root, 'peers', peer, 'peer.pem'), cert.certificatePem);
  console.log(`peers/${peer}/peer.pem`);
}
console.log('fabric.yaml');
