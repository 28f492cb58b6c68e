import { InputError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import { loadInventory, selectCluster } from '../inventory/load.js';
import type { SecretPrompter } from '../secrets/refs.js';
import { parseDuration } from '../core/duration.js';
import { readVaultEnv } from '../vault/env.js';
import { resolveAuth } from '../vault/auth-settings.js';
import { ClusterClient, type ClusterNode } from '../vault/cluster.js';
import type { VaultClient } from '../vault/client.js';
import type { ClusterSpec } from '../inventory/schema.js';

export interface ConnectedCluster {
  name: string;
  spec: ClusterSpec;
  client: ClusterClient;
  inventoryFile: string;
}

/** A cluster reached through VAULT_ADDR / BAO_ADDR, without an inventory. */
export interface EnvironmentCluster extends Omit<ConnectedCluster, 'inventoryFile'> {
  inventoryFile: undefined;
}

/**
 * Builds the cluster client from an inventory: TLS from the inventory, else VAULT_CACERT & co;
 * the login from the inventory's auth: or token:, else VAULTOPS_AUTH_*, else VAULT_TOKEN / BAO_TOKEN,
 * else ~/.vault-token (resolveAuth). A login (AppRole, certificate, JWT, Kubernetes) happens here, so
 * every command starts with a token; end the client with `release()` so that token is revoked.
 * Without an inventory (single-cluster commands), the cluster is the one at VAULT_ADDR / BAO_ADDR.
 */
export async function connectCluster(
  inventoryFile: string,
  clusterName: string | undefined,
  options?: { needToken?: boolean; prompter?: SecretPrompter },
): Promise<ConnectedCluster>;
export async function connectCluster(
  inventoryFile: string | undefined,
  clusterName: string | undefined,
  options?: { needToken?: boolean; prompter?: SecretPrompter },
): Promise<ConnectedCluster | EnvironmentCluster>;
export async function connectCluster(
  inventoryFile: string | undefined,
  clusterName: string | undefined,
  options: { needToken?: boolean; prompter?: SecretPrompter } = {},
): Promise<ConnectedCluster | EnvironmentCluster> {
  if (inventoryFile === undefined) {
    if (clusterName !== undefined)
      throw new InputError(`--cluster ${clusterName} names a cluster in an inventory, and no inventory was given.`, {
        hint: 'Pass -i INVENTORY too, or drop --cluster to use the cluster at VAULT_ADDR.',
      });
    return connectFromEnvironment();
  }
  const inv = loadInventory(inventoryFile);
  const { name, spec } = selectCluster(inv, clusterName);
  const env = readVaultEnv();
  const auth = await resolveAuth({ auth: spec.auth, token: spec.token, prompter: options.prompter });
  const tls = {
    caCert: spec.tls?.ca_cert ?? env.tls.caCert,
    clientCert: spec.tls?.client_cert ?? env.tls.clientCert,
    clientKey: spec.tls?.client_key ?? env.tls.clientKey,
    serverName: spec.tls?.server_name ?? env.tls.serverName,
    skipVerify: spec.tls?.skip_verify ?? env.tls.skipVerify,
  };
  const timeoutMs =
    (spec.timeouts?.request ? parseDuration(spec.timeouts.request) : undefined) ?? env.timeoutMs ?? 10_000;
  const client = new ClusterClient({
    name,
    nodes: spec.nodes.map((n) => ({ name: n.name, apiAddr: n.api_addr, clusterAddr: n.cluster_addr, zone: n.zone })),
    tls,
    token: auth.token,
    login: auth.login,
    namespace: spec.namespace ?? env.namespace,
    timeoutMs,
    retries: env.maxRetries ?? 1,
  });
  try {
    await client.login();
  } catch (e) {
    client.close();
    throw e;
  }
  return { name, spec, client, inventoryFile };
}

/**
 * The cluster at VAULT_ADDR (or BAO_ADDR), as the official CLIs reach it: VAULT_TOKEN / BAO_TOKEN or
 * ~/.vault-token, VAULT_CACERT and the other TLS variables. Its nodes are the servers of the Raft
 * configuration (sys/storage/raft/configuration), so `status` and `check` see every node and
 * `backup` finds the leader wherever VAULT_ADDR points (a load balancer included).
 */
export async function connectFromEnvironment(): Promise<EnvironmentCluster> {
  const env = readVaultEnv();
  if (env.addr === undefined) {
    throw new InputError('Say which cluster: -i INVENTORY, or VAULT_ADDR (BAO_ADDR) and a token.', {
      hint: 'Pass -i FILE (`vaultops lab up` writes one), or export VAULT_ADDR=https://vault.example.com:8200 and VAULT_TOKEN (or log in with `vault login`, which saves ~/.vault-token).',
    });
  }
  let addr: URL;
  try {
    addr = new URL(env.addr);
  } catch {
    throw new InputError(`VAULT_ADDR ${env.addr} is not a URL.`, {
      hint: 'Set it like the Vault CLI takes it: https://vault.example.com:8200',
    });
  }
  if (addr.protocol !== 'https:' && addr.protocol !== 'http:')
    throw new InputError(`VAULT_ADDR ${env.addr} is not an http(s) URL.`, {
      hint: 'Set it like the Vault CLI takes it: https://vault.example.com:8200',
    });
  const auth = await resolveAuth({});
  if (auth.token === undefined && auth.login === undefined) {
    throw new InputError(
      `No token for ${env.addr}: the nodes of the cluster come from its Raft configuration, which needs one.`,
      {
        hint: 'export VAULT_TOKEN (or BAO_TOKEN), or log in with `vault login` / `bao login` (saves ~/.vault-token), or set VAULTOPS_AUTH_METHOD (docs/unattended-logins.md), or pass -i INVENTORY.',
      },
    );
  }
  redactor.add(auth.token);
  const connection = {
    tls: env.tls,
    token: auth.token,
    namespace: env.namespace,
    timeoutMs: env.timeoutMs ?? 10_000,
    retries: env.maxRetries ?? 1,
  };
  const entry: ClusterNode = { name: addr.hostname, apiAddr: env.addr };
  // The one login of the run happens on the address the operator gave; the client for the cluster's
  // own nodes takes over its token (renewal and revocation go with it).
  const seed = new ClusterClient({ name: addr.hostname, nodes: [entry], ...connection, login: auth.login });
  let nodes: ClusterNode[];
  let name: string;
  let client: ClusterClient;
  try {
    await seed.login();
    const c = seed.client(entry.name);
    nodes = await raftNodes(c, addr);
    const health = await c.health().catch(() => undefined);
    name = health?.body.cluster_name ?? addr.hostname;
    client = seed.handOver(name, nodes);
  } catch (e) {
    await seed.release();
    throw e;
  }
  const spec: ClusterSpec = {
    nodes: nodes.map((n) => ({ name: n.name, api_addr: n.apiAddr, cluster_addr: n.clusterAddr })),
    tls: {
      ca_cert: env.tls.caCert,
      client_cert: env.tls.clientCert,
      client_key: env.tls.clientKey,
      server_name: env.tls.serverName,
      skip_verify: env.tls.skipVerify,
    },
  };
  return { name, spec, client, inventoryFile: undefined };
}

/**
 * The Raft servers with their API addresses. The Raft configuration knows node ids and cluster
 * addresses (host:8201) only; sys/ha-status maps cluster addresses to API addresses for every node
 * that has heartbeated to the leader. A node it does not list (sealed, down) gets the scheme and
 * port of VAULT_ADDR on its Raft host, the usual layout.
 */
async function raftNodes(client: VaultClient, addr: URL): Promise<ClusterNode[]> {
  let servers: { node_id: string; address: string }[];
  try {
    servers = (await client.raftConfiguration()).config.servers;
  } catch (e) {
    throw new InputError(`Cannot read the Raft configuration at ${addr.origin}: ${(e as Error).message}`, {
      hint: 'vaultops needs integrated storage (Raft) and a token that may read sys/storage/raft/configuration; or pass -i INVENTORY listing the nodes.',
    });
  }
  const apiByCluster = new Map<string, string>();
  try {
    const ha = await client.read<{
      nodes?: { cluster_address?: string; api_address?: string }[];
      data?: { nodes?: { cluster_address?: string; api_address?: string }[] };
    }>('sys/ha-status');
    for (const n of ha.nodes ?? ha.data?.nodes ?? []) {
      if (n.cluster_address && n.api_address)
        apiByCluster.set(hostPort(n.cluster_address), n.api_address.replace(/\/+$/, ''));
    }
  } catch {
    // Older servers and narrow policies: fall back to the Raft hosts.
  }
  return servers.map((s) => {
    const host = s.address.replace(/:\d+$/, '');
    const api = apiByCluster.get(hostPort(s.address)) ?? `${addr.protocol}//${host}${addr.port ? `:${addr.port}` : ''}`;
    return { name: s.node_id, apiAddr: api, clusterAddr: `https://${s.address}` };
  });
}

function hostPort(address: string): string {
  return address.replace(/^[a-z]+:\/\//, '').replace(/\/+$/, '');
}
