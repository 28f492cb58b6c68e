import { randomBytes } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { pipeline, Transform, type Readable } from 'node:stream';
import { GateError, VaultApiError, VaultopsError } from '../core/errors.js';
import type { Prompter } from '../actions/types.js';
import type { ClusterClient, ClusterStatus } from '../vault/cluster.js';
import { isServing } from '../vault/health.js';
import { checkFile } from './check-file.js';
import { openDecrypted, type IdentityLoader } from './encryption.js';
import { IdentityNeededError } from './encryption-errors.js';
import type { Manifest } from './manifest.js';
import { SnapshotInvalidError } from './snapshot-verify.js';
import type { BackupStore } from './store.js';
import { takeBackup, type BackupResult } from './take-backup.js';
import { CanaryMismatchError, readCanaryHash, type CanaryResult, type CanarySpec } from '../drill/canaries.js';

/** The unseal keys (and a token valid in that data) of one key set, resolved by the caller. */
export interface KeySetSecrets {
  label: string;
  keys: string[];
  token?: string | undefined;
}

export interface RestoreOptions {
  cluster: ClusterClient;
  clusterName: string;
  flavor?: string | undefined;
  /** The cluster's own key set label (inventory `unseal.key_set`). */
  keySet?: string | undefined;
  file: string;
  /** Allow a snapshot taken on another cluster (snapshot-force); its data and seal replace this cluster's. */
  forceOtherCluster: boolean;
  prompter: Prompter;
  /** The typed confirmation was already given (a playbook step's `confirm:` asked it before the run). */
  confirmed?: boolean | undefined;
  /** Where the safety snapshot of the current state goes before anything is replaced. */
  safetyStore: BackupStore;
  /** Resolves the unseal keys of a key set (undefined = this cluster's own), only if nodes come up sealed. */
  keysFor(label: string | undefined): Promise<KeySetSecrets>;
  log?: ((message: string) => void) | undefined;
  signal?: AbortSignal | undefined;
  /** How long the cluster may take to come back after the 204. */
  timeoutMs?: number | undefined;
  /**
   * The inventory's canaries, read back once the cluster is healthy and compared by sha256 (the
   * value is never printed): a mismatch fails the restore naming the path. Without expect_sha256 a
   * canary only has to be readable.
   */
  canaries?: readonly CanarySpec[] | undefined;
  /** Opens an encrypted backup (asked only when the file is encrypted). */
  identity?: IdentityLoader | undefined;
  /** Byte progress of the two long transfers (safety snapshot, upload); the CLI draws it. */
  startTransfer?: ((label: string, total: number | undefined) => TransferProgress) | undefined;
}

/** One transfer's progress, as restore reports it: sizes of the pieces as they pass, then the end. */
export interface TransferProgress {
  add(bytes: number): void;
  done(): void;
}

export interface RestoreResult {
  file: string;
  manifest?: Manifest | undefined;
  snapshotIndex: number;
  indexBefore?: number | undefined;
  safetyBackup: BackupResult;
  forced: boolean;
  unsealedWith?: string | undefined;
  status: ClusterStatus;
  canaries: CanaryResult[];
}

const OTHER_SEAL = /could not verify hash file|different set of unseal keys|different autoseal key/i;
const MARKER_PATH = 'cubbyhole/vaultops-restore-marker';

/**
 * Restores a snapshot into a cluster, in the order that loses nothing by accident: verify the file,
 * refuse another cluster's snapshot without the flag, show what will be lost, typed confirmation,
 * safety snapshot, restore on the leader, wait until the restore really happened (the 204 comes
 * before it, reference §3.2), unseal with the snapshot's key set if the nodes sealed, and check the
 * cluster: every node unsealed, voters, autopilot healthy, canaries readable.
 */
