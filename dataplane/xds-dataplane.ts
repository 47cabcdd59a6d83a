// The Node data plane as its own process: an xDS client of the reconciler (like an Envoy tunnel
// pod) whose connection decisions come from the reconciler's ext_authz service. The first complete
// config starts the listeners; later ones update them in place and, when the authorization inputs
// changed (authzRevision), re-check open tunnels. While
// the control plane is away the last config keeps serving (and new connections fail closed at
// authorization, never open).
import { pino, type Logger } from 'pino';
import type { DataplaneConfig } from '../protocol/contracts.ts';
import { startDataplane, type Dataplane, type DataplaneLimits, type DataplaneStats } from './dataplane.ts';
import { remoteAuthorizer } from './xds-client/remote-authorizer.ts';
import { startXdsClient, type XdsClientStatus } from './xds-client/client.ts';
import { controlPlaneCredentials, type ControlPlaneTlsFiles } from './xds-client/tls.ts';

export interface XdsDataplaneOptions {
  /** host:port of the reconciler's ADS server. */
  xds: string;
  /** host:port of the reconciler's ext_authz service. */
  authz: string;
  /** `<peer>` or `<peer>/<pod>`. */
  nodeId: string;
  /** The mounted peer Secret: the data plane authenticates to the control plane with it, and checks the control plane's certificate. */
  tls: Omit<ControlPlaneTlsFiles, 'peer'>;
  protocol?: 'sotw' | 'delta';
  limits?: Partial<DataplaneLimits>;
  logger?: Logger;
}

export interface XdsDataplane {
  /** Ready once a config from the control plane is serving. */
  ready(): boolean;
  status(): { xds: XdsClientStatus; dataplane: DataplaneStats | null; lastError: string | null };
  dataplane(): Dataplane | null;
  /** Resolves once the config of `version` (or any, when omitted) is serving; bounded by timeoutMs. */
  waitForConfig(version?: string, timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

export function startXdsDataplane(opts: XdsDataplaneOptions): XdsDataplane {
  const log = opts.logger ?? pino({ level: 'silent' });
  const peer = opts.nodeId.split('/')[0] ?? opts.nodeId;
  const credentials = controlPlaneCredentials({ ...opts.tls, peer });
  const authorizer = remoteAuthorizer(opts.authz, { credentials, serverName: peer });
  let dataplane: Dataplane | null = null;
  let starting: Promise<Dataplane> | null = null;
  let lastError: string | null = null;
  let serving: string | null = null;
  /** authzRevision of the config whose rights open tunnels were last checked against. */
  let checkedRevision: string | null = null;
  const waiters = new Set<() => void>();

  async function onConfig(config: DataplaneConfig): Promise<void> {
    try {
      if (!dataplane) {
        starting ??= startDataplane({ config, authorizer, logger: log.child({ component: 'dataplane' }), ...(opts.limits ? { limits: opts.limits } : {}) });
        dataplane = await starting;
      } else {
        await dataplane.update(config);
        // Tunnels the new config no longer allows close now; the rest keep flowing. Only when what
        // rights depend on changed (authzRevision): each re-check is a remote ext_authz call per
        // open tunnel, which a config that only moved an endpoint or a port does not need.
        if (config.authzRevision == null || config.authzRevision !== checkedRevision) await dataplane.revalidate();
        else log.debug({ version: config.version }, 'authorization inputs unchanged: open tunnels not re-checked');
      }
      checkedRevision = config.authzRevision ?? null;
      serving = config.version;
      lastError = null;
      for (const w of waiters) w();
    } catch (err) {
      lastError = (err as Error).message;
      log.error({ version: config.version, err: lastError }, 'config not applied; the previous one keeps serving');
      throw err; // the xDS client NACKs it
    }
  }

  const client = startXdsClient({ server: opts.xds, nodeId: opts.nodeId, credentials, serverName: peer, onConfig, protocol: opts.protocol ?? 'sotw', logger: log.child({ component: 'xds-client' }) });

  return {
    ready: () => serving !== null,
    status: () => ({ xds: client.status(), dataplane: dataplane ? dataplane.stats() : null, lastError }),
    dataplane: () => dataplane,
    waitForConfig(version, timeoutMs = 10_000) {
      const done = (): boolean => serving !== null && (version === undefined || serving === version);
      if (done()) return Promise.resolve(true);
      return new Promise((resolve) => {
        const check = (): void => {
          if (!done()) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(true);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          resolve(false);
        }, timeoutMs);
        waiters.add(check);
      });
    },
    async close() {
      await client.stop();
      authorizer.close();
      if (dataplane) await dataplane.close();
    },
  };
}
