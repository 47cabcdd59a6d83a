// The network-facing parsers of the authorization path and the xDS client never throw on hostile
// input: they answer "invalid" (ext_authz) or raise ResourceError (→ NACK).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { clientAttributeHeaders, clientAttributesFromHeaders, parseAuthority } from '../../protocol/ext-authz.ts';
import { parseCheckRequest } from '../../reconciler/xds/ext-authz-server.ts';
import { decodeResource, ResourceError } from '../../dataplane/xds-client/decode.ts';
import { TYPE_URL } from '../../protocol/envoy-protos.ts';
import { TUNNEL } from '../../protocol/contracts.ts';

const noImport = () => null;

describe('parseCheckRequest', () => {
  it('never throws on arbitrary input', () => {
    fc.assert(
      fc.property(fc.anything(), (raw) => {
        const q = parseCheckRequest(raw, noImport);
        expect(['egress', 'ingress', 'invalid']).toContain(q.side);
      }),
      { numRuns: 500 },
    );
  });

  it('never throws on arbitrary CONNECT requests, and only yields ingress with a certificate', () => {
    const req = fc.record({
      certificate: fc.oneof(fc.string({ maxLength: 300 }), fc.constant('%E0%A4%A'), fc.constant('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----')),
      host: fc.string({ maxLength: 80 }),
      headers: fc.dictionary(fc.string({ maxLength: 40 }), fc.string({ maxLength: 200 }), { maxKeys: 8 }),
    });
    fc.assert(
      fc.property(req, ({ certificate, host, headers }) => {
        const q = parseCheckRequest({ attributes: { source: { certificate }, request: { http: { method: 'CONNECT', host, headers } } } }, noImport);
        if (q.side === 'ingress') expect(q.check.peerCertificateDer.length).toBeGreaterThan(0);
        else expect(q.side).toBe('invalid');
      }),
      { numRuns: 500 },
    );
  });

  it('reads headers from header_map as Envoy sends them with encode_raw_headers', () => {
    const pem = '-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----';
    const q = parseCheckRequest(
      {
        attributes: {
          source: { certificate: encodeURIComponent(pem) },
          request: {
            http: {
              method: 'CONNECT',
              host: 'db.default:443',
              header_map: { headers: [{ key: TUNNEL.headers.clientNamespace, raw_value: Buffer.from('shop') }, { key: TUNNEL.headers.clientLabels, value: 'app=web' }] },
            },
          },
        },
      },
      noImport,
    );
    expect(q).toMatchObject({ side: 'ingress', check: { exportName: 'db', exportNamespace: 'default', client: { namespace: 'shop', labels: { app: 'web' } } } });
  });
});

describe('CONNECT authority and client attribute headers', () => {
  it('parses only <export>.<namespace>[:port]', () => {
    expect(parseAuthority(TUNNEL.authority('db', 'default'))).toEqual({ exportName: 'db', exportNamespace: 'default' });
    expect(parseAuthority('db.default')).toEqual({ exportName: 'db', exportNamespace: 'default' });
    // Export names are DNS subdomains (may hold dots); namespaces are labels: the last dot splits.
    expect(parseAuthority('db.v2.default:443')).toEqual({ exportName: 'db.v2', exportNamespace: 'default' });
    for (const bad of ['db:443', 'db..default:443', 'DB.default:443', '.default:443', 'db.:443', '', `${'a'.repeat(254)}.default:443`]) expect(parseAuthority(bad)).toBeNull();
  });

  it('round-trips client attributes through the CONNECT headers', () => {
    const key = fc.stringMatching(/^[a-z0-9]([a-z0-9.-]{0,20}\/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,10}[A-Za-z0-9])?$/);
    const value = fc.stringMatching(/^([A-Za-z0-9]([A-Za-z0-9_.-]{0,10}[A-Za-z0-9])?)?$/);
    fc.assert(
      fc.property(fc.dictionary(key, value, { maxKeys: 10 }), fc.option(fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$/), { nil: undefined }), (labels, namespace) => {
        const client = namespace === undefined ? { labels } : { namespace, labels };
        expect(clientAttributesFromHeaders(clientAttributeHeaders(client))).toEqual(client);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses more labels than the bound', () => {
    const many = new URLSearchParams(Array.from({ length: 100 }, (_, i): [string, string] => [`k${i}`, 'v'])).toString();
    expect(() => clientAttributesFromHeaders({ [TUNNEL.headers.clientLabels]: many })).toThrow(/at most 64 labels/);
  });
});

describe('xDS resource decoding', () => {
  it('rejects arbitrary bytes with a ResourceError (a NACK), never another failure', () => {
    fc.assert(
      fc.property(fc.constantFrom(...Object.values(TYPE_URL)), fc.uint8Array({ maxLength: 200 }), (typeUrl, bytes) => {
        try {
          decodeResource(typeUrl, { type_url: typeUrl, value: bytes });
        } catch (err) {
          expect(err).toBeInstanceOf(ResourceError);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('rejects a resource of another type inside a response', () => {
    expect(() => decodeResource(TYPE_URL.listener, { type_url: TYPE_URL.cluster, value: new Uint8Array() })).toThrow(ResourceError);
  });
});
