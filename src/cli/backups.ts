import { ExitCode } from '../core/exit-codes.js';
import { loadInventory, selectCluster } from '../inventory/load.js';
import { SnapshotInvalidError } from '../backup/stores/snapshot-verify.js';
import { checkFile, type CheckedFile } from '../backup/stores/check-file.js';
import { localCopy } from '../backup/stores/store.js';
import { pruneStore } from '../backup/take-backup.js';
import { out, table } from '../ui/output.js';
import { makePrompter } from '../ui/prompter.js';
import { storeFromOptions, type StoreOptions } from './backup-store-option.js';
import { identityFromOptions, type IdentityOptions } from './backup-identity-option.js';
import { IdentityNeededError } from '../backup/crypto/encryption-errors.js';
import { storedFileOf } from '../backup/stores/manifest.js';

interface StoreCommandOptions extends StoreOptions, IdentityOptions {
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
    out.json({
      store: store.location,
      backups: entries.map((e) => ({
        name: e.name,
        size: e.size,
        verified: e.manifest !== undefined,
        encrypted: e.manifest?.encryption?.format ?? (/\.(age|pgp)$/.test(e.name) ? 'unknown' : null),
        problem: e.problem,
        manifest: e.manifest,
      })),
    });
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
    e.manifest
      ? `${e.manifest.reason === 'pre-restore' ? 'verified (pre-restore)' : 'verified'}${e.manifest.encryption ? `, encrypted (${e.manifest.encryption.format})` : ''}`
      : `UNVERIFIED: ${e.problem ?? ''}`,
  ]);
  for (const line of table(rows, ['NAME', 'CLUSTER', 'BYTES', 'AGE', 'RAFT INDEX', 'VERSION', 'STATE'])) out.line(line);
  out.line(`(${store.location})`);
}

/**
 * `vaultops backups verify FILE`: the full check of the file (gzip, tar, SHA256SUMS, sealed sums,
 * meta.json) and, when a manifest sits next to it, that the file is the one the manifest describes.
 * An encrypted file is decrypted while it streams into the checks (--identity, or the store's
 * `decrypt:`); without an identity only the stored bytes are checked against the sidecar and
 * manifest, and the command says so and exits 2 (the identity is the missing input).
 * Exit 0 valid, 1 invalid, 2 contents not checked for want of an identity.
 */
export async function backupsVerifyCommand(file: string, o: StoreCommandOptions): Promise<void> {
  const { verified, manifest, problems, encryption } = await checkInStore(file, o, true);
  const unchecked = encryption !== undefined && !encryption.contents_checked;
  const storedLine = encryption
    ? `stored file ${encryption.stored_size} bytes, sha256 ${encryption.stored_sha256} (${encryption.format}${encryption.armored ? ', armored' : ''})`
    : '';
  if (o.json)
    out.json({
      file,
      valid: problems.length === 0 && !unchecked,
      contents_checked: !unchecked,
      problems,
      snapshot: verified,
      manifest,
      encryption,
    });
  else if (problems.length === 0 && unchecked)
    out.line(
      `Stored file intact: ${file}: ${storedLine}${manifest ? `, matches its sidecar and manifest (cluster ${manifest.cluster.name}, Raft index ${manifest.raft.index})` : ''}.`,
    );
  else if (problems.length === 0)
    out.line(
      `OK ${file}: ${verified!.bytes} bytes, sha256 ${verified!.sha256}, Raft index ${verified!.meta.index}, term ${verified!.meta.term}${manifest ? `, matches its manifest (cluster ${manifest.cluster.name})` : ', no manifest'}${encryption ? `; decrypted while checking, ${storedLine}` : ''}.`,
    );
  if (problems.length) {
    if (o.json) {
      process.exitCode = ExitCode.failed;
      return;
    }
    throw new SnapshotInvalidError(`${file} is not a usable snapshot: ${problems.join('; ')}`);
  }
  if (unchecked) {
    const why = `${file} is encrypted (${encryption.format}); its contents (gzip, tar, SHA256SUMS, meta.json) could not be checked without the identity that decrypts it.`;
    const hint =
      'Pass --identity REF (file:PATH, env:NAME, cmd:COMMAND), or set `decrypt: { identity: REF }` on the store, for the full check.';
    if (o.json) {
      process.exitCode = ExitCode.badInput;
      return;
    }
    throw new IdentityNeededError(why, { hint });
  }
}

