import { VaultopsError } from '../core/errors.js';
import type { ClusterClient } from '../vault/cluster.js';
import { keyStatus, rotateKeyring, type KeyStatus } from '../vault/ceremonies.js';

export interface RotateResult {
  node: string;
  before: KeyStatus;
  after: KeyStatus;
}

/**
 * Installs a new barrier (keyring) encryption key: new writes use it, old data stays readable.
 * Not the same as rekey (which replaces the root key and its shares). Needs sudo on sys/rotate.
 * Sent to the leader so key-status before and after come from the node that rotated.
 */
export async function rotateEncryptionKey(cluster: ClusterClient): Promise<RotateResult> {
  const { node, client } = await cluster.findLeader();
  const before = await keyStatus(client);
  await rotateKeyring(client);
  const after = await keyStatus(client);
  if (!(after.term > before.term))
    throw new VaultopsError(
      `The key term did not advance after rotation (before ${before.term}, after ${after.term}).`,
    );
  return { node: node.name, before, after };
}