export async function restoreSnapshot(o: RestoreOptions): Promise<RestoreResult> {
  const log = o.log ?? (() => undefined);
  const timeoutMs = o.timeoutMs ?? 180_000;

  log(`Verifying ${o.file}...`);
  const checked = await checkFile(o.file, { identity: o.identity });
  if (checked.encryption && !checked.encryption.contents_checked) {
    throw new IdentityNeededError(`${o.file} is encrypted (${checked.encryption.format}) and no identity was given to open it, so it can be neither verified nor restored. The cluster was not touched.`, {
      hint: 'Pass --identity REF (env:NAME, file:PATH, cmd:COMMAND; never the key itself), or set `decrypt: { identity: REF }` on the store.',
    });
  }
  if (checked.problems.length || !checked.verified) {
    throw new SnapshotInvalidError(`Refusing to restore ${o.file}: ${checked.problems.join('; ')}. The cluster was not touched.`);
  }
  const { verified, manifest } = checked;

  const probes = await o.cluster.probeAll();
  const leader = await o.cluster.findLeader(probes);
  const health = probes.find((p) => p.node.name === leader.node.name)?.health?.body;
  const sourceId = manifest?.cluster.cluster_id;
  const isOther = sourceId !== undefined && health?.cluster_id !== undefined && sourceId !== health.cluster_id;
  if (isOther && !o.forceOtherCluster) {
    throw new GateError(
      `${o.file} was taken on cluster ${manifest!.cluster.name} (id ${sourceId}), not on ${o.clusterName} (id ${health!.cluster_id}). Restoring it replaces all of ${o.clusterName}'s data, tokens and seal configuration with ${manifest!.cluster.name}'s; the nodes then seal and only ${manifest!.cluster.name}'s unseal keys (key set ${manifest!.key_set ?? 'unknown'}) open them. The cluster was not touched.`,
      { hint: 'If that is what you want (a DR rebuild), pass --force-other-cluster and make sure the inventory holds that key set.' },
    );
  }

  const leaderStatus = await leader.client.leader().catch(() => undefined);
  const indexBefore = leaderStatus?.raft_committed_index;
  const lossLine = indexBefore !== undefined
    ? `${o.clusterName} is at Raft index ${indexBefore}; the snapshot is at index ${verified.meta.index}${manifest ? ` (taken ${manifest.finished_at} on ${manifest.cluster.name})` : ''}. Everything written to ${o.clusterName} since then is lost: secrets, tokens, leases, policies.`
    : `The snapshot is at Raft index ${verified.meta.index}; everything written since it was taken is lost.`;
  log(lossLine);
  if (!o.confirmed) await o.prompter.confirm({ message: `Restore ${o.file} into cluster ${o.clusterName}, replacing all of its data. ${lossLine}`, expected: o.clusterName, source: `--confirm ${o.clusterName}` });

  // An encrypted backup's safety snapshot should not lie around in clear: without an `encrypt:` on
  // the safety store, an age backup's recipients (public, in its manifest) are used again.
  if (checked.encryption && !o.safetyStore.encryption) {
    if (manifest?.encryption?.format === 'age') o.safetyStore.encryption = { format: 'age', recipients: manifest.encryption.recipients };
    else log(`warning: the safety snapshot goes to ${o.safetyStore.location} unencrypted (the backup's OpenPGP recipients are known only by fingerprint); give that store an encrypt: entry to encrypt it.`);
  }
  log('Taking a safety snapshot of the current state first...');
  const safetyProgress = o.startTransfer?.(`safety snapshot of ${o.clusterName}`, undefined);
  const safetyBackup = await takeBackup({ cluster: o.cluster, clusterName: o.clusterName, flavor: o.flavor, keySet: o.keySet, store: o.safetyStore, reason: 'pre-restore', log, signal: o.signal, onBytes: safetyProgress?.add }).finally(() => safetyProgress?.done());

  // A value written after the safety snapshot: once it is gone the restored data is in place. The
  // 204 of the upload comes before the restore happens, and the Raft index alone cannot tell.
  const marker = randomBytes(12).toString('hex');
  const hasMarker = await leader.client.write(MARKER_PATH, { id: marker }).then(() => true, () => false);

  const force = o.forceOtherCluster && (isOther || manifest === undefined);
  log(`Uploading the snapshot to the leader ${leader.node.name}${force ? ' (snapshot-force: another cluster\'s snapshot)' : ''}...`);
  try {
    // An encrypted file is decrypted a second time while it uploads (it was decrypted and verified
    // in full above); the plaintext only ever exists in memory, one chunk at a time.
    const body = checked.encryption && o.identity ? openDecrypted(o.file, checked.encryption, await o.identity()) : createReadStream(o.file);
    // The plaintext's size is the file's unless it is encrypted (then only the bytes are shown).
    const upload = o.startTransfer?.(`upload to ${leader.node.name}`, checked.encryption ? undefined : statSync(o.file).size);
    try {
      await leader.client.uploadSnapshot(upload ? counted(body, upload) : body, { force });
    } finally {
      upload?.done();
    }
  } catch (e) {
    if (hasMarker) await leader.client.raw('DELETE', `/${MARKER_PATH}`).catch(() => undefined);
    if (e instanceof VaultApiError && e.status === 400 && OTHER_SEAL.test(e.errors.join(' ') + e.message)) {
      throw new GateError(
        `${leader.node.name} refused ${o.file}: its SHA256SUMS.sealed does not open with ${o.clusterName}'s seal, so the snapshot comes from another cluster or from before a rekey. The cluster was not touched.`,
        { hint: 'If you mean to replace this cluster with that data, pass --force-other-cluster; the nodes will then need the source cluster\'s unseal keys.' },
      );
    }
    throw e;
  }
  log('Vault accepted the snapshot (204); waiting for the restore to happen...');

  const deadline = Date.now() + timeoutMs;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  // 1. Wait until the data is the snapshot's: nodes sealed (other key set), or our marker gone.
  for (;;) {
    if (o.signal?.aborted) throw new VaultopsError('Interrupted while waiting for the restore; the cluster may still be restoring.', { exitCode: 130 });
    const all = await o.cluster.probeAll();
    if (all.some((p) => p.health?.state === 'sealed')) break;
    const active = all.find((p) => p.health?.state === 'active');
    if (active) {
      if (!hasMarker) break;
      const res = await o.cluster.client(active.node.name).raw('GET', `/${MARKER_PATH}`).catch(() => undefined);
      if (res && (res.status === 404 || res.status === 403)) break;
      if (res && res.status === 200 && !res.body.toString('utf8').includes(marker)) break;
    }
    if (Date.now() > deadline) throw new VaultopsError(`Vault accepted the snapshot but ${o.clusterName} did not show the restored data within ${Math.round(timeoutMs / 1000)} s.`, { hint: 'Read the server logs for "snapshot restore"; run `vaultops status`.' });
    await sleep(500);
  }

  // 2. Unseal whatever sealed, with the key set the snapshot's data needs.
  let unsealedWith: string | undefined;
  let secrets: KeySetSecrets | undefined;
  const neededSet = isOther || force ? manifest?.key_set : o.keySet;
  for (;;) {
    const all = await o.cluster.probeAll();
    const sealed = all.filter((p) => p.health?.state === 'sealed');
    const serving = all.filter((p) => p.health && isServing(p.health.state));
    if (sealed.length === 0 && serving.length === all.length && serving.some((p) => p.health?.state === 'active')) break;
    if (sealed.length) {
      if (!secrets) {
        if (force && !manifest?.key_set) log('The nodes sealed and the snapshot has no manifest naming its key set; trying the inventory\'s key sets.');
        secrets = await o.keysFor(neededSet);
        log(`Nodes sealed after the restore (${sealed.map((p) => p.node.name).join(', ')}); unsealing with key set ${secrets.label}...`);
      }
      unsealedWith = secrets.label;
      for (const p of sealed) await unsealNode(o.cluster, p.node.name, secrets);
    }
    if (Date.now() > deadline) throw new VaultopsError(`${o.clusterName} did not come back within ${Math.round(timeoutMs / 1000)} s after the restore: ${all.map((p) => `${p.node.name} ${p.health?.state ?? 'unreachable'}`).join(', ')}.`, { hint: 'Run `vaultops status`; unseal with `vaultops run playbooks/unseal.yml`.' });
    await sleep(500);
  }

  // 3. The restored data has its own tokens: after another cluster's snapshot only its tokens work.
  if (isOther || force) {
    secrets ??= await o.keysFor(neededSet).catch(() => undefined);
    if (secrets?.token) o.cluster.setToken(secrets.token);
  }
  let status: ClusterStatus;
  for (;;) {
    status = await o.cluster.status();
    if (status.health === 'healthy' && status.autopilot?.healthy && status.nodes.every((n) => n.voter === true)) break;
    if (Date.now() > deadline) {
      throw new VaultopsError(`${o.clusterName} is back but not healthy after the restore: ${status.problems.join('; ') || status.autopilotNote || 'autopilot not healthy'}.`, { hint: 'Run `vaultops status` and check the server logs.' });
    }
    await sleep(1000);
  }
  log(`Restored: ${status.nodes.length} nodes unsealed voters, autopilot healthy, leader ${status.leader ?? '?'}.`);
  const canaries = await checkCanaries(o.cluster, o.canaries ?? [], Math.max(deadline, Date.now() + 30_000), log, sleep);
  return { file: o.file, manifest, snapshotIndex: verified.meta.index, indexBefore, safetyBackup, forced: force, unsealedWith, status, canaries };
}

