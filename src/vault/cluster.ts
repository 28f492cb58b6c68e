import { UnreachableError, VaultopsError } from '../core/errors.js';
import { describeLogin, isNodeProblem, loginOnNode, renewSelf, revokeSelf, TokenLifetime } from './login.js';
import type { LoginSettings, LoginToken } from './login.js';
import { warnOnce } from './tls.js';
import { VaultClient } from './client.js';
import { Transport } from './transport.js';
import type { TlsSettings } from './tls.js';
import { isServing, type NodeHealth, type NodeState } from './health.js';
import type { AutopilotServer, AutopilotState, RaftServer } from './api-types.js';

export interface ClusterNode {
  name: string;
  apiAddr: string;
  clusterAddr?: string | undefined;
  zone?: string | undefined;
}

export interface ClusterConnection {
  name: string;
  nodes: readonly ClusterNode[];
  tls?: TlsSettings | undefined;
  token?: string | undefined;
  namespace?: string | undefined;
  timeoutMs?: number | undefined;
  retries?: number | undefined;
  /** Share another client's connection pool (withNodes). */
  transport?: Transport | undefined;
  /**
   * Log in with these settings (`login()`), instead of using `token`. The token is renewed while
   * the client is open and revoked by `release()`.
   */
  login?: LoginSettings | undefined;
  /** Where warnings about the login's token go (default: one line on stderr). */
  warn?: ((message: string) => void) | undefined;
}

export interface NodeProbe {
  node: ClusterNode;
  health?: NodeHealth;
  error?: VaultopsError;
}

export interface NodeStatus {
  name: string;
  address: string;
  zone?: string | undefined;
  reachable: boolean;
  error?: string | undefined;
  state: NodeState | 'unreachable';
  version?: string | undefined;
  initialized?: boolean | undefined;
  sealed?: boolean | undefined;
  leader: boolean;
  voter?: boolean | undefined;
  autopilotStatus?: string | undefined;
  healthy?: boolean | undefined;
  lastContact?: string | undefined;
  lastIndex?: number | undefined;
  lastTerm?: number | undefined;
}

export type ClusterHealth = 'healthy' | 'degraded' | 'unreachable';

export interface ClusterStatus {
  cluster: string;
  clusterName?: string | undefined;
  clusterId?: string | undefined;
  leader?: string | undefined;
  autopilot?: { healthy: boolean; failureTolerance: number; voters: number } | undefined;
  /** Why autopilot could not be read (no token, no leader...). */
  autopilotNote?: string | undefined;
  nodes: NodeStatus[];
  health: ClusterHealth;
  problems: string[];
}

/** Talks to every node of one cluster, with one connection pool and one set of TLS settings. */
export class ClusterClient {
  readonly name: string;
  readonly nodes: readonly ClusterNode[];
  readonly transport: Transport;
  #token: string | undefined;
  readonly #namespace: string | undefined;
  readonly #clients = new Map<string, VaultClient>();
  readonly #login: LoginSettings | undefined;
  readonly #warn: (message: string) => void;
  #session: { token: LoginToken; lifetime: TokenLifetime } | undefined;

  constructor(conn: ClusterConnection) {
    this.name = conn.name;
    this.nodes = conn.nodes;
    // Certificate login: the certificate is the credential, presented in the TLS handshake of every
    // request (as VAULT_CLIENT_CERT is by the official CLI), so the login request carries it.
    const login = conn.login;
    const tls =
      login?.method === 'cert' && login.clientCert !== undefined
        ? { ...conn.tls, clientCert: login.clientCert, clientKey: login.clientKey }
        : conn.tls;
    this.transport =
      conn.transport ?? new Transport({ tls, timeoutMs: conn.timeoutMs ?? 10_000, retries: conn.retries ?? 1 });
    this.#token = conn.token;
    this.#namespace = conn.namespace;
    this.#login = login;
    this.#warn = conn.warn ?? warnOnce;
  }

  /**
   * Logs in with the connection's login settings (a no-op without them, or when logged in already):
   * on the first node that can serve, since standbys forward logins to the active node. Refused
   * credentials stop at once with what to do; a node that is down, sealed or erring makes us try the
   * next one.
   */
  async login(): Promise<void> {
    const settings = this.#login;
    if (settings === undefined || this.#session !== undefined) return;
    let nodeProblem: unknown;
    for (const node of this.nodes) {
      let token: LoginToken;
      try {
        token = await loginOnNode(this.client(node.name), settings);
      } catch (e) {
        if (!isNodeProblem(e)) throw e;
        nodeProblem ??= e;
        continue;
      }
      this.setToken(token.token);
      this.#session = {
        token,
        lifetime: new TokenLifetime({
          token,
          what: describeLogin(settings),
          renew: () => this.#onAnyNode((c) => renewSelf(c)),
          warn: this.#warn,
        }),
      };
      return;
    }
    throw new UnreachableError(
      `Cannot log in to cluster ${this.name}: no node could take the ${describeLogin(settings)} (${(nodeProblem as Error | undefined)?.message ?? 'no nodes'}).`,
      { hint: 'Check that the nodes are up and unsealed (`vaultops status`), then run again.' },
    );
  }

