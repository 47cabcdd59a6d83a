import { describe, expect, it } from 'vitest';
import { clientAttributesFromHeaders, parseAuthority as extAuthzParseAuthority } from './ext-authz.ts';
import { localClientsSchema } from '../reconciler/runtime/local-clients.ts';
import { clientAttributesFromHead, HeadError, parseAuthority, parseHead } from './connect-head.ts';
import { TUNNEL } from './contracts.ts';

const GOOD = 'CONNECT db.default:443 HTTP/1.1\r\nHost: db.default:443\r\nx-clusterlink-client-namespace: web';
const status = (head: string): number | null => {
  try {
    parseHead(head, 32);
    return null;
  } catch (err) {
    return (err as HeadError).status;
  }
};

describe('strict CONNECT head (RFC 9112)', () => {
  it('accepts a well-formed request and trims optional whitespace', () => {
    const p = parseHead(`${GOOD}\r\nX-A:\t v \t`, 32);
    expect(p.startLine).toEqual(['CONNECT', 'db.default:443', 'HTTP/1.1']);
    expect(p.headers.get('x-a')).toBe('v');
  });

  it.each([
    ['extra tokens on the request line', 'CONNECT db.default:443 HTTP/1.1 extra\r\nHost: x'],
    ['two spaces between tokens', 'CONNECT  db.default:443 HTTP/1.1'],
    ['a missing version', 'CONNECT db.default:443'],
    ['obs-fold', `${GOOD}\r\nx-clusterlink-client-labels: a=b\r\n c=d`],
    ['obs-fold with a tab', `${GOOD}\r\nx-a: 1\r\n\tmore`],
    ['a bare LF', 'CONNECT db.default:443 HTTP/1.1\nHost: db.default:443'],
    ['a bare CR', `${GOOD}\r\nx-a: 1\rx-b: 2`],
    ['a NUL in a value', `${GOOD}\r\nx-a: a\0b`],
    ['a NUL on the request line', 'CONNECT db.default:443\0 HTTP/1.1'],
    ['whitespace before the colon', `${GOOD}\r\nHost : db.default:443`],
    ['a control character in a value', `${GOOD}\r\nx-a: a\x01b`],
  ])('refuses %s with 400', (_what, head) => {
    expect(status(head)).toBe(400);
  });

  it('parses a response status line with a reason phrase of several words', () => {
    expect(parseHead('HTTP/1.1 200 Connection established\r\nServer: envoy', 32, 'response').startLine).toEqual(['HTTP/1.1', '200', 'Connection established']);
    expect(() => parseHead('HTTP/1.1 2000 OK', 32, 'response')).toThrow(HeadError);
  });
});

describe('one authority rule at both gateways (Node gateway and ext_authz behind Envoy)', () => {
  it('refuses ports out of range and malformed names', () => {
    expect(parseAuthority(TUNNEL.authority('db', 'default'))).toEqual({ exportName: 'db', exportNamespace: 'default' });
    for (const bad of ['db.default:99999', 'db.default:0', 'db.default:65536', 'db.default', 'db.default:', 'db..default:443', `db.${'n'.repeat(64)}:443`, `${'e'.repeat(254)}.ns:443`, 'DB.default:443']) expect(parseAuthority(bad), bad).toBeNull();
    // Export names are DNS-1123 subdomains, as Kubernetes allows for Export objects: the last dot splits.
    expect(parseAuthority('db.default.svc:443')).toEqual({ exportName: 'db.default', exportNamespace: 'svc' });
    expect(parseAuthority(`${'e'.repeat(64)}.ns:443`)).toEqual({ exportName: 'e'.repeat(64), exportNamespace: 'ns' });
    expect(parseAuthority('db.default:65535')).not.toBeNull();
  });

  it('ext_authz applies the same rule (only the port may be left out there)', () => {
    for (const a of ['db.default:443', 'db.default:99999', `db.${'n'.repeat(63)}:443`, `db.${'n'.repeat(64)}:443`, `${'e'.repeat(64)}.ns:443`, 'db.default.svc:443']) {
      expect(extAuthzParseAuthority(a), a).toEqual(parseAuthority(a));
    }
    expect(extAuthzParseAuthority('db.default')).toEqual({ exportName: 'db', exportNamespace: 'default' });
  });

  it('client attribute headers: refused (not truncated) when out of bounds, the same on both sides', () => {
    const h = TUNNEL.headers;
    const cases: Array<Record<string, string>> = [
      { [h.clientNamespace]: 'n'.repeat(64) },
      { [h.clientNamespace]: 'Web' },
      { [h.clientServiceAccount]: 'sa\r\nx-injected: 1' },
      { [h.clientServiceAccount]: `${'a'.repeat(254)}` },
      { [h.clientLabels]: Array.from({ length: 65 }, (_, i) => `k${i}=v`).join('&') },
    ];
    for (const headers of cases) {
      expect(() => clientAttributesFromHead((n) => headers[n]), JSON.stringify(headers).slice(0, 80)).toThrow();
      expect(() => clientAttributesFromHeaders(headers)).toThrow();
    }
    const ok: Record<string, string> = { [h.clientNamespace]: 'n'.repeat(63), [h.clientServiceAccount]: 'build.bot-1', [h.clientLabels]: 'app=web' };
    expect(clientAttributesFromHead((n) => ok[n])).toEqual(clientAttributesFromHeaders(ok));
  });
});

describe('local clients file', () => {
  it('validates serviceAccount like a Kubernetes name', () => {
    const parse = (serviceAccount: string): boolean => localClientsSchema.safeParse({ clients: [{ address: '127.0.0.1', namespace: 'web', serviceAccount }] }).success;
    expect(parse('default')).toBe(true);
    expect(parse('ci.runner-2')).toBe(true);
    for (const bad of ['sa\r\nx-clusterlink-client-namespace: admin', 'Default', 'a b', '-x', 'a'.repeat(254), '']) expect(parse(bad), JSON.stringify(bad)).toBe(false);
  });
});