/**
 * Reads each canary on the leader and compares sha256(value) with expect_sha256. A canary that is
 * not readable yet is read again until the deadline (a fresh leader may still be loading mounts); a
 * different hash is final. Only paths, fields and verdicts are logged or thrown, never values.
 */
async function checkCanaries(cluster: ClusterClient, specs: readonly CanarySpec[], deadline: number, log: (m: string) => void, sleep: (ms: number) => Promise<unknown>): Promise<CanaryResult[]> {
  if (specs.length === 0) return [];
  const label = (c: CanarySpec) => `${c.path}${c.field ? `#${c.field}` : ''}`;
  for (;;) {
    const { client } = await cluster.findLeader();
    const results: CanaryResult[] = [];
    for (const spec of specs) {
      const got = await readCanaryHash(client, spec);
      const readAt = new Date().toISOString();
      if (got.sha256 === undefined) results.push({ path: spec.path, field: spec.field, result: 'missing', expected_from: spec.expect_sha256 ? 'inventory' : 'none', problem: got.problem, read_at: readAt });
      else if (spec.expect_sha256 === undefined) results.push({ path: spec.path, field: spec.field, result: 'match', expected_from: 'none', read_at: readAt, problem: 'readable; no expect_sha256 to compare with' });
      else results.push({ path: spec.path, field: spec.field, result: got.sha256 === spec.expect_sha256.toLowerCase() ? 'match' : 'mismatch', expected_from: 'inventory', read_at: readAt });
    }
    const mismatched = results.filter((r) => r.result === 'mismatch');
    if (mismatched.length) {
      throw new CanaryMismatchError(`The cluster was restored, but canar${mismatched.length === 1 ? 'y' : 'ies'} ${mismatched.map(label).join(', ')} ${mismatched.length === 1 ? 'does' : 'do'} not hold the value the inventory expects (sha256 differs).`, {
        hint: 'The restored data is not what the inventory expects: check which backup was restored and the canary\'s expect_sha256 (`printf %s "$value" | sha256sum`). The safety snapshot holds the state from before the restore.',
      });
    }
    const missing = results.filter((r) => r.result === 'missing');
    if (missing.length === 0) {
      log(`Canaries: ${results.map((r) => `${label(r)} ${r.expected_from === 'inventory' ? 'matches' : 'readable'}`).join(', ')}.`);
      return results;
    }
    if (Date.now() > deadline) {
      throw new CanaryMismatchError(`The cluster was restored, but canar${missing.length === 1 ? 'y' : 'ies'} ${missing.map((r) => `${label(r)} (${r.problem ?? 'unreadable'})`).join(', ')} could not be read.`, {
        hint: 'Check that the token may read the canary paths and that the restored snapshot is the one you meant.',
      });
    }
    await sleep(1000);
  }
}

