import { dirname, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { loadInventory } from '../inventory/load.js';
import { resolveSecretList, resolveSecretString } from '../secrets/refs.js';
import { restoreSnapshot, type KeySetSecrets } from '../backup/restore-snapshot.js';
import { LocalDirStore } from '../backup/stores/local-dir-store.js';
import { encryptionSpecFromFlags } from '../backup/crypto/encryption.js';
import { localCopy, type BackupStore } from '../backup/stores/store.js';
import { makePrompter } from '../ui/prompter.js';
import { out, progressPrinter } from '../ui/output.js';
import { createProgress, type Progress } from '../ui/progress.js';
import { connectCluster } from './cluster-from-inventory.js';
import { storeFromOptions, type StoreOptions } from './backup-store-option.js';
import { identityFromOptions, type IdentityOptions } from './backup-identity-option.js';
import { throughDoor } from './through-door.js';

interface RestoreCliOptions extends StoreOptions, IdentityOptions {
  inventory: string;
  cluster?: string;
  from?: string;
  latest?: boolean;
  confirm?: string;
  forceOtherCluster?: boolean;
  nonInteractive?: boolean;
  json?: boolean;
  quiet?: boolean;
  timeout?: string;
  breakLock?: boolean;
  /** --encrypt-to: recipients for the safety snapshot of an encrypted backup (the manifest's are never reused). */
  encryptTo?: string[];
}

/**
 * `vaultops restore`: every answer can come from flags (`--from|--latest`, `--confirm <cluster>`),
 * so a DR drill runs unattended. Exit 0 restored and healthy; 1 failed (invalid snapshot, cluster not
 * back); 2 bad input / confirmation missing; 3 unreachable; 4 refused (another cluster's snapshot
 * without --force-other-cluster): in the refused and invalid cases the cluster is untouched.
 */
export async function restoreCommand(o: RestoreCliOptions): Promise<void> {
  if ((o.from === undefined) === (o.latest !== true))
    throw new InputError('Say which snapshot: --from FILE or --latest (the newest verified one in the store).');
  const conn = await connectCluster(o.inventory, o.cluster);
  const printer = progressPrinter({ quiet: o.quiet === true });
  // A log line first clears the live progress line (a terminal), which the next bytes draw again.
  let transfer: Progress | undefined;
  const log = (m: string) => {
    transfer?.clear();
    printer(m);
  };
  const startTransfer = (label: string, total: number | undefined) =>
    (transfer = createProgress({ label, total, quiet: o.quiet === true }));
  let store: BackupStore | undefined;
  let cleanup = async (): Promise<void> => undefined;
  try {
    let file: string;
    if (o.latest) {
      store = storeFromOptions(o, conn);
      const newest = (await store.list()).find(
        (e) => e.manifest !== undefined && e.manifest.cluster.name === conn.name && e.manifest.reason === 'backup',
      );
      if (!newest)
        throw new InputError(`No verified backup of ${conn.name} in ${store.location}.`, {
          hint: 'Pass --from FILE, or take one with `vaultops backup`.',
        });
      // A remote store's snapshot is copied here first, then verified like any file before anything is touched.
      if (store.localPath(newest.name) === undefined) log(`Fetching ${newest.name} from ${store.location}...`);
      const copy = await localCopy(store, newest.name);
      cleanup = copy.cleanup;
      file = copy.path;
    } else {
      file = resolve(o.from!);
      store = o.to !== undefined || o.store !== undefined ? storeFromOptions(o, conn) : undefined;
    }
    const prompter = makePrompter({ nonInteractive: o.nonInteractive, confirm: o.confirm });
    // An encrypted file opens with --identity, else with the `decrypt:` of the store in use (or of the cluster's only store).
    const identity = identityFromOptions(o, store ?? onlyStoreOf(conn), prompter);
    // The safety snapshot goes to the store, else next to the file being restored.
    const safetyStore = store ?? new LocalDirStore(dirname(file));
    const timeoutMs = o.timeout === undefined ? undefined : Number(o.timeout) * 1000;
    if (timeoutMs !== undefined && !(timeoutMs > 0))
      throw new InputError(`--timeout ${o.timeout} is not a number of seconds.`);
    // The typed confirmation is asked inside the use case, once it can say what will be lost.
    const result = await throughDoor(
      conn,
      { operation: 'restore', breakLock: o.breakLock, onInterrupt: 'stopping the restore at the next safe point' },
      (door) =>
        restoreSnapshot({
          cluster: conn.client,
          clusterName: conn.name,
          flavor: conn.spec.flavor,
          keySet: conn.spec.unseal?.key_set,
          file,
          forceOtherCluster: o.forceOtherCluster === true,
          prompter,
          identity,
          safetyStore,
          keysFor: (label) => keySetFromInventory(conn.inventoryFile, conn.name, label),
          log,
          startTransfer,
          timeoutMs,
          canaries: conn.spec.canaries,
          signal: door.signal,
          safetyEncryption: o.encryptTo?.length ? encryptionSpecFromFlags(o.encryptTo) : undefined,
        }),
    );
    if (o.json) {
      out.json({
        result: 'restored',
        cluster: conn.name,
        file: result.file,
        snapshot_index: result.snapshotIndex,
        index_before: result.indexBefore,
        forced: result.forced,
        unsealed_with: result.unsealedWith,
        safety_snapshot: `${result.safetyBackup.location}/${result.safetyBackup.name}`,
        status: result.status,
        canaries: result.canaries,
      });
    } else {
      out.line(
        `Restored ${result.file} into ${conn.name} (Raft index ${result.snapshotIndex}); safety snapshot ${result.safetyBackup.location}/${result.safetyBackup.name}.`,
      );
    }
  } finally {
    await cleanup().catch(() => undefined);
    store?.close?.();
    await conn.client.release();
  }
}

/**
 * The cluster's only store, when it has exactly one (for its `decrypt:`); never connects. A store
 * entry that does not parse is not this command's business when a file was named: no store then.
 */
function onlyStoreOf(conn: Parameters<typeof storeFromOptions>[1] & object): BackupStore | undefined {
  if (Object.keys(conn.spec.stores ?? {}).length !== 1) return undefined;
  try {
    return storeFromOptions({}, conn);
  } catch {
    return undefined;
  }
}

/**
 * The keys of key set `label`: the cluster in the inventory whose `unseal.key_set` has that label
 * (the source cluster of a DR rebuild may be listed only for its keys). Undefined = this cluster's.
 */
export async function keySetFromInventory(
  inventoryFile: string,
  clusterName: string,
  label: string | undefined,
): Promise<KeySetSecrets> {
  const inv = loadInventory(inventoryFile);
  const entries = Object.entries(inv.data.clusters);
  const match =
    label === undefined
      ? entries.find(([n]) => n === clusterName)
      : entries.find(([, c]) => c.unseal?.key_set === label);
  if (!match) {
    throw new InputError(
      `The restored data needs the unseal keys of key set "${label}", and no cluster in ${inventoryFile} has unseal.key_set: ${label}.`,
      {
        hint: 'Add the source cluster (or just its unseal: {key_set, keys} and token) to the inventory, then unseal with `vaultops run playbooks/unseal.yml`.',
      },
    );
  }
  const [name, spec] = match;
  if (!spec.unseal?.keys)
    throw new InputError(
      `Cluster ${name} in ${inventoryFile} names key set ${spec.unseal?.key_set ?? '(none)'} but no unseal.keys reference.`,
      { hint: 'Add unseal.keys: env:NAME or file:PATH#field.' },
    );
  const keys = await resolveSecretList(spec.unseal.keys);
  // The token for the restored data is one the operator gives (a login would log in to the data
  // being replaced): token:, or auth: {method: token}.
  const tokenRef = spec.token ?? (spec.auth?.method === 'token' ? spec.auth.token : undefined);
  const token = tokenRef ? await resolveSecretString(tokenRef) : undefined;
  return { label: spec.unseal.key_set ?? name, keys, token };
}
