import { ExitCode } from '../core/exit-codes.js';
import { loadInventory, selectCluster } from '../inventory/load.js';
import { SnapshotInvalidError } from '../backup/snapshot-verify.js';
import { checkFile, type CheckedFile } from '../backup/check-file.js';
import { localCopy } from '../backup/store.js';
import { pruneStore } from '../backup/take-backup.js';
import { out, table } from '../ui/output.js';
import { storeFromOptions, type StoreOptions } from './backup-store-option.js';

interface StoreCommandOptions extends StoreOptions {
  inventory?: string;
  cluster?: string;
  json?: boolean;
  dryRun?: boolean;
}

function storeFor(o: StoreCommandOptions) {
  if (o.to !== undefined || o.inventory === undefined) return storeFromOptions(o, undefined);
  const inv = loadInventory(o.inventory);
  const { name, spec } = selectCluster(inv, o.cluster);
  return storeFromOptions(o, { name, spec, inventoryFile: inv.file });
}

/** `vaultops backups list`: the store's snapshots, newest first, with what their manifests say. */
export async function backupsListCommand(o: StoreCommandOptions): Promise<void> {
  const store = storeFor(o);
  let entries: Awaited<ReturnType<typeof store.list>>;
  try {
    entries = await store.list();
  } finally {
    store.close?.();
  }
  if (o.json) {
    out.json({ store: store.location, backups: entries.map((e) => ({ name: e.name, size: e.size, verified: e.manifest !== undefined, problem: e.problem, manifest: e.manifest })) });
    return;
  }
  if (entries.length === 0) {
    out.line(`No backups in ${store.location}.`);
    return;
  }
  const now = Date.now();
  const rows = entries.map((e) => [
    e.name,
    e.manifest?.cluster.name ?? '-',
    String(e.size),
    e.manifest ? ago(now - Date.parse(e.manifest.finished_at)) : ago(now - e.modifiedAt.getTime()),
    e.manifest ? String(e.manifest.raft.index) : '-',
    e.manifest?.server_version ?? '-',
    e.manifest ? (e.manifest.reason === 'pre-restore' ? 'verified (pre-restore)' : 'verified') : `UNVERIFIED: ${e.problem ?? ''}`,
  ]);
  for (const line of table(rows, ['NAME', 'CLUSTER', 'BYTES', 'AGE', 'RAFT INDEX', 'VERSION', 'STATE'])) out.line(line);
  out.line(`(${store.location})`);
}

/**
 * `vaultops backups verify FILE`: the full check of the file (gzip, tar, SHA256SUMS, sealed sums,
 * meta.json) and, when a manifest sits next to it, that the file is the one the manifest describes.
 * Exit 0 valid, 1 invalid.
 */
export async function backupsVerifyCommand(file: string, o: StoreCommandOptions): Promise<void> {
  const { verified, manifest, problems } = await checkInStore(file, o);
  if (o.json) out.json({ file, valid: problems.length === 0, problems, snapshot: verified, manifest });
  else if (problems.length === 0) out.line(`OK ${file}: ${verified!.bytes} bytes, sha256 ${verified!.sha256}, Raft index ${verified!.meta.index}, term ${verified!.meta.term}${manifest ? `, matches its manifest (cluster ${manifest.cluster.name})` : ', no manifest'}.`);
  if (problems.length) {
    if (o.json) {
      process.exitCode = ExitCode.failed;
      return;
    }
    throw new SnapshotInvalidError(`${file} is not a usable snapshot: ${problems.join('; ')}`);
  }
}

/** `vaultops backups inspect FILE`: what a snapshot holds (no cluster needed). */
export async function backupsInspectCommand(file: string, o: StoreCommandOptions): Promise<void> {
  const { verified, manifest, problems } = await checkInStore(file, o);
  if (o.json) {
    out.json({ file, valid: problems.length === 0, problems, snapshot: verified, manifest });
  } else {
    out.line(`File:          ${file}`);
    if (verified) {
      out.line(`Size:          ${verified.bytes} bytes`);
      out.line(`SHA256:        ${verified.sha256}`);
      out.line(`Raft index:    ${verified.meta.index} (term ${verified.meta.term})`);
      out.line(`State size:    ${verified.meta.size} bytes (state.bin)`);
      out.line(`Raft servers:  ${verified.meta.servers.map((s) => `${s.id}@${s.address}${s.voter ? '' : ' (non-voter)'}`).join(', ') || '-'}`);
      out.line(`Members:       ${verified.members.map((m) => `${m.name} (${m.size})`).join(', ')}`);
    }
    if (manifest) {
      out.line(`Cluster:       ${manifest.cluster.name}${manifest.cluster.cluster_name ? ` (cluster_name ${manifest.cluster.cluster_name})` : ''}${manifest.cluster.cluster_id ? `, id ${manifest.cluster.cluster_id}` : ''}`);
      out.line(`Server:        ${manifest.cluster.flavor ?? ''} ${manifest.server_version ?? 'unknown version'}`.replace(/ +/g, ' '));
      out.line(`Taken:         ${manifest.finished_at} (${ago(Date.now() - Date.parse(manifest.finished_at))} ago) from ${manifest.leader.node} in ${manifest.duration_ms} ms`);
      out.line(`Key set:       ${manifest.key_set ?? '(not recorded)'}`);
    } else {
      out.line('Manifest:      none (not taken by vaultops backup: the source cluster and key set are unknown)');
    }
    out.line(`Verdict:       ${problems.length ? `INVALID: ${problems.join('; ')}` : 'valid'}`);
  }
  if (problems.length) process.exitCode = ExitCode.failed;
}

/** `vaultops backups prune [--dry-run]`: applies retention now. */
export async function backupsPruneCommand(o: StoreCommandOptions): Promise<void> {
  const store = storeFor(o);
  let res: Awaited<ReturnType<typeof pruneStore>>;
  try {
    res = await pruneStore(store, { dryRun: o.dryRun === true });
  } finally {
    store.close?.();
  }
  if (o.json) {
    out.json({ store: store.location, dry_run: res.dryRun, remove: res.decision.remove.map((r) => ({ name: r.entry.name, why: r.why })), keep: res.decision.keep.map((k) => ({ name: k.entry.name, why: k.why })) });
    return;
  }
  const verb = res.dryRun ? 'would remove' : 'removed';
  for (const r of res.decision.remove) out.line(`${verb} ${r.entry.name} (${r.why})`);
  for (const k of res.decision.keep) out.line(`keep ${k.entry.name} (${k.why})`);
  if (res.decision.remove.length === 0) out.line(`Nothing to remove in ${store.location}.`);
}

/**
 * A file path, or with --store/--to a backup name in that store: a remote store's backup is copied
 * (with manifest and sidecar) to a private temp directory and checked there like any file.
 */
async function checkInStore(file: string, o: StoreCommandOptions): Promise<CheckedFile> {
  if (o.store === undefined && o.to === undefined) return checkFile(file);
  const store = storeFor(o);
  try {
    const copy = await localCopy(store, file);
    try {
      return await checkFile(copy.path);
    } finally {
      await copy.cleanup();
    }
  } finally {
    store.close?.();
  }
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}
