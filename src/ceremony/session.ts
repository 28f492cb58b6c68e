import { VaultopsError } from '../core/errors.js';
import type { VaultClient } from '../vault/client.js';
import type { ClusterClient, ClusterNode } from '../vault/cluster.js';
import { detectCeremonyPaths, type CeremonyPaths } from '../vault/ceremonies.js';

/** The node holding a ceremony lost leadership or restarted: the attempt is gone. */
export class CeremonyLostError extends VaultopsError {
  constructor(message: string, hint: string) {
    super(message, { hint });
  }
}

/**
 * Generate-root and rekey progress live in the active node's memory only (vault/generate_root.go:
 * fields on Core), and a leadership change or a restart loses them.
 * A session pins the node that was the leader when the ceremony started, sends every call there
 * (no forwarding, no redirects, no load balancer), and before each call checks that this node is
 * still the active one, so a lost attempt is reported as lost rather than as a confusing
 * "no root generation in progress" from another node.
 */
export class CeremonySession {
  readonly cluster: ClusterClient;
  readonly node: ClusterNode;
  readonly paths: CeremonyPaths;
  readonly #client: VaultClient;

  private constructor(cluster: ClusterClient, node: ClusterNode, client: VaultClient, paths: CeremonyPaths) {
    this.cluster = cluster;
    this.node = node;
    this.#client = client;
    this.paths = paths;
  }

  static async open(cluster: ClusterClient): Promise<CeremonySession> {
    const { node, client } = await cluster.findLeader();
    const paths = await detectCeremonyPaths(client);
    return new CeremonySession(cluster, node, client, paths);
  }

  /** The pinned leader's client, after checking it still leads. */
  async leader(what: string): Promise<VaultClient> {
    let state: string;
    try {
      state = (await this.#client.health()).state;
    } catch (e) {
      throw new CeremonyLostError(
        `${this.node.name}, the leader holding this ${what}, stopped answering (${(e as Error).message}). The attempt lived in its memory and is lost if it restarted.`,
        `Check the cluster with \`vaultops status\`; when it has a leader again, start the ${what} anew.`,
      );
    }
    if (state !== 'active') {
      throw new CeremonyLostError(
        `The leader changed during the ${what}: ${this.node.name} is now ${state}. The attempt lived in ${this.node.name}'s memory and is lost.`,
        `Start the ${what} again; it will run on the new leader. Key holders must submit their shares again.`,
      );
    }
    return this.#client;
  }

  /** The client without the leadership check, for best-effort cleanup (cancel after a failure). */
  get pinnedClient(): VaultClient {
    return this.#client;
  }
}
