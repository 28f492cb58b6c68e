import { pipeline } from 'node:stream/promises';
import { InputError, VaultopsError } from '../core/errors.js';
import type { ClusterClient } from '../vault/cluster.js';
import { buildManifest, type Manifest } from './manifest.js';
import { SnapshotCheck } from './snapshot-verify.js';
import { pumpSnapshot } from './pump.js';
import type { RawDownload } from '../vault/raw-download.js';
import { createEncryptStage } from './encryption.js';
import { wrapWriteError } from './local-dir-store.js';
import { planRetention, type RetentionDecision, type RetentionRule } from './retention.js';
import type { BackupEntry, BackupStore } from './store.js';

export interface TakeBackupOptions {
  cluster: ClusterClient;
  /** The cluster's name in the inventory (file names, manifest). */
  clusterName: string;
  flavor?: string | undefined;
  /** Inventory `unseal.key_set`: recorded so a restore knows which keys open this snapshot. */
  keySet?: string | undefined;
  store: BackupStore;
  reason?: 'backup' | 'pre-restore' | undefined;
  signal?: AbortSignal | undefined;
  log?: ((message: string) => void) | undefined;
  /** Told the size of every piece of the snapshot as it streams in (progress). */
  onBytes?: ((n: number) => void) | undefined;
  now?: () => Date;
}

export interface BackupResult {
  name: string;
  location: string;
  manifest: Manifest;
}

/**
 * Takes one snapshot: asks the nodes which is the leader (snapshots are never forwarded, reference
 * §3.1), streams it through the verifier into the store's temporary file, and commits it only when
 * every check passed. Any failure removes the temporary file; earlier backups are never touched.
 */
export async function takeBackup(o: TakeBackupOptions): Promise<BackupResult> {
  const log = o.log ?? (() => undefined);
  const now = o.now ?? (() => new Date());
  if (!o.cluster.hasToken) {
    throw new InputError(`Cluster ${o.clusterName} has no token; a snapshot needs one with read on sys/storage/raft/snapshot.`, {
      hint: 'Set `token:` in the inventory (e.g. env:VAULT_TOKEN) or export VAULT_TOKEN.',
    });
  }
  const probes = await o.cluster.probeAll();
  const leader = await o.cluster.findLeader(probes);
  const health = probes.find((p) => p.node.name === leader.node.name)?.health?.body;
  const started = now();
  // Encryption at rest sits after the verifier, which must see the plaintext; recipients are read before any file is created.
  const encrypt = o.store.encryption ? await createEncryptStage(o.store.encryption) : undefined;
  const wanted = `${o.clusterName}-${stamp(started)}${o.reason === 'pre-restore' ? '-pre-restore' : ''}.snap${encrypt?.suffix ?? ''}`;
  const sink = await o.store.begin(wanted);
  const name = sink.name;
  log(`Snapshot of ${o.clusterName} from the leader ${leader.node.name} (${leader.node.apiAddr}) into ${o.store.location}/${name}...`);
  let download: RawDownload | undefined;
  try {
    download = await leader.client.downloadSnapshot();
    const check = new SnapshotCheck();
    // The verifier sees the plaintext; what is stored goes through the encryption stage when there is one.
    const stages = encrypt?.streams ?? [];
    const stored = stages.length ? pipeline([...stages, sink.stream]) : undefined;
    stored?.catch(() => undefined);
    const snapshot = await pumpSnapshot(download, check, stages[0] ?? sink.stream, { signal: o.signal, onBytes: o.onBytes });
    await stored;
    const finished = now();
    const manifest = buildManifest({
      file: name,
      reason: o.reason,
      clusterName: o.clusterName,
      serverClusterName: health?.cluster_name,
      clusterId: health?.cluster_id,
      flavor: o.flavor,
      serverVersion: health?.version,
      leader: { node: leader.node.name, apiAddr: leader.node.apiAddr },
      snapshot,
      startedAt: started,
      finishedAt: finished,
      keySet: o.keySet,
      encryption: encrypt?.result(),
    });
    await sink.commit(manifest);
    log(`Verified and stored ${name}: ${snapshot.bytes} bytes, Raft index ${snapshot.meta.index}, term ${snapshot.meta.term}, sha256 ${snapshot.sha256}${manifest.encryption ? `; encrypted at rest (${manifest.encryption.format}) for ${manifest.encryption.recipients.join(', ')}` : ''}.`);
    return { name, location: o.store.location, manifest };
  } catch (e) {
    download?.destroy();
    await sink.abort().catch(() => undefined);
    throw describeBackupError(e, o.clusterName, leader.node.name);
  }
}

function describeBackupError(e: unknown, cluster: string, node: string): Error {
  if (e instanceof VaultopsError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err.name === 'AbortError') return new VaultopsError(`Backup of ${cluster} interrupted; the partial file was removed.`, { exitCode: 130 });
  if (err.code === 'ECONNRESET' || err.code === 'ERR_STREAM_PREMATURE_CLOSE' || /aborted|socket hang up/i.test(err.message ?? '')) {
    return new VaultopsError(`The snapshot stream from ${node} broke off (${err.code ?? err.message}); the partial file was removed, earlier backups are untouched.`, {
      hint: 'The leader may have restarted or lost leadership; run the backup again.',
      cause: e,
    });
  }
  return wrapWriteError(e, `the snapshot of ${cluster}`);
}

/** 2026-11-25T15:11:00.123Z -> 20261125T151100Z (sortable, no characters a shell or Windows dislikes). */
export function stamp(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z').replace(/[-:]/g, '');
}

export interface PruneResult {
  decision: RetentionDecision<BackupEntry & { finishedAt: Date }>;
  removed: string[];
  dryRun: boolean;
}

/**
 * Applies the store's retention. Only verified backups (with a manifest) count; the newest is never
 * deleted; with `dryRun` nothing is deleted and the decision says what would go.
 */
export async function pruneStore(store: BackupStore, options: { rule?: RetentionRule | undefined; dryRun: boolean; now?: Date; cluster?: string | undefined }): Promise<PruneResult> {
  const rule = options.rule ?? store.retention;
  const entries = (await store.list())
    .filter((e): e is BackupEntry & { manifest: Manifest } => e.manifest !== undefined)
    .filter((e) => options.cluster === undefined || e.manifest.cluster.name === options.cluster)
    .map((e) => ({ ...e, finishedAt: new Date(e.manifest.finished_at) }));
  const decision = planRetention(entries, rule, options.now ?? new Date());
  const removed: string[] = [];
  if (!options.dryRun) {
    for (const r of decision.remove) {
      await store.remove(r.entry.name);
      removed.push(r.entry.name);
    }
  }
  return { decision, removed, dryRun: options.dryRun };
}
