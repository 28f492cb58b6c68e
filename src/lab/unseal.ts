import { ClusterClient } from '../vault/cluster.js';
import { isAlive } from './file-lock.js';
import { clusterFor, type LabRecord } from './lab-record.js';
import { currentPid, nodeDied, sleep } from './server-processes.js';

/** Unseals the first node, then the others (which join through retry_join once they have the keys). */
export async function unsealAll(
  lab: LabRecord,
  init: { unseal_keys_b64: string[] },
  progress: (m: string) => void,
  existing?: ClusterClient,
): Promise<void> {
  const cluster = existing ?? clusterFor(lab);
  try {
    for (const n of lab.nodes) {
      // No shares (auto-unseal): wait for the node to unseal itself.
      progress(init.unseal_keys_b64.length ? `Unsealing ${n.name}...` : `Waiting for ${n.name} to unseal itself...`);
      const client = cluster.client(n.name);
      const deadline = Date.now() + 60_000;
      for (;;) {
        // The pid file, not the record: the lab service manager (ssh-hosts.ts) may have restarted the server.
        const pid = currentPid(n);
        if (pid !== undefined && !isAlive(pid)) throw nodeDied(lab, n, 'stopped while being unsealed');
        const status = await client.sealStatus().catch(() => undefined);
        if (status && !status.sealed && status.initialized) break;
        if (status) {
          // Send the shares; a node still waiting to join uses them to answer the leader's challenge.
          try {
            for (const key of init.unseal_keys_b64.slice(0, Math.max(status.t || 3, 1))) {
              const s = await client.unseal(key);
              if (!s.sealed) break;
            }
          } catch {
            /* not ready to take shares yet (join in progress); try again */
          }
          const after = await client.sealStatus().catch(() => undefined);
          if (after && !after.sealed && after.initialized) break;
        }
        if (Date.now() > deadline) throw nodeDied(lab, n, 'did not unseal within 60 s');
        await sleep(500);
      }
    }
  } finally {
    if (!existing) cluster.close();
  }
}
