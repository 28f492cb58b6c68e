import { resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { z } from 'zod';
import { InputError } from '../core/errors.js';
import type { Manifest } from './manifest.js';
import { parseRetentionDuration, type RetentionRule } from './retention.js';
import { LocalDirStore } from './local-dir-store.js';

/**
 * Where snapshots live. A store receives a snapshot as a stream into a temporary name and makes it
 * visible only on `commit`, after the caller has verified every byte; `abort` leaves no trace. Stores
 * are named in the inventory (`clusters.<c>.stores.<name>`) or given on the command line (`--to DIR`).
 */
export interface BackupStore {
  readonly kind: string;
  /** Where it is, for messages ("/var/backups/vault", "sftp://host/path"). */
  readonly location: string;
  readonly retention: RetentionRule;
  /** Starts writing snapshot `name` (or a free variant of it); nothing is visible until commit. */
  begin(name: string): Promise<SnapshotSink>;
  /** Snapshots in the store, newest first; entries without a valid manifest are listed as unverified. */
  list(): Promise<BackupEntry[]>;
  open(name: string): Promise<Readable>;
  /** A local path to the snapshot, when the store is local (restore streams from it). */
  localPath(name: string): string | undefined;
  remove(name: string): Promise<void>;
}

export interface SnapshotSink {
  /** The name the snapshot will have (the one asked for, or with -2, -3... if that was taken). */
  name: string;
  stream: Writable;
  /** Flushes to stable storage, writes the sidecar and manifest, then renames into place. */
  commit(manifest: Manifest): Promise<void>;
  /** Removes whatever was written. Safe to call twice or after a failed commit. */
  abort(): Promise<void>;
}

export interface BackupEntry {
  name: string;
  size: number;
  modifiedAt: Date;
  manifest?: Manifest | undefined;
  /** Why the manifest is missing or unusable, when it is. */
  problem?: string | undefined;
}

const retentionFields = {
  keep_last: z.number().int().min(1).optional().describe('Keep the newest N verified backups.'),
  keep_within: z.string().regex(/^\d+(m|h|d|w)$/, 'a duration like 48h, 7d, 2w').optional().describe('Keep every verified backup younger than this.'),
};

export const storeConfigSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('dir'), path: z.string(), ...retentionFields }),
]);

export type StoreConfig = z.infer<typeof storeConfigSchema>;

export function retentionOf(config: { keep_last?: number | undefined; keep_within?: string | undefined }): RetentionRule {
  return { keepLast: config.keep_last, keepWithinMs: config.keep_within === undefined ? undefined : parseRetentionDuration(config.keep_within) };
}

/** Builds a store from an inventory entry; `base` resolves relative paths (the inventory's directory). */
export function openStore(name: string, raw: Record<string, unknown>, base: string): BackupStore {
  const parsed = storeConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new InputError(`Backup store "${name}" in the inventory is not valid: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'type'}: ${i.message}`).join('; ')}.`, {
      hint: 'A local store looks like `{ type: dir, path: /var/backups/vault, keep_last: 24, keep_within: 7d }`.',
    });
  }
  const c = parsed.data;
  return new LocalDirStore(resolve(base, c.path), retentionOf(c));
}

/**
 * The store a step or command names: `to` (a local directory), `store` (one of the cluster's
 * `stores:`), or the cluster's only store.
 */
export function resolveStore(choice: { store?: string | undefined; to?: string | undefined }, clusterName: string, stores: Record<string, Record<string, unknown>> | undefined, base: string): BackupStore {
  if (choice.to !== undefined) {
    if (choice.store !== undefined) throw new InputError('Name either a store or a directory (to), not both.');
    return new LocalDirStore(resolve(base, choice.to));
  }
  const names = Object.keys(stores ?? {});
  const name = choice.store ?? (names.length === 1 ? names[0] : undefined);
  const raw = name === undefined ? undefined : stores?.[name];
  if (name === undefined || !raw) {
    throw new InputError(name === undefined ? `Cluster ${clusterName} has ${names.length === 0 ? 'no backup stores' : `${names.length} stores`}; say which one.` : `Cluster ${clusterName} has no store "${name}".`, {
      hint: names.length ? `Stores: ${names.join(', ')}; or give a directory.` : 'Give a directory, or add `stores: { local: { type: dir, path: /var/backups/vault } }` to the cluster.',
    });
  }
  return openStore(name, raw, base);
}
