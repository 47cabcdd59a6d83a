// The reconciler in a cluster (or anywhere its data planes run in other processes): follows the
// fabric source, computes this peer's slice, serves it over ADS to every data-plane node of the
// peer (Envoy tunnel pods, or `clgo dataplane`), answers their ext_authz checks, and hands each
// accepted slice to an optional target (Kubernetes Services). A revision that fails anywhere
// before the push leaves the last good snapshot serving.
import { pino, type Logger } from 'pino';
import { z } from 'zod';
import { countDecisions, type DecisionCount } from './authz-counter.ts';
import { runRevisions } from './revision-loop.ts';
import type { ClientAttributes } from '../../protocol/contracts.ts';
import type { FabricModel } from '../../schema/model.ts';
import { diffSlices } from '../slice/diff.ts';
import { slice as sliceOf } from '../slice/slice.ts';
import type { Slice } from '../slice/types.ts';
import type { AcceptedRevision, FabricSource, SourceStatus } from '../source/types.ts';
import { startAdsServer, type AdsServer, type AdsStatus } from '../xds/ads-server.ts';
import { dataplaneTrust, RefusalLog, type DataplaneTrust, type RefusalCount } from '../xds/dataplane-auth.ts';
import { createAuthorizer, type SliceAuthorizer } from '../xds/authz.ts';
import type { PeerIdentity } from '../xds/config.ts';
import { egressResolverFromSlice, startExtAuthzServer } from '../xds/ext-authz-server.ts';
import { buildResources, ROUTE_TYPE_URL, type IdentityFiles } from '../xds/resources.ts';

/** Where a slice goes besides xDS (Kubernetes Services). Errors are reported, xDS keeps the revision. */
export interface SliceTarget {
  /** Throws when nothing could be applied; resolves `{ lastError }` when only some objects failed. */
  applySlice(slice: Slice, revision: string): Promise<unknown>;
}

const TargetResultSchema = z.object({ lastError: z.string().nullish() });

export interface ControlPlaneOptions {
  peer: string;
  source: FabricSource;
  /**
   * The peer certificate and key this control plane presents to its data planes (mutual TLS on
   * ADS and ext_authz). Without certificatePem, the committed peers/<peer>/peer.pem.
   */
  identity: PeerIdentity;
  /** Where the data planes read the same certificate and key (the mounted Secret): named in the identity secret, never sent. */
  identityFiles: IdentityFiles;
  /** ADS listen address, e.g. 0.0.0.0:18000. */
  xds: { host: string; port: number };
  /** ext_authz listen address, and the address data planes use to reach it (a Service name in a cluster). */
  authz: { host: string; port: number; advertise?: { host: string; port: number } };
  /** Where data planes bind: import listeners (0.0.0.0 in a pod) and the gateway (e.g. 0.0.0.0:8443 behind a 443 Service). */
  egressAddress: string;
  gateway?: { address: string; port: number };
  clientAttributes: (address: string) => ClientAttributes | null;
  target?: SliceTarget;
  logger?: Logger;
  now?: () => Date;
}

export interface ControlPlaneStatus {
  peer: string;
  ready: boolean;
  source: SourceStatus;
  applied: { revision: string; at: string; resources: number } | null;
  lastApplyError: { revision: string; message: string; at: string } | null;
  target: { revision: string; ok: boolean; error: string | null; at: string } | null;
  xds: AdsStatus;
  /** Data planes' verdict on what was served: False while some node's last answer for a type is a NACK. */
  xdsAccepted: { status: 'True' | 'False'; reason: 'Accepted' | 'Rejected'; message: string };
  /** Clients refused by the mutual TLS of ADS and ext_authz, by server and reason (cumulative). */
  refusedClients: RefusalCount[];
}