  /**
   * The same login on another list of nodes (the cluster's own, found through the address the
   * operator gave): the new client takes over the connection pool, the token and its renewal and
   * revocation. Use only the new client afterwards.
   */
  handOver(name: string, nodes: readonly ClusterNode[]): ClusterClient {
    const next = new ClusterClient({
      name,
      nodes,
      token: this.#token,
      namespace: this.#namespace,
      transport: this.transport,
      login: this.#login,
      warn: this.#warn,
    });
    next.#session = this.#session;
    this.#session = undefined;
    return next;
  }

  /** The accessor of the token vaultops logged in for (undefined for a token the operator gave). */
  get loginAccessor(): string | undefined {
    return this.#session?.token.accessor;
  }

  /**
   * Ends the client: a token vaultops logged in for is revoked (auth/token/revoke-self), so it
   * does not outlive the run; a token the operator gave is left alone. Then closes the connections.
   */
  async release(): Promise<void> {
    const session = this.#session;
    this.#session = undefined;
    if (session) {
      session.lifetime.stop();
      try {
        await this.#onAnyNode((c) => revokeSelf(c));
      } catch (e) {
        this.#warn(
          `could not revoke the token from the ${session.lifetime.what} (${(e as Error).message}); it expires at the end of its TTL.`,
        );
      }
    }
    this.close();
  }

  /** Runs `fn` on the nodes in turn until one can serve it. */
  async #onAnyNode<T>(fn: (c: VaultClient) => Promise<T>): Promise<T> {
    let last: unknown;
    for (const node of this.nodes) {
      try {
        return await fn(this.client(node.name));
      } catch (e) {
        if (!isNodeProblem(e)) throw e;
        last = e;
      }
    }
    throw last instanceof Error ? last : new UnreachableError(`No node of cluster ${this.name} answered.`);
  }

  /**
   * The same cluster seen through another set of nodes (an immutable upgrade's old + new nodes):
   * same token, namespace and connection pool. Close the original, not this one.
   */
  withNodes(nodes: readonly ClusterNode[]): ClusterClient {
    return new ClusterClient({
      name: this.name,
      nodes,
      token: this.#token,
      namespace: this.#namespace,
      transport: this.transport,
    });
  }

  get hasToken(): boolean {
    return this.#token !== undefined;
  }

  setToken(token: string | undefined): void {
    this.#token = token;
    for (const c of this.#clients.values()) c.setToken(token);
  }

  client(nodeName: string): VaultClient {
    let c = this.#clients.get(nodeName);
    if (!c) {
      const node = this.nodes.find((n) => n.name === nodeName);
      if (!node) throw new VaultopsError(`Cluster ${this.name} has no node ${nodeName}.`);
      c = new VaultClient({
        address: node.apiAddr,
        label: node.name,
        token: this.#token,
        namespace: this.#namespace,
        transport: this.transport,
      });
      this.#clients.set(nodeName, c);
    }
    return c;
  }

  /** Health of every node at once; an unreachable node is a result, not an exception. */
  async probeAll(): Promise<NodeProbe[]> {
    return Promise.all(
      this.nodes.map(async (node): Promise<NodeProbe> => {
        try {
          return { node, health: await this.client(node.name).health() };
        } catch (e) {
          return { node, error: e instanceof VaultopsError ? e : new UnreachableError(String(e)) };
        }
      }),
    );
  }

  /**
   * The active node, asked of the nodes themselves (never taken from the file). Snapshot save and
   * restore are not forwarded by standbys, so they must go here.
   */
  async findLeader(probes?: NodeProbe[]): Promise<{ node: ClusterNode; client: VaultClient }> {
    const all = probes ?? (await this.probeAll());
    const active = all.filter((p) => p.health?.state === 'active');
    if (active.length === 1) return { node: active[0]!.node, client: this.client(active[0]!.node.name) };
    if (active.length > 1)
      throw new VaultopsError(
        `Cluster ${this.name} has ${active.length} active nodes (${active.map((p) => p.node.name).join(', ')}): split brain or a stale inventory.`,
      );
    // No node says it is active: ask a standby who it follows, in case the leader is outside the inventory.
    for (const p of all) {
      if (!p.health || !isServing(p.health.state)) continue;
      try {
        const l = await this.client(p.node.name).leader();
        const match = this.nodes.find((n) => sameHost(n.apiAddr, l.leader_address));
        if (match) return { node: match, client: this.client(match.name) };
        if (l.leader_address)
          throw new VaultopsError(
            `Cluster ${this.name}'s leader is ${l.leader_address}, which is not in the inventory.`,
            { hint: 'Add that node to the inventory.' },
          );
      } catch (e) {
        if (e instanceof VaultopsError && /not in the inventory/.test(e.message)) throw e;
      }
    }
    const states = all.map((p) => `${p.node.name}: ${p.health?.state ?? 'unreachable'}`).join(', ');
    throw new UnreachableError(`Cluster ${this.name} has no active node (${states}).`, {
      hint: 'Unseal the nodes (`vaultops run playbooks/unseal.yml`) or check why they lost quorum.',
    });
  }

  async status(): Promise<ClusterStatus> {
    const probes = await this.probeAll();
    const problems: string[] = [];
    const nodes: NodeStatus[] = probes.map((p) => ({
      name: p.node.name,
      address: p.node.apiAddr,
      zone: p.node.zone,
      reachable: p.health !== undefined,
      error: p.error?.message,
      state: p.health?.state ?? 'unreachable',
      version: p.health?.body.version,
      initialized: p.health?.body.initialized,
      sealed: p.health?.body.sealed,
      leader: p.health?.state === 'active',
    }));
    let leader: string | undefined;
    let autopilot: ClusterStatus['autopilot'];
    let autopilotNote: string | undefined;
    const activeProbes = probes.filter((p) => p.health?.state === 'active');
    if (activeProbes.length === 1) leader = activeProbes[0]!.node.name;
    if (leader === undefined) autopilotNote = 'no active node';
    else if (!this.#token) autopilotNote = 'no token in the inventory: Raft and autopilot need one';
    else {
      const lc = this.client(leader);
      try {
        const [state, config] = await Promise.all([lc.autopilotState(), lc.raftConfiguration()]);
        autopilot = {
          healthy: state.healthy,
          failureTolerance: state.failure_tolerance,
          voters: state.voters?.length ?? 0,
        };
        for (const n of nodes) {
          const node = this.nodes.find((x) => x.name === n.name)!;
          const server = matchRaft(node, config.config.servers);
          const ap = server ? state.servers[server.node_id] : matchAutopilot(node, state);
          n.voter = server ? server.voter : undefined;
          if (ap) {
            n.autopilotStatus = ap.status;
            n.healthy = ap.healthy;
            n.lastContact = ap.last_contact;
            n.lastIndex = ap.last_index;
            n.lastTerm = ap.last_term;
          }
          if (!server && n.reachable) problems.push(`${n.name} is not a member of the Raft configuration`);
        }
      } catch (e) {
        autopilotNote = `cannot read Raft/autopilot state: ${(e as Error).message}`;
      }
    }
    for (const n of nodes) {
      if (!n.reachable) problems.push(`${n.name} is unreachable: ${n.error ?? ''}`.trim());
      else if (n.state === 'sealed') problems.push(`${n.name} is sealed`);
      else if (n.state === 'uninitialized') problems.push(`${n.name} is not initialised`);
      else if (n.state !== 'unreachable' && !isServing(n.state)) problems.push(`${n.name} is ${n.state}`);
      if (n.reachable && n.voter === false) problems.push(`${n.name} is not a voter`);
    }
    if (leader === undefined && nodes.some((n) => n.reachable)) problems.push('no active node');
    if (autopilot) {
      if (!autopilot.healthy) problems.push('autopilot reports the cluster unhealthy');
      if (autopilot.failureTolerance < 1)
        problems.push(`failure tolerance is ${autopilot.failureTolerance}: losing one more node loses quorum`);
    }
    const health: ClusterHealth = nodes.some((n) => !n.reachable)
      ? 'unreachable'
      : problems.length
        ? 'degraded'
        : 'healthy';
    const first = probes.find((p) => p.health?.body.cluster_name)?.health?.body;
    return {
      cluster: this.name,
      clusterName: first?.cluster_name,
      clusterId: first?.cluster_id,
      leader,
      autopilot,
      autopilotNote,
      nodes,
      health,
      problems,
    };
  }

  /** Closes the connections (and stops renewing a login's token; `release()` also revokes it). */
  close(): void {
    this.#session?.lifetime.stop();
    this.transport.close();
  }
}

function hostOf(addr: string): string {
  try {
    return new URL(addr.includes('://') ? addr : `tcp://${addr}`).hostname;
  } catch {
    return addr;
  }
}

export function sameHost(a: string, b: string): boolean {
  return a !== '' && b !== '' && hostOf(a) === hostOf(b);
}

function matchRaft(node: ClusterNode, servers: readonly RaftServer[]): RaftServer | undefined {
  return (
    servers.find((s) => s.node_id === node.name) ??
    servers.find((s) => sameHost(s.address, node.clusterAddr ?? node.apiAddr))
  );
}

function matchAutopilot(node: ClusterNode, state: AutopilotState): AutopilotServer | undefined {
  return Object.values(state.servers ?? {}).find(
    (s) => s.id === node.name || sameHost(s.address, node.clusterAddr ?? node.apiAddr),
  );
}
