// The facts about one certificate that verification and diagnostics decide on, parsed once.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

export interface CertFacts {
  serial: string;
  notBefore: Date;
  notAfter: Date;
  isCa: boolean;
  /** KeyUsage bit flags (x509.KeyUsageFlags); null when the extension is absent. */
  keyUsage: number | null;
  /** Extended key usage OIDs; null when the extension is absent. */
  extendedKeyUsage: string[] | null;
  sanDns: string[];
  sanUris: string[];
  /** Any other SAN kinds (IP, e-mail, ...): a peer certificate carries none. */
  sanOther: string[];
}

/** Parses a DER or PEM certificate's identity-relevant fields. Throws on malformed input. */
export function certFacts(der: Uint8Array | string): CertFacts {
  const cert = new x509.X509Certificate(typeof der === 'string' ? der : Buffer.from(der));
  const basic = cert.getExtension(x509.BasicConstraintsExtension);
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const names = san?.names.items ?? [];
  return {
    serial: cert.serialNumber,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    isCa: basic?.ca === true,
    keyUsage: ku ? ku.usages : null,
    extendedKeyUsage: eku ? eku.usages.map(String) : null,
    sanDns: names.filter((n) => n.type === 'dns').map((n) => n.value),
    sanUris: names.filter((n) => n.type === 'url').map((n) => n.value),
    sanOther: names.filter((n) => n.type !== 'dns' && n.type !== 'url').map((n) => `${n.type}:${n.value}`),
  };
}

export const KEY_USAGE = x509.KeyUsageFlags;
