// Certificate checks for `clgo validate`: the same rules verifyPeer applies at run time, reported
// for every peer with a location in the fabric repository and a one-line fix, plus warnings for
// what is still valid but about to break (expiry).
import { X509Certificate } from 'node:crypto';
import { posix } from 'node:path';
import type { Diagnostic, FabricModel, PeerModel, SourceRef } from '../../schema/model.ts';
import { certFacts } from './certinfo.ts';
import { fingerprintSha256, normalizeFingerprint, normalizeSerial, pemCertificatesToDer } from './encoding.ts';
import { verifyPeer, type PeerTrust, type VerifyReason } from './verify.ts';

const DAY_MS = 86_400_000;
export const DEFAULT_EXPIRY_WARNING_DAYS = 30;

function at(source: SourceRef, path: string, severity: Diagnostic['severity'], code: string, message: string, hint: string): Diagnostic {
  return { severity, file: source.file, line: source.line, column: source.column, path, message, hint, code };
}

/** peers/<p>/peer.pem next to the peer's peer.yaml. */
function pemSource(peer: PeerModel): SourceRef {
  const dir = peer.source.file.includes('/') ? posix.dirname(peer.source.file.replace(/\\/g, '/')) : `peers/${peer.name}`;
  return { file: `${dir}/peer.pem`, line: 1, column: 1 };
}

const days = (ms: number) => Math.floor(ms / DAY_MS);

const REASON_CODES: Record<Exclude<VerifyReason, 'revoked' | 'not-a-member' | 'unpinned' | 'pin-mismatch' | 'unexpected-peer'>, { code: string; severity: Diagnostic['severity']; hint: (peer: string) => string }> = {
  malformed: { code: 'peer-certificate-invalid', severity: 'error', hint: (p) => `replace peers/${p}/peer.pem with the PEM certificate from \`clgo sign\`` },
  'untrusted-ca': { code: 'peer-certificate-untrusted', severity: 'error', hint: (p) => `sign ${p}'s CSR with a CA in fabric.yaml spec.caCertificates (\`clgo sign\`), or add its CA to the bundle` },
  expired: { code: 'peer-certificate-expired', severity: 'error', hint: (p) => `rotate: \`clgo rotate peer ${p}\` on the peer, then \`clgo sign\` and commit the new peer.pem` },
  'not-yet-valid': { code: 'peer-certificate-not-yet-valid', severity: 'warning', hint: () => 'check the signing machine\'s clock; the peer cannot connect before the start date' },
  'bad-key-usage': { code: 'peer-certificate-key-usage', severity: 'error', hint: (p) => `re-sign ${p}'s CSR with \`clgo sign\` (end-entity, serverAuth + clientAuth, digitalSignature)` },
  'bad-san': { code: 'peer-certificate-san', severity: 'error', hint: (p) => `the certificate must name DNS:${p} and the fabric URI; re-sign a CSR whose CN is ${p}` },
};

/**
 * Checks the CA bundle and every peer's committed certificate. Warnings: expiring within
 * `expiryWarningDays` (default 30), not yet valid. Errors: everything verifyPeer would reject and a
 * missing peer.pem. Imports that still name a peer whose certificate is revoked are warnings.
 */