async function unsealNode(cluster: ClusterClient, nodeName: string, secrets: KeySetSecrets): Promise<void> {
  const client = cluster.client(nodeName);
  const st = await client.sealStatus().catch(() => undefined);
  if (!st?.sealed) return;
  if (st.progress > 0) await client.unsealReset().catch(() => undefined);
  for (const key of secrets.keys.slice(0, Math.max(st.t, 1))) {
    try {
      const s = await client.unseal(key);
      if (!s.sealed) return;
    } catch (e) {
      // What a wrong share set looks like at the threshold share: 400 "invalid key: failed to decrypt keys
      // from storage: cipher: message authentication failed" (seen on OpenBao 2.7.2).
      if (e instanceof VaultApiError && e.status === 400 && /invalid key|authentication failed|failed to decrypt/i.test(e.message)) {
        await client.unsealReset().catch(() => undefined);
        throw new VaultopsError(`${nodeName} refused the unseal keys of key set ${secrets.label} after the restore: the restored data was sealed with another key set.`, {
          hint: 'Give the inventory the key set named in the snapshot\'s manifest (unseal.key_set), or restore a snapshot of this cluster.',
        });
      }
      // Not ready yet (a follower still installing the snapshot); the caller tries again.
      return;
    }
  }
}

/** `body`, telling `progress` the size of each piece that passes; an error of either side ends both. */
function counted(body: Readable, progress: TransferProgress): Readable {
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      progress.add(chunk.length);
      callback(null, chunk);
    },
  });
  return pipeline(body, counter, () => undefined);
}
