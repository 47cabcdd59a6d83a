// Leader election on a coordination.k8s.io/v1 Lease, in the manner of client-go's leaderelection:
// optimistic concurrency (update carries the resourceVersion we read; 409 = someone else wrote
// first), expiry judged by *our* clock from when we last saw the record change (no clock-skew
// trust in renewTime), and a leader that cannot renew within renewDeadline steps down before the
// lease could be taken by someone else.
import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { z } from 'zod';
import { errorMessage, sleep, statusCode } from './api.ts';

const LeaseSchema = z.object({
  metadata: z.object({ name: z.string(), resourceVersion: z.string().optional() }),
  spec: z
    .object({
      holderIdentity: z.string().nullish(),
      leaseDurationSeconds: z.number().int().nullish(),
      acquireTime: z.union([z.string(), z.date()]).nullish(),
      renewTime: z.union([z.string(), z.date()]).nullish(),
      leaseTransitions: z.number().int().nullish(),
    })
    .nullish(),
});
type Lease = z.infer<typeof LeaseSchema>;

export interface LeaderElectionOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSeconds?: number;
  /** A leader that has not renewed for this long steps down (must be < lease duration). */
  renewDeadlineMs?: number;
  /** Time between attempts to acquire or renew. */
  retryPeriodMs?: number;
  onStartedLeading?: () => void;
  onStoppedLeading?: () => void;
  onError?: (message: string) => void;
}

export interface LeaderElector {
  isLeader(): boolean;
  /** Stops electing; a leader releases the lease (holder cleared) so a standby takes over at once. */
  stop(opts?: { release?: boolean }): Promise<void>;
}

const toIso = (d: string | Date | null | undefined): string => (d instanceof Date ? d.toISOString() : (d ?? ''));

export function startLeaderElection(opts: LeaderElectionOptions): LeaderElector {
  const api = opts.kubeConfig.makeApiClient(CoordinationV1Api);
  const leaseSeconds = opts.leaseDurationSeconds ?? 15;
  const leaseMs = leaseSeconds * 1000;
  const renewDeadlineMs = opts.renewDeadlineMs ?? Math.floor(leaseMs * (2 / 3));
  const retryMs = opts.retryPeriodMs ?? Math.max(50, Math.floor(leaseMs / 5));
  if (renewDeadlineMs >= leaseMs) throw new Error('renewDeadlineMs must be shorter than the lease duration');
  const stopper = new AbortController();
  let leader = false;
  let lastRenew = 0;
  // What we last saw of someone else's record, and when (by our clock).
  let observed: { key: string; at: number } | undefined;

  const setLeader = (v: boolean) => {
    if (v === leader) return;
    leader = v;
    try {
      if (v) opts.onStartedLeading?.();
      else opts.onStoppedLeading?.();
    } catch (err) {
      opts.onError?.(`leadership callback failed: ${errorMessage(err)}`);
    }
  };

  function body(prev: Lease | undefined, now: Date): V1Lease {
    const spec = prev?.spec ?? {};
    const wasMine = spec.holderIdentity === opts.identity;
    const renew = new V1MicroTime(now.getTime());
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: opts.name, namespace: opts.namespace, ...(prev?.metadata.resourceVersion ? { resourceVersion: prev.metadata.resourceVersion } : {}) },
      spec: {
        holderIdentity: opts.identity,
        leaseDurationSeconds: leaseSeconds,
        // MicroTime: the API server parses exactly six fractional digits; V1MicroTime serializes so.
        acquireTime: wasMine && spec.acquireTime ? new V1MicroTime(new Date(toIso(spec.acquireTime)).getTime()) : renew,
        renewTime: renew,
        leaseTransitions: (spec.leaseTransitions ?? 0) + (prev && !wasMine && spec.holderIdentity ? 1 : 0),
      },
    };
  }

  /** One attempt; true when we hold the lease afterwards. */
  async function tryAcquireOrRenew(): Promise<boolean> {
    const now = new Date();
    let current: Lease | undefined;
    try {
      current = LeaseSchema.parse(await api.readNamespacedLease({ namespace: opts.namespace, name: opts.name }));
    } catch (err) {
      if (statusCode(err) !== 404) throw err;
    }
    if (!current) {
      try {
        await api.createNamespacedLease({ namespace: opts.namespace, body: body(undefined, now) });
        return true;
      } catch (err) {
        if (statusCode(err) === 409) return false; // another candidate created it first
        throw err;
      }
    }
    const spec = current.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    if (holder && holder !== opts.identity) {
      const key = `${holder}|${toIso(spec.renewTime)}|${current.metadata.resourceVersion ?? ''}`;
      if (!observed || observed.key !== key) observed = { key, at: Date.now() };
      const duration = (spec.leaseDurationSeconds ?? leaseSeconds) * 1000;
      if (Date.now() - observed.at < duration) return false; // held and not expired by our clock
    }
    try {
      await api.replaceNamespacedLease({ namespace: opts.namespace, name: opts.name, body: body(current, now) });
      return true;
    } catch (err) {
      if (statusCode(err) === 409) return false; // lost the race: someone updated since our read
      throw err;
    }
  }

  async function loop(): Promise<void> {
    while (!stopper.signal.aborted) {
      try {
        const held = await tryAcquireOrRenew();
        if (stopper.signal.aborted) break;
        if (held) {
          lastRenew = Date.now();
          observed = undefined;
          setLeader(true);
        } else if (leader) {
          // Someone else holds it now (we were too slow): we are no longer leader.
          setLeader(false);
        }
      } catch (err) {
        opts.onError?.(`lease ${opts.namespace}/${opts.name}: ${errorMessage(err)}`);
      }
      if (leader && Date.now() - lastRenew > renewDeadlineMs) setLeader(false);
      await sleep(retryMs, stopper.signal);
    }
  }

  const running = loop();

  return {
    isLeader: () => leader,
    async stop(stopOpts) {
      stopper.abort();
      await running;
      if (leader && stopOpts?.release !== false) {
        try {
          const current = LeaseSchema.parse(await api.readNamespacedLease({ namespace: opts.namespace, name: opts.name }));
          if (current.spec?.holderIdentity === opts.identity) {
            const b = body(current, new Date());
            // Released as client-go does: empty holder, so the next candidate need not wait for expiry.
            if (b.spec) b.spec.holderIdentity = '';
            await api.replaceNamespacedLease({ namespace: opts.namespace, name: opts.name, body: b });
          }
        } catch (err) {
          opts.onError?.(`releasing lease: ${errorMessage(err)}`);
        }
      }
      setLeader(false);
    },
  };
}
