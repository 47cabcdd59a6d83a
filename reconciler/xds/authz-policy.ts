// Seam between the Authorizer and reconciler/policy (bound once the policy engine lands).
import type { ClientAttributes, Explanation } from '../../dataplane/contracts.ts';
import type { PolicyModel } from '../../schema/model.ts';

export interface AccessQuestion {
  direction: 'egress' | 'ingress';
  namespace: string;
  self: string;
  client: ClientAttributes;
  peer: { name: string; labels: Record<string, string> };
  export: { name: string; namespace: string; labels: Record<string, string> };
}

export type CompiledPolicies = { policies: PolicyModel[] };

export function compileSlicePolicies(policies: PolicyModel[]): CompiledPolicies {
  return { policies };
}

export function decideAccess(_compiled: CompiledPolicies, _q: AccessQuestion): { allowed: boolean; explanation: Explanation } {
  throw new Error('policy engine not bound yet');
}
