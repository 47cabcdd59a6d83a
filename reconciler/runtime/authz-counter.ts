// Counts the authorization decisions a data plane asks for (by direction, result and deciding
// tier) without changing them: wraps an Authorizer, sync or async, for metrics.
import type { Authorizer, EgressVerdict, IngressVerdict } from '../../protocol/contracts.ts';

export interface DecisionCount {
  direction: 'egress' | 'ingress';
  result: 'allowed' | 'denied';
  /** privileged | user | default for denials; `unknown` for allowed verdicts, which carry no explanation. */
  tier: string;
  count: number;
}

export function countDecisions<A extends Authorizer>(inner: A): { authorizer: Authorizer; counts(): DecisionCount[] } {
  const decisions = new Map<string, number>();
  const count = (direction: 'egress' | 'ingress', v: EgressVerdict | IngressVerdict): void => {
    const key = `${direction}|${v.allowed ? 'allowed' : 'denied'}|${v.allowed ? 'unknown' : v.explanation.tier}`;
    decisions.set(key, (decisions.get(key) ?? 0) + 1);
  };
  const tap =
    <V extends EgressVerdict | IngressVerdict>(direction: 'egress' | 'ingress') =>
    (v: V | Promise<V>): V | Promise<V> => {
      if (v instanceof Promise) return v.then((r) => (count(direction, r), r));
      count(direction, v);
      return v;
    };
  const authorizer: Authorizer = {
    egress: (check) => tap<EgressVerdict>('egress')(inner.egress(check)),
    ingress: (check) => tap<IngressVerdict>('ingress')(inner.ingress(check)),
  };
  return {
    authorizer,
    counts: () =>
      [...decisions].map(([key, n]) => {
        const [direction, result, tier] = key.split('|') as ['egress' | 'ingress', 'allowed' | 'denied', string];
        return { direction, result, tier, count: n };
      }),
  };
}
