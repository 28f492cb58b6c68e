import { dirname, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import type { ClusterSpec } from '../inventory/schema.js';
import { LocalDirStore } from '../backup/stores/local-dir-store.js';
import type { RetentionRule } from '../backup/stores/retention.js';
import { parseRetentionDuration } from '../core/duration.js';
import { openStore, type BackupStore } from '../backup/stores/store.js';

export interface StoreOptions {
  store?: string | undefined;
  to?: string | undefined;
  keepLast?: string | undefined;
  keepWithin?: string | undefined;
}

/**
 * `--to DIR` (a local directory, retention from --keep-*), or `--store NAME` from the cluster's
 * `stores:`, or the cluster's only store when it has exactly one.
 */
export function storeFromOptions(
  o: StoreOptions,
  cluster: { name: string; spec: ClusterSpec; inventoryFile: string | undefined } | undefined,
): BackupStore {
  const rule = retentionFromFlags(o);
  if (o.to !== undefined) {
    if (o.store !== undefined) throw new InputError('Pass either --store or --to, not both.');
    return new LocalDirStore(resolve(o.to), rule);
  }
  if (!cluster) throw new InputError('Say where the backups are: --to DIR, or -i INVENTORY with --store NAME.');
  const stores = cluster.spec.stores ?? {};
  const names = Object.keys(stores);
  const name = o.store ?? (names.length === 1 ? names[0] : undefined);
  if (name === undefined) {
    throw new InputError(
      names.length === 0
        ? `Cluster ${cluster.name} has no backup stores in the inventory.`
        : `Cluster ${cluster.name} has ${names.length} stores; say which one.`,
      {
        hint:
          names.length === 0
            ? 'Pass --to DIR, or add `stores: { local: { type: dir, path: /var/backups/vault, keep_last: 24 } }` to the cluster.'
            : `Pass --store with one of: ${names.join(', ')}.`,
      },
    );
  }
  const raw = stores[name];
  if (!raw)
    throw new InputError(`Cluster ${cluster.name} has no store "${name}".`, {
      hint: `Stores: ${names.join(', ') || '(none)'}.`,
    });
  const store = openStore(
    name,
    raw,
    cluster.inventoryFile === undefined ? process.cwd() : dirname(resolve(cluster.inventoryFile)),
  );
  if (rule.keepLast !== undefined || rule.keepWithinMs !== undefined) Object.assign(store.retention, rule);
  return store;
}

function retentionFromFlags(o: StoreOptions): RetentionRule {
  let keepLast: number | undefined;
  if (o.keepLast !== undefined) {
    keepLast = Number(o.keepLast);
    if (!Number.isInteger(keepLast) || keepLast < 1)
      throw new InputError(`--keep-last ${o.keepLast} is not a whole number >= 1.`);
  }
  let keepWithinMs: number | undefined;
  if (o.keepWithin !== undefined) {
    keepWithinMs = parseRetentionDuration(o.keepWithin);
    if (keepWithinMs === undefined)
      throw new InputError(`--keep-within ${o.keepWithin} is not a duration.`, {
        hint: 'Use minutes, hours, days or weeks: 90m, 48h, 7d, 2w.',
      });
  }
  return { keepLast, keepWithinMs };
}
