import { describe, expect, it } from 'vitest';
import { createSessionCache, SESSION_REFRESH_MS, tlsMaterialKey } from './tls-identity.ts';
import type { TlsIdentity } from '../protocol/contracts.ts';

const identity: TlsIdentity = { certificatePem: 'CERT', privateKeyPem: 'KEY', caCertificatesPem: ['CA1', 'CA2'], allowedPeerFingerprints: ['aa'] };

describe('TLS session cache', () => {
  it('has nothing to resume at first, and asks the connection to store a ticket', () => {
    expect(createSessionCache().lookup('west@10.0.0.1:443')).toEqual({ session: undefined, refresh: true });
  });

  it('reuses a stored ticket for SESSION_REFRESH_MS, then asks for a fresh one (still resuming with the old)', () => {
    let t = 0;
    const cache = createSessionCache({ now: () => t });
    const ticket = Buffer.from('ticket');
    cache.storer('west@10.0.0.1:443')(ticket);
    t = SESSION_REFRESH_MS;
    expect(cache.lookup('west@10.0.0.1:443')).toEqual({ session: ticket, refresh: false });
    t = SESSION_REFRESH_MS + 1;
    expect(cache.lookup('west@10.0.0.1:443')).toEqual({ session: ticket, refresh: true });
    expect(cache.lookup('west@10.0.0.2:443').session).toBeUndefined();
    cache.clear();
    expect(cache.lookup('west@10.0.0.1:443').session).toBeUndefined();
  });
});

describe('TLS material key', () => {
  it('changes with the certificate, the key or the trusted CAs, not with the pins', () => {
    const base = tlsMaterialKey(identity);
    expect(tlsMaterialKey({ ...identity, allowedPeerFingerprints: ['bb'] })).toBe(base);
    expect(tlsMaterialKey({ ...identity, certificatePem: 'CERT2' })).not.toBe(base);
    expect(tlsMaterialKey({ ...identity, privateKeyPem: 'KEY2' })).not.toBe(base);
    expect(tlsMaterialKey({ ...identity, caCertificatesPem: ['CA1'] })).not.toBe(base);
    // Field boundaries count: moving text from one CA to the next is another bundle.
    expect(tlsMaterialKey({ ...identity, caCertificatesPem: ['CA1C', 'A2'] })).not.toBe(base);
  });
});
