// One keep-alive HTTPS agent per API server for the reconciler's requests. client-node 1.4 builds
// a new https.Agent for every request (KubeConfig.applySecurityAuthentication), so every request
// pays a TCP connect and a full TLS handshake on both sides; against a real kube-apiserver that was
// most of the cost of applying thousands of Services. The subclass keeps everything else of the
// KubeConfig (credentials are still applied per request, so rotated tokens are picked up) and only
// swaps the agent for a shared one with the same TLS options.
import https from 'node:https';
import { createHash } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';

type RequestContext = Parameters<KubeConfig['applySecurityAuthentication']>[0];

export interface ConnectionReuse {
  kubeConfig: KubeConfig;
  /** Closes the pooled connections (idle ones at once, busy ones when their request ends). */
  close(): void;
}

class ReusingKubeConfig extends KubeConfig {
  private readonly agents = new Map<string, https.Agent>();

  constructor(private readonly maxSockets: number) {
    super();
  }

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const agent = context.getAgent();
    if (agent instanceof https.Agent) context.setAgent(this.shared(agent.options));
  }

  private shared(o: https.AgentOptions): https.Agent {
    // Keyed by what makes two agents differ, so a changed client certificate gets a new pool.
    const key = createHash('sha256')
      .update(JSON.stringify([o.ca, o.cert, o.key, o.pfx, o.passphrase, o.rejectUnauthorized, o.servername].map((v) => (Buffer.isBuffer(v) ? v.toString('base64') : (v ?? null)))))
      .digest('hex');
    let agent = this.agents.get(key);
    if (!agent) {
      agent = new https.Agent({ ...o, keepAlive: true, maxSockets: this.maxSockets });
      this.agents.set(key, agent);
    }
    return agent;
  }

  destroyAgents(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }
}

/** A copy of `kubeConfig` whose API clients share pooled keep-alive connections. */
export function withConnectionReuse(kubeConfig: KubeConfig, opts: { maxSockets?: number } = {}): ConnectionReuse {
  const kc = new ReusingKubeConfig(opts.maxSockets ?? 32);
  kc.loadFromOptions({ clusters: kubeConfig.clusters, users: kubeConfig.users, contexts: kubeConfig.contexts, currentContext: kubeConfig.currentContext });
  return { kubeConfig: kc, close: () => kc.destroyAgents() };
}
