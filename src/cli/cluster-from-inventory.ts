import { loadInventory, selectCluster } from '../inventory/load.js';
import { resolveSecretString, type SecretPrompter } from '../secrets/refs.js';
import { parseDuration } from '../core/duration.js';
import { readVaultEnv } from '../vault/env.js';
import { ClusterClient } from '../vault/cluster.js';
import type { ClusterSpec } from '../inventory/schema.js';

export interface ConnectedCluster {
  name: string;
  spec: ClusterSpec;
  client: ClusterClient;
  inventoryFile: string;
}

/**
 * Builds the cluster client from an inventory: TLS from the inventory, else VAULT_CACERT & co;
 * the token from the inventory's reference, else VAULT_TOKEN / BAO_TOKEN.
 */
export async function connectCluster(inventoryFile: string, clusterName: string | undefined, options: { needToken?: boolean; prompter?: SecretPrompter } = {}): Promise<ConnectedCluster> {
  const inv = loadInventory(inventoryFile);
  const { name, spec } = selectCluster(inv, clusterName);
  const env = readVaultEnv();
  let token: string | undefined;
  if (spec.token) token = await resolveSecretString(spec.token, options.prompter);
  else token = env.token;
  const tls = {
    caCert: spec.tls?.ca_cert ?? env.tls.caCert,
    clientCert: spec.tls?.client_cert ?? env.tls.clientCert,
    clientKey: spec.tls?.client_key ?? env.tls.clientKey,
    serverName: spec.tls?.server_name ?? env.tls.serverName,
    skipVerify: spec.tls?.skip_verify ?? env.tls.skipVerify,
  };
  const timeoutMs = (spec.timeouts?.request ? parseDuration(spec.timeouts.request) : undefined) ?? env.timeoutMs ?? 10_000;
  const client = new ClusterClient({
    name,
    nodes: spec.nodes.map((n) => ({ name: n.name, apiAddr: n.api_addr, clusterAddr: n.cluster_addr, zone: n.zone })),
    tls,
    token,
    namespace: spec.namespace ?? env.namespace,
    timeoutMs,
    retries: env.maxRetries ?? 1,
  });
  return { name, spec, client, inventoryFile };
}
