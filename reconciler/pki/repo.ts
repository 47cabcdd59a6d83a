// The fabric-repository files the PKI commands write: fabric.yaml with the CA bundle and a
// peer.yaml stub. Pure text in, text out; the CLI does the file I/O.
import { isSeq, parse, parseDocument, stringify } from 'yaml';
import { API_VERSION, fabricObject } from '../../schema/kinds.ts';

/** `peers`: labels the admins attest per peer (spec.peers), for policies to trust. */
export function renderFabricYaml(name: string, caCertificates: string[], peers?: Record<string, { labels: Record<string, string> }>): string {
  const doc = { apiVersion: API_VERSION, kind: 'Fabric', metadata: { name }, spec: { caCertificates: caCertificates.map((c) => c.trim() + '\n'), ...(peers ? { peers } : {}) } };
  return (
    `# The fabric ${name}: its CA bundle (public certificates only; the CA key is kept outside this repository).\n` +
    '# During a CA rotation list the new CA next to the old one; see docs/pki.md.\n' +
    stringify(doc, { lineWidth: 0 })
  );
}

export function renderPeerYamlStub(name: string): string {
  return (
    `# Peer ${name}. EDIT the gateway: the address other peers use to reach ${name}'s gateway (one TCP port, mTLS).\n` +
    stringify({ apiVersion: API_VERSION, kind: 'Peer', metadata: { name }, spec: { gateways: [{ host: `${name}.gateway.example.com`, port: 443 }] } }, { lineWidth: 0 })
  );
}

/** Name and CA bundle of a fabric.yaml, validated with the Fabric schema; throws a readable error. */
export function readFabricYaml(text: string): { name: string; caCertificates: string[] } {
  let raw: unknown;
  try {
    raw = parse(text, { maxAliasCount: 100 });
  } catch (err) {
    throw new Error(`fabric.yaml is not valid YAML: ${(err as Error).message}`);
  }
  const parsed = fabricObject.safeParse(raw);
  if (!parsed.success) throw new Error(`fabric.yaml is not a valid Fabric: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return { name: parsed.data.metadata.name, caCertificates: parsed.data.spec.caCertificates };
}

/**
 * fabric.yaml text with one more CA appended to spec.caCertificates (start of a CA rotation).
 * Edits the YAML document in place so comments and the other fields stay as they were.
 */
/** fabric.yaml with its CA bundle replaced, everything else (name, attested peer labels, revocations) kept. */
export function replaceCaInFabricYaml(text: string, caCertificates: string[]): string {
  readFabricYaml(text); // validates first: never rewrite a file we do not understand
  const doc = parseDocument(text);
  doc.setIn(['spec', 'caCertificates'], doc.createNode(caCertificates.map((c) => c.trim() + '\n')));
  return doc.toString({ lineWidth: 0 });
}

export function addCaToFabricYaml(text: string, caCertificatePem: string): string {
  readFabricYaml(text); // validates first: never rewrite a file we do not understand
  const doc = parseDocument(text);
  const seq = doc.getIn(['spec', 'caCertificates'], true);
  if (!isSeq(seq)) throw new Error('fabric.yaml spec.caCertificates is not a list');
  seq.add(doc.createNode(caCertificatePem.trim() + '\n'));
  return doc.toString({ lineWidth: 0 });
}
