// The edge where a live ClusterLink installation comes in: zod schemas for what the Kubernetes API
// returns for ClusterLink's clusterlink.net/v1alpha1 objects and for the few core objects that say
// which peer a cluster is (the peer certificate's Secret, the control plane's Deployment). They
// check only what the migration relies on; specs are kept as received (the fabric loader judges
// them later, with positions), and anything the server adds is named here so it can be dropped.
import { z } from 'zod';

const stringMap = z.record(z.string(), z.string());

/** One managedFields entry: who last set which fields (used to spot server-leased values). */
const managedFieldsEntry = z.looseObject({
  manager: z.string().optional(),
  operation: z.string().optional(),
  fieldsV1: z.unknown().optional(),
});

const ownerReference = z.looseObject({ kind: z.string(), name: z.string() });

export const apiObjectMeta = z.looseObject({
  name: z.string().min(1),
  namespace: z.string().optional(),
  labels: stringMap.nullish(),
  annotations: stringMap.nullish(),
  finalizers: z.array(z.string()).nullish(),
  ownerReferences: z.array(ownerReference).nullish(),
  deletionTimestamp: z.unknown().optional(),
  managedFields: z.array(managedFieldsEntry).nullish(),
});

const condition = z.looseObject({
  type: z.string(),
  status: z.string(),
  reason: z.string().optional(),
  message: z.string().optional(),
});

/** Any clusterlink.net object as listed: metadata checked, spec kept as it is, status read for conditions. */
export const clusterLinkObject = z.looseObject({
  apiVersion: z.string().optional(),
  kind: z.string().optional(),
  metadata: apiObjectMeta,
  spec: z.record(z.string(), z.unknown()).optional(),
  status: z
    .looseObject({
      conditions: z.array(condition).nullish(),
      /** Peer only: the labels the remote peer reported about itself (heartbeat). */
      labels: stringMap.nullish(),
    })
    .nullish(),
});
export type ClusterLinkObject = z.infer<typeof clusterLinkObject>;

export const objectList = z.looseObject({
  metadata: z.looseObject({ continue: z.string().optional() }).optional(),
  items: z.array(z.unknown()),
});

/** A ClusterLink Peer's gateways, when they have the shape ClusterLink's CRD gives them. */
export const peerGateways = z.array(z.looseObject({ host: z.string().min(1), port: z.number().int() }));

/**
 * The peer certificate's Secret (`cl-peer`): only `cert.pem` is kept (z.object drops the other
 * keys, among them the peer's private key `key.pem`, which is never decoded, logged or written).
 */
export const peerSecret = z.object({
  data: z.object({ 'cert.pem': z.string().optional() }).nullish(),
});

/** The control plane's Deployment (`cl-controlplane`): its `--peer-label k=v` arguments are the peer's labels. */
export const controlPlaneDeployment = z.looseObject({
  spec: z
    .looseObject({
      template: z
        .looseObject({
          spec: z
            .looseObject({
              containers: z.array(z.looseObject({ name: z.string(), args: z.array(z.string()).nullish() })).nullish(),
            })
            .optional(),
        })
        .optional(),
    })
    .optional(),
});

/** The operator's Instance: where the deployment was told the peer's labels and the ingress it got. */
export const instanceObject = z.looseObject({
  metadata: apiObjectMeta,
  spec: z
    .looseObject({
      namespace: z.string().optional(),
      peerLabels: stringMap.nullish(),
    })
    .nullish(),
  status: z
    .looseObject({
      ingress: z.looseObject({ ip: z.string().optional(), port: z.number().int().optional() }).nullish(),
    })
    .nullish(),
});
export type InstanceObject = z.infer<typeof instanceObject>;

/** Parses `--peer-label` arguments the way ClusterLink's control plane does (cobra StringToString: `--peer-label k=v`, `--peer-label=k=v`, comma-separated pairs). */
export function peerLabelsFromArgs(args: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  const add = (value: string): void => {
    for (const pair of value.split(',')) {
      const eq = pair.indexOf('=');
      if (eq > 0) labels[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--peer-label' && i + 1 < args.length) add(args[++i]!);
    else if (arg.startsWith('--peer-label=')) add(arg.slice('--peer-label='.length));
  }
  return labels;
}