/** `vaultops backups inspect FILE`: what a snapshot holds (no cluster needed). */
export async function backupsInspectCommand(file: string, o: StoreCommandOptions): Promise<void> {
  const { verified, manifest, problems, encryption } = await checkInStore(file, o, false);
  if (o.json) {
    out.json({
      file,
      valid: problems.length === 0,
      contents_checked: encryption?.contents_checked ?? true,
      problems,
      snapshot: verified,
      manifest,
      encryption,
    });
  } else {
    out.line(`File:          ${file}`);
    if (verified) {
      out.line(`Size:          ${verified.bytes} bytes`);
      out.line(`SHA256:        ${verified.sha256}`);
      out.line(`Raft index:    ${verified.meta.index} (term ${verified.meta.term})`);
      out.line(`State size:    ${verified.meta.size} bytes (state.bin)`);
      out.line(
        `Raft servers:  ${verified.meta.servers.map((s) => `${s.id}@${s.address}${s.voter ? '' : ' (non-voter)'}`).join(', ') || '-'}`,
      );
      out.line(`Members:       ${verified.members.map((m) => `${m.name} (${m.size})`).join(', ')}`);
    }
    if (manifest) {
      out.line(
        `Cluster:       ${manifest.cluster.name}${manifest.cluster.cluster_name ? ` (cluster_name ${manifest.cluster.cluster_name})` : ''}${manifest.cluster.cluster_id ? `, id ${manifest.cluster.cluster_id}` : ''}`,
      );
      out.line(
        `Server:        ${manifest.cluster.flavor ?? ''} ${manifest.server_version ?? 'unknown version'}`.replace(
          / +/g,
          ' ',
        ),
      );
      out.line(
        `Taken:         ${manifest.finished_at} (${ago(Date.now() - Date.parse(manifest.finished_at))} ago) from ${manifest.leader.node} in ${manifest.duration_ms} ms`,
      );
      out.line(`Key set:       ${manifest.key_set ?? '(not recorded)'}`);
      if (!verified) {
        out.line(`Size:          ${manifest.size} bytes (plaintext snapshot, from the manifest)`);
        out.line(`SHA256:        ${manifest.sha256} (plaintext snapshot, from the manifest)`);
        out.line(`Raft index:    ${manifest.raft.index} (term ${manifest.raft.term}, from the manifest)`);
      }
    } else {
      out.line('Manifest:      none (not taken by vaultops backup: the source cluster and key set are unknown)');
    }
    if (encryption) {
      const stored = manifest?.encryption ? storedFileOf(manifest) : undefined;
      out.line(
        `Encryption:    ${encryption.format}${manifest?.encryption ? ` for ${manifest.encryption.recipients.join(', ')}` : ''}`,
      );
      out.line(
        `Stored file:   ${encryption.stored_size} bytes, sha256 ${encryption.stored_sha256}${stored ? ` (manifest: ${stored.size} bytes)` : ''}`,
      );
    }
    const verdict = problems.length
      ? `INVALID: ${problems.join('; ')}`
      : encryption && !encryption.contents_checked
        ? 'stored file intact; contents not checked (encrypted: `vaultops backups verify FILE --identity REF` decrypts and checks them)'
        : 'valid';
    out.line(`Verdict:       ${verdict}`);
  }
  if (problems.length) process.exitCode = ExitCode.failed;
}

/**
 * `vaultops backups prune [--dry-run]`: applies retention now, to each cluster's backups on its own
 * (`--cluster` limits it to one; with an inventory, to the cluster chosen there).
 */
export async function backupsPruneCommand(o: StoreCommandOptions): Promise<void> {
  const store = storeFor(o);
  const cluster =
    o.to !== undefined || o.inventory === undefined
      ? o.cluster
      : selectCluster(loadInventory(o.inventory), o.cluster).name;
  let res: Awaited<ReturnType<typeof pruneStore>>;
  try {
    res = await pruneStore(store, { dryRun: o.dryRun === true, cluster });
  } finally {
    store.close?.();
  }
  if (o.json) {
    out.json({
      store: store.location,
      dry_run: res.dryRun,
      cluster: cluster ?? null,
      remove: res.decision.remove.map((r) => ({ name: r.entry.name, why: r.why })),
      keep: res.decision.keep.map((k) => ({ name: k.entry.name, why: k.why })),
      unverified: res.decision.unverified.map((u) => ({ name: u.entry.name, why: u.why })),
    });
    return;
  }
  const verb = res.dryRun ? 'would remove' : 'removed';
  for (const r of res.decision.remove) out.line(`${verb} ${r.entry.name} (${r.why})`);
  for (const k of res.decision.keep) out.line(`keep ${k.entry.name} (${k.why})`);
  for (const u of res.decision.unverified)
    out.line(`unverified ${u.entry.name}: not counted as a backup, not deleted (${u.why})`);
  if (res.decision.remove.length === 0) out.line(`Nothing to remove in ${store.location}.`);
}

/**
 * A file path, or with --store/--to a backup name in that store: a remote store's backup is copied
 * (with manifest and sidecar) to a private temp directory and checked there like any file.
 */
async function checkInStore(file: string, o: StoreCommandOptions, decrypt: boolean): Promise<CheckedFile> {
  if (o.store === undefined && o.to === undefined)
    return checkFile(file, { identity: decrypt ? identityFromOptions(o, undefined, makePrompter({})) : undefined });
  const store = storeFor(o);
  try {
    const copy = await localCopy(store, file);
    try {
      return await checkFile(copy.path, {
        identity: decrypt ? identityFromOptions(o, store, makePrompter({})) : undefined,
      });
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
