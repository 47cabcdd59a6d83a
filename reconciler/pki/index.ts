// Public API of the fabric PKI: issuing (CA, peer keys, CSR signing), identity verification, and
// the certificate checks `clgo validate` runs.
export {
  type KeyType,
  KEY_TYPES,
  DEFAULT_KEY_TYPE,
  DEFAULT_PEER_LIFETIME_DAYS,
  DEFAULT_CA_LIFETIME_DAYS,
  createCertificateAuthority,
  createPeerKey,
  signPeerCsr,
  issuePeerCertificate,
  inspectCsr,
  peerUri,
  type CsrInfo,
} from './issue.ts';
export { fingerprintSha256, normalizeFingerprint, normalizeSerial, pemCertificatesToDer, derToPem } from './encoding.ts';
export { verifyPeer, type PeerTrust, type VerifyReason, type VerifyResult } from './verify.ts';
export { certificateDiagnostics, DEFAULT_EXPIRY_WARNING_DAYS } from './diagnostics.ts';