export interface ControlPlane {
  status(): ControlPlaneStatus;
  slice(): Slice | null;
  fabric(): FabricModel | null;
  authorizer: SliceAuthorizer;
  xdsAddress: { host: string; port: number };
  authzAddress: string;
  /** Resolves after the next revision has been processed (applied or refused). */
  nextApply(): Promise<void>;
  /** ext_authz decisions made for the data planes, cumulative. */
  authzCounts(): DecisionCount[];
  /** A rotated certificate and key (e.g. the mounted Secret changed): presented from now on, and accepted from data planes. */
  updateIdentity(identity: PeerIdentity): void;
  close(): Promise<void>;
}

export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const log = opts.logger ?? pino({ level: 'silent' });
  let currentSlice: Slice | null = null;
  let currentFabric: FabricModel | null = null;
  let applied: ControlPlaneStatus['applied'] = null;
  let target: ControlPlaneStatus['target'] = null;

  const authorizer = createAuthorizer({ slice: () => currentSlice ?? emptySlice(opts.peer), clientAttributes: opts.clientAttributes, now: opts.now });
  const counted = countDecisions(authorizer);

  // Mutual TLS on both servers: the identity presented, and the trust data planes are checked
  // against (rebuilt when a revision or the identity changes).
  let identity = opts.identity;
  let trust: DataplaneTrust | null = null;
  const serverIdentity = (): { certificatePem: string; privateKeyPem: string } | null => {
    const certificatePem = identity.certificatePem ?? currentSlice?.self.certificatePem ?? null;
    return certificatePem ? { certificatePem, privateKeyPem: identity.privateKeyPem } : null;
  };
  const rebuildTrust = (): void => {
    trust = currentSlice ? dataplaneTrust(opts.peer, currentSlice, identity.certificatePem ?? null) : null;
  };
  const refusals = new RefusalLog(log.child({ component: 'dataplane-auth' }));
  const tls = { identity: serverIdentity, trust: () => trust, refusals };
  const nodePrefix = `${opts.peer}/`;
  const ads: AdsServer = await startAdsServer({
    host: opts.xds.host,
    port: opts.xds.port,
    logger: log.child({ component: 'ads' }),
    tls,
    authorizeNode: (id) => (id === opts.peer || (id.startsWith(nodePrefix) && id.length > nodePrefix.length) ? null : `node id "${id}" is not ${opts.peer} or ${opts.peer}/<name>: this control plane serves only peer ${opts.peer}`),
  });
  let authz: Awaited<ReturnType<typeof startExtAuthzServer>>;
  try {
    authz = await startExtAuthzServer({
      authorizer: counted.authorizer,
      resolveEgress: egressResolverFromSlice(() => currentSlice ?? emptySlice(opts.peer)),
      address: `${opts.authz.host.includes(':') ? `[${opts.authz.host}]` : opts.authz.host}:${opts.authz.port}`,
      logger: log.child({ component: 'ext-authz' }),
      tls,
    });
  } catch (err) {
    await ads.close();
    throw err;
  }
  const advertise = opts.authz.advertise ?? { host: opts.authz.host === '0.0.0.0' ? '127.0.0.1' : opts.authz.host, port: authz.port };

  async function apply(rev: AcceptedRevision): Promise<void> {
    if (!rev.fabric.peers.some((p) => p.name === opts.peer)) {
      throw new Error(`peer ${opts.peer} is not a member of the fabric at this revision (no peers/${opts.peer}/peer.yaml); keeping the last good configuration`);
    }
    const next = sliceOf(rev.fabric, opts.peer);
    const certificatePem = identity.certificatePem ?? next.self.certificatePem;
    if (!certificatePem) throw new Error(`peer ${opts.peer} has no certificate: commit peers/${opts.peer}/peer.pem`);
    // Build everything before anything changes: a resource that cannot be built refuses the revision.
    const resources = buildResources(next, {
      egressAddress: opts.egressAddress,
      ...(opts.gateway ? { ingress: opts.gateway } : {}),
      authz: advertise,
      identityFiles: opts.identityFiles,
    });
    const diff = diffSlices(currentSlice, next);
    currentSlice = next;
    currentFabric = rev.fabric;
    // New CA bundle, revocations or committed certificate: admit accordingly, drop who no longer passes.
    rebuildTrust();
    for (const server of [ads, authz]) {
      server.refreshIdentity();
      server.recheckClients();
    }
    // Routes first: a listener that names them by RDS warms until they arrive.
    ads.setResources(opts.peer, ROUTE_TYPE_URL, resources.routes ?? new Map());
    ads.setSnapshot(opts.peer, resources);
    const count = resources.listeners.size + resources.clusters.size + resources.endpoints.size + resources.secrets.size + (resources.routes?.size ?? 0);
    applied = { revision: rev.revision, at: new Date().toISOString(), resources: count };
    log.info({ revision: rev.revision, resources: count, unchanged: diff.empty }, 'revision served over xDS');
    if (opts.target) {
      try {
        const result = await opts.target.applySlice(next, rev.revision);
        // A target that reports per-object failures (RBAC denials, say) without throwing.
        const lastError = TargetResultSchema.safeParse(result).data?.lastError ?? null;
        target = { revision: rev.revision, ok: lastError === null, error: lastError, at: new Date().toISOString() };
        if (lastError) log.error({ revision: rev.revision, err: lastError }, 'some of the slice could not be applied to the cluster; will retry with the next revision');
      } catch (err) {
        target = { revision: rev.revision, ok: false, error: (err as Error).message, at: new Date().toISOString() };
        log.error({ revision: rev.revision, err: (err as Error).message }, 'applying the slice to the cluster failed; will retry with the next revision');
      }
    }
  }

  const loop = runRevisions(opts.source, apply, log);

  try {
    await opts.source.start();
  } catch (err) {
    await Promise.all([ads.close(), authz.stop()]);
    throw err;
  }

  return {
    authorizer,
    xdsAddress: ads.address,
    authzAddress: authz.address,
    slice: () => currentSlice,
    fabric: () => currentFabric,
    nextApply: () => loop.nextApply(),
    authzCounts: () => counted.counts(),
    updateIdentity(next) {
      identity = next;
      rebuildTrust();
      for (const server of [ads, authz]) {
        server.refreshIdentity();
        server.recheckClients();
      }
      log.info('peer certificate and key reloaded for the control plane\'s mutual TLS');
    },
    status: () => {
      const xds = ads.status();
      return {
        peer: opts.peer,
        ready: applied !== null,
        source: opts.source.status(),
        applied,
        lastApplyError: loop.lastApplyError(),
        target,
        xds,
        xdsAccepted: xdsAccepted(xds),
        refusedClients: refusals.snapshot(),
      };
    },
    async close() {
      await opts.source.stop();
      await loop.close();
      await Promise.all([ads.close(), authz.stop()]);
    },
  };
}

/** The condition over every node and type: Rejected while any node's last answer is a NACK (naming the first, with the data plane's reason). */
export function xdsAccepted(xds: AdsStatus): ControlPlaneStatus['xdsAccepted'] {
  const rejected = xds.nodes.flatMap((n) => Object.entries(n.types).filter(([, t]) => t.nack !== null).map(([type, t]) => ({ node: n.node, type, nack: t.nack! })));
  if (rejected.length === 0) return { status: 'True', reason: 'Accepted', message: 'no data plane rejects the served configuration' };
  const first = rejected[0]!;
  const more = rejected.length > 1 ? ` (and ${rejected.length - 1} more node/type pairs)` : '';
  return {
    status: 'False',
    reason: 'Rejected',
    message: `${first.node} rejected ${first.type.slice(first.type.lastIndexOf('.') + 1)} version ${first.nack.version} and keeps its last accepted one: ${first.nack.message}${more}`,
  };
}

function emptySlice(peer: string): Slice {
  return { fabric: '', self: { name: peer, labels: {}, gateways: [], certificatePem: null }, caCertificates: [], revoked: { serials: [], fingerprints: [] }, members: [], exports: [], imports: [], policies: [] };
}
