import type { VaultClient } from '../vault/client.js';

/** The KV v2 mount the cluster-wide lock of vaultops lives in (the inventory's lock.mount default). */
export const LOCK_MOUNT = 'vaultops';

/**
 * A lab is set up as an operator would set up a cluster for vaultops: with the KV v2 mount that
 * keeps the cluster-wide lock, so runs against a lab exercise that lock too.
 */
export async function enableLockMount(client: VaultClient): Promise<void> {
  const mounts = await client.read<{ data?: Record<string, unknown> } & Record<string, unknown>>('sys/mounts');
  if (`${LOCK_MOUNT}/` in (mounts.data ?? mounts)) return;
  await client.write(`sys/mounts/${LOCK_MOUNT}`, { type: 'kv', options: { version: '2' } });
}