export function certificateDiagnostics(fabric: FabricModel, opts: { now?: Date; expiryWarningDays?: number } = {}): Diagnostic[] {
  const now = opts.now ?? new Date();
  const warnMs = (opts.expiryWarningDays ?? DEFAULT_EXPIRY_WARNING_DAYS) * DAY_MS;
  const out: Diagnostic[] = [];

  fabric.caCertificates.forEach((pem, i) => {
    const path = `spec.caCertificates[${i}]`;
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch (err) {
      out.push(at(fabric.source, path, 'error', 'ca-certificate-invalid', `CA certificate ${i + 1} does not parse: ${(err as Error).message}`, 'paste the CA certificate PEM from `clgo create fabric` unchanged'));
      return;
    }
    if (!cert.ca) {
      out.push(at(fabric.source, path, 'error', 'ca-certificate-not-ca', `CA certificate ${i + 1} ("${cert.subject.replace(/\n/g, ', ')}") is not a CA certificate`, 'list only CA certificates here; peer certificates belong in peers/<peer>/peer.pem'));
      return;
    }
    const notAfter = Date.parse(cert.validTo);
    if (notAfter < now.getTime()) {
      out.push(at(fabric.source, path, 'error', 'ca-certificate-expired', `CA certificate ${i + 1} expired on ${new Date(notAfter).toISOString()}`, 'rotate the CA: add a new CA certificate, re-sign every peer, then remove the expired one'));
    } else if (notAfter - now.getTime() < warnMs) {
      out.push(at(fabric.source, path, 'warning', 'ca-certificate-expiring', `CA certificate ${i + 1} expires in ${days(notAfter - now.getTime())} days (${new Date(notAfter).toISOString()})`, 'start a CA rotation now: add the new CA next to this one (docs/pki.md)'));
    }
  });

  const revokedSerials = new Set(fabric.revoked.serials.map(normalizeSerial));
  const revokedFps = new Set(fabric.revoked.fingerprints.map(normalizeFingerprint));
  const revokedPeers = new Set<string>();
  const byFingerprint = new Map<string, string>();
  // Every peer pinned to its own committed certificate: verifyPeer then checks exactly that file.
  const trust: PeerTrust = {
    fabric: fabric.name,
    caCertificates: fabric.caCertificates,
    revoked: { serials: [], fingerprints: [] },
    members: fabric.peers.map((p) => ({ name: p.name, labels: fabric.peerLabels[p.name] ?? {}, gateways: [], certificateFingerprint: safeFingerprint(p.certificatePem) })),
  };

  for (const peer of fabric.peers) {
    const src = pemSource(peer);
    const pem = peer.certificatePem;
    if (pem === null) {
      out.push(at(peer.source, '', 'error', 'peer-certificate-missing', `peer ${peer.name} has no peers/${peer.name}/peer.pem, so no other peer will accept its connections`, `run \`clgo create peer ${peer.name}\` on the peer and \`clgo sign\` its CSR, then commit peer.pem`));
      continue;
    }
    if (/PRIVATE KEY-----/.test(pem)) {
      out.push(at(src, '', 'error', 'peer-certificate-private-key', `peers/${peer.name}/peer.pem contains a private key`, 'remove the key from the repository and its history, and rotate it: it is compromised'));
    }
    const ders = pemCertificatesToDer(pem);
    if (ders.length > 1) {
      out.push(at(src, '', 'error', 'peer-certificate-multiple', `peers/${peer.name}/peer.pem holds ${ders.length} certificates; it must hold exactly the peer's own`, 'keep only the peer certificate (the CA is in fabric.yaml)'));
    }
    const fp = safeFingerprint(pem);
    if (fp !== null) {
      const other = byFingerprint.get(fp);
      if (other !== undefined) {
        out.push(at(src, '', 'error', 'peer-certificate-duplicate', `peers/${peer.name}/peer.pem is the same certificate as peers/${other}/peer.pem`, `each peer needs its own certificate: \`clgo create peer ${peer.name}\` and sign it`));
      } else byFingerprint.set(fp, peer.name);
    }

    const result = verifyPeer([pem], trust, { now });
    if (!result.ok) {
      const mapped = (REASON_CODES as Record<string, (typeof REASON_CODES)['malformed'] | undefined>)[result.reason];
      if (mapped) out.push(at(src, '', mapped.severity, mapped.code, `peers/${peer.name}/peer.pem: ${result.detail}`, mapped.hint(peer.name)));
      // Every peer is pinned to its own file, so the remaining reasons all mean: the SAN names another peer.
      else out.push(at(src, '', 'error', 'peer-certificate-san', `peers/${peer.name}/peer.pem names another peer: ${result.detail}`, `the certificate must name DNS:${peer.name}; sign a CSR made for ${peer.name}`));
    } else {
      if (result.peer !== peer.name) {
        out.push(at(src, '', 'error', 'peer-certificate-san', `peers/${peer.name}/peer.pem identifies peer "${result.peer}"`, `the certificate must name DNS:${peer.name}; sign a CSR made for ${peer.name}`));
      }
      const facts = certFacts(pem);
      const left = facts.notAfter.getTime() - now.getTime();
      if (left < warnMs) {
        out.push(at(src, '', 'warning', 'peer-certificate-expiring', `peers/${peer.name}/peer.pem expires in ${days(left)} days (${facts.notAfter.toISOString()})`, `rotate now: \`clgo rotate peer ${peer.name}\` on the peer, then \`clgo sign\``));
      }
    }

    if (fp !== null) {
      let serial: string | null = null;
      try {
        serial = normalizeSerial(new X509Certificate(pem).serialNumber);
      } catch {
        serial = null;
      }
      if (revokedFps.has(fp) || (serial !== null && revokedSerials.has(serial))) {
        revokedPeers.add(peer.name);
        out.push(at(src, '', 'warning', 'peer-certificate-revoked', `peers/${peer.name}/peer.pem is revoked in fabric.yaml: ${peer.name} cannot connect to anyone`, `commit a new certificate for ${peer.name} (\`clgo rotate peer\`), or remove peers/${peer.name}/ to retire it`));
      }
    }
  }

  // A warning, not an error: a revocation is an emergency change that must pass CI on its own; the
  // reconcilers already stop using the revoked source, and the imports are cleaned up afterwards.
  for (const peer of fabric.peers) {
    for (const imp of peer.imports) {
      imp.sources.forEach((s, i) => {
        if (revokedPeers.has(s.peer)) {
          const others = imp.sources.filter((o) => !revokedPeers.has(o.peer)).map((o) => o.peer);
          const effect = others.length ? `traffic goes to the remaining source(s): ${others.join(', ')}` : 'it has no other source, so its clients get no connection until this is fixed';
          out.push(at(imp.source, `spec.sources[${i}].peer`, 'warning', 'import-source-revoked', `import ${imp.namespace}/${imp.name} of peer ${peer.name} uses peer ${s.peer}, whose certificate is revoked: ${effect}`, `remove this source, or wait until ${s.peer} has a new certificate committed`));
        }
      });
    }
  }
  return out;
}

function safeFingerprint(pem: string | null): string | null {
  if (pem === null) return null;
  try {
    return fingerprintSha256(pem);
  } catch {
    return null;
  }
}
