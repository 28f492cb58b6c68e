import { pipeline } from 'node:stream/promises';
import { InputError, UnreachableError, VaultopsError } from '../core/errors.js';
import type { ClusterClient } from '../vault/cluster.js';
import { Transform, Writable, type Readable } from 'node:stream';
import { buildManifest, storedFileOf, type Manifest } from './stores/manifest.js';
import {
  createSnapshotVerifier,
  SnapshotCheck,
  SnapshotInvalidError,
  type VerifiedSnapshot,
} from './stores/snapshot-verify.js';
import { pumpSnapshot } from './pump.js';
import type { RawDownload } from '../vault/raw-download.js';
import { createEncryptStage, hashTap, sniffEncryption } from './crypto/encryption.js';
import { wrapWriteError } from './stores/local-dir-store.js';
import { planVerifiedRetention, type RetentionRule, type VerifiedRetentionDecision } from './stores/retention.js';
import type { BackupEntry, BackupStore } from './stores/store.js';

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
 * Takes one snapshot: asks the nodes which is the leader (snapshots are never
 * forwarded), streams it through the verifier into the store's temporary file, and commits it only when
 * every check passed. Any failure removes the temporary file; earlier backups are never touched.
 */
export async function takeBackup(o: TakeBackupOptions): Promise<BackupResult> {
  const log = o.log ?? (() => undefined);
  const now = o.now ?? (() => new Date());
  if (!o.cluster.hasToken) {
    throw new InputError(
      `Cluster ${o.clusterName} has no token; a snapshot needs one with read on sys/storage/raft/snapshot.`,
      {
        hint: 'Set `token:` in the inventory (e.g. env:VAULT_TOKEN) or export VAULT_TOKEN.',
      },
    );
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
  log(
    `Snapshot of ${o.clusterName} from the leader ${leader.node.name} (${leader.node.apiAddr}) into ${o.store.location}/${name}...`,
  );
  let download: RawDownload | undefined;
  try {
    download = await leader.client.downloadSnapshot();
    const check = new SnapshotCheck();
    // The verifier sees the plaintext; what is stored goes through the encryption stage when there is one.
    const stages = encrypt?.streams ?? [];
    const stored = stages.length ? pipeline([...stages, sink.stream]) : undefined;
    stored?.catch(() => undefined);
    const snapshot = await pumpSnapshot(download, check, stages[0] ?? sink.stream, {
      signal: o.signal,
      onBytes: o.onBytes,
    });
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
    log(
      `Verified and stored ${name}: ${snapshot.bytes} bytes, Raft index ${snapshot.meta.index}, term ${snapshot.meta.term}, sha256 ${snapshot.sha256}${manifest.encryption ? `; encrypted at rest (${manifest.encryption.format}) for ${manifest.encryption.recipients.join(', ')}` : ''}.`,
    );
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
  if (err.name === 'AbortError')
    return new VaultopsError(`Backup of ${cluster} interrupted; the partial file was removed.`, { exitCode: 130 });
  if (err.code === 'ETIMEDOUT') {
    return new UnreachableError(
      `The snapshot stream from ${node} stalled (${err.message}); the partial file was removed, earlier backups are untouched.`,
      {
        hint: "The leader is overloaded or the network path drops packets; the bound is the cluster's timeouts.request (or VAULT_CLIENT_TIMEOUT).",
        cause: e,
      },
    );
  }
  if (
    err.code === 'ECONNRESET' ||
    err.code === 'ERR_STREAM_PREMATURE_CLOSE' ||
    /aborted|socket hang up/i.test(err.message ?? '')
  ) {
    return new VaultopsError(
      `The snapshot stream from ${node} broke off (${err.code ?? err.message}); the partial file was removed, earlier backups are untouched.`,
      {
        hint: 'The leader may have restarted or lost leadership; run the backup again.',
        cause: e,
      },
    );
  }
  return wrapWriteError(e, `the snapshot of ${cluster}`);
}

/** 2026-11-25T15:11:00.123Z -> 20261125T151100Z (sortable, no characters a shell or Windows dislikes). */
export function stamp(d: Date): string {
  return d
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/[-:]/g, '');
}

export interface PruneResult {
  decision: VerifiedRetentionDecision<BackupEntry & { finishedAt: Date }>;
  removed: string[];
  dryRun: boolean;
}

export interface PruneOptions {
  rule?: RetentionRule | undefined;
  dryRun: boolean;
  now?: Date;
  /** Only this cluster's backups (by the manifest's cluster name); else each cluster on its own. */
  cluster?: string | undefined;
  /** The backup this run just took and verified: the newest, counted without being read again. */
  justTaken?: string | undefined;
}

/**
 * Applies the store's retention, to each cluster's backups on its own. A backup counts only when
 * it verifies: its stored bytes hash to the sha256 of its sidecar and of its manifest (and the
 * newest kept is checked in full as a snapshot); the newest verified one is never deleted; with
 * `dryRun` nothing is deleted and the decision says what would go. Files that do not verify are
 * never deleted by retention: they are listed in `decision.unverified`.
 */
export async function pruneStore(store: BackupStore, options: PruneOptions): Promise<PruneResult> {
  const rule = options.rule ?? store.retention;
  const now = options.now ?? new Date();
  const listed = await store.list();
  type Candidate = BackupEntry & { manifest: Manifest; finishedAt: Date };
  const groups = new Map<string, Candidate[]>();
  const decision: PruneResult['decision'] = { keep: [], remove: [], unverified: [] };
  for (const e of listed) {
    if (e.manifest === undefined) {
      // Not ours, or a manifest that did not hold up: reported, never a candidate.
      if (options.cluster === undefined || e.name.startsWith(`${options.cluster}-`))
        decision.unverified.push({ entry: { ...e, finishedAt: e.modifiedAt }, why: e.problem ?? 'no manifest' });
      continue;
    }
    if (options.cluster !== undefined && e.manifest.cluster.name !== options.cluster) continue;
    const list = groups.get(e.manifest.cluster.name) ?? [];
    list.push({ ...e, manifest: e.manifest, finishedAt: new Date(e.manifest.finished_at) });
    groups.set(e.manifest.cluster.name, list);
  }
  for (const entries of groups.values()) {
    const d = await planVerifiedRetention(
      entries,
      rule,
      now,
      (e, newest) => verifyStoredBackup(store, e, newest),
      options.justTaken,
    );
    decision.keep.push(...d.keep);
    decision.remove.push(...d.remove);
    decision.unverified.push(...d.unverified);
  }
  const removed: string[] = [];
  if (!options.dryRun) {
    for (const r of decision.remove) {
      await store.remove(r.entry.name);
      removed.push(r.entry.name);
    }
  }
  return { decision, removed, dryRun: options.dryRun };
}

/** The cluster a backup is taken of, as every caller holds it (inventory name, spec, client). */
export interface BackupSource {
  cluster: TakeBackupOptions['cluster'];
  clusterName: string;
  spec: { flavor?: TakeBackupOptions['flavor']; unseal?: { key_set?: string | undefined } | undefined };
}

/** takeBackup for a cluster of the inventory: the one place its options are assembled. */
export function backupOf(
  source: BackupSource,
  store: TakeBackupOptions['store'],
  extra: Pick<TakeBackupOptions, 'log' | 'signal' | 'reason' | 'onBytes'> = {},
): Promise<BackupResult> {
  return takeBackup({
    cluster: source.cluster,
    clusterName: source.clusterName,
    flavor: source.spec.flavor,
    keySet: source.spec.unseal?.key_set,
    store,
    ...extra,
  });
}

/**
 * Why backup `e` of `store` does not hold up, or undefined: its stored bytes are read and hashed
 * (size and sha256 against the manifest, sha256 against the sidecar); with `full`, an unencrypted
 * snapshot also goes through the verifier (gzip, tar, SHA256SUMS, meta.json) and its Raft index is
 * compared with the manifest's. An encrypted one is checked as stored (its header must be the
 * manifest's format): retention has no identity to decrypt it with.
 */
export async function verifyStoredBackup(
  store: BackupStore,
  e: BackupEntry & { manifest: Manifest },
  full: boolean,
): Promise<string | undefined> {
  const stored = storedFileOf(e.manifest);
  let sidecar: string | undefined;
  try {
    sidecar = (await readSmall(await store.open(`${e.name}.sha256`), 4096)).split(/\s+/)[0];
  } catch {
    return 'no readable sidecar (.sha256)';
  }
  const tap = hashTap();
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  let first: Buffer | undefined;
  const head = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      first ??= Buffer.from(chunk.subarray(0, 64));
      cb(null, chunk);
    },
  });
  let verified: VerifiedSnapshot | undefined;
  try {
    const source = await store.open(e.name);
    if (full && !e.manifest.encryption) {
      const v = createSnapshotVerifier();
      await pipeline(source, tap.stream, v.stream, sink);
      verified = v.result();
    } else {
      await pipeline(source, tap.stream, head, sink);
    }
  } catch (err) {
    if (err instanceof SnapshotInvalidError) return `not a valid snapshot: ${err.message}`;
    return `could not be read to check it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
  }
  const got = tap.digest();
  if (got.size !== stored.size) return `size ${got.size} differs from the manifest's ${stored.size}`;
  if (sidecar !== got.sha256) return 'sha256 differs from its sidecar (.sha256)';
  if (stored.sha256 !== got.sha256) return 'sha256 differs from its manifest';
  if (e.manifest.encryption && sniffEncryption(first ?? Buffer.alloc(0))?.format !== e.manifest.encryption.format)
    return `not ${e.manifest.encryption.format}-encrypted as its manifest says`;
  if (verified && verified.meta.index !== e.manifest.raft.index)
    return `Raft index ${verified.meta.index} differs from the manifest's ${e.manifest.raft.index}`;
  return undefined;
}

/** At most `limit` bytes of a stream (a sidecar); more is an error. */
async function readSmall(stream: Readable, limit: number): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  try {
    for await (const c of stream) {
      size += (c as Buffer).length;
      if (size > limit) throw new VaultopsError(`more than ${limit} bytes`);
      parts.push(c as Buffer);
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(parts).toString('utf8');
}
