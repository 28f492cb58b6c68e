import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { pipeline, Transform, type Readable } from 'node:stream';
import { GateError, VaultApiError, VaultopsError } from '../core/errors.js';
import type { Prompter } from '../core/prompter.js';
import type { ClusterClient, ClusterStatus } from '../vault/cluster.js';
import { isServing } from '../vault/health.js';
import { checkFile } from './stores/check-file.js';
import { openDecrypted, type EncryptionSpec, type IdentityLoader } from './crypto/encryption.js';
import { IdentityNeededError } from './crypto/encryption-errors.js';
import type { Manifest } from './stores/manifest.js';
import { SnapshotInvalidError } from './stores/snapshot-verify.js';
import type { BackupStore } from './stores/store.js';
import { takeBackup, type BackupResult } from './take-backup.js';
import { CanaryMismatchError, readCanaryHash, type CanaryResult, type CanarySpec } from '../vault/canaries.js';
import { sleep } from '../core/sleep.js';
import type { KeySetSecrets } from '../vault/key-set.js';

export type { KeySetSecrets } from '../vault/key-set.js';

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
  /**
   * Recipients for the safety snapshot of an encrypted backup when the safety store has no
   * `encrypt:` of its own (given by the operator). Without either it is stored unencrypted, with a warning.
   */
  safetyEncryption?: EncryptionSpec | undefined;
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
 * How often the waits after the upload look again (restore happened, nodes unsealed, cluster
 * healthy, canaries readable). Each wait loses half a poll on average between the cluster being
 * ready and the next step seeing it; at 100 ms the three or four waits lose about 0.2 s in all, and
 * a poll (a few small API calls per node) stays light for the servers.
 */
const POLL_MS = 100;

/**
 * Restores a snapshot into a cluster, in the order that loses nothing by accident: verify the file,
 * refuse another cluster's snapshot without the flag, show what will be lost, typed confirmation,
 * safety snapshot, restore on the leader, wait until the restore really happened (the 204 comes
 * before it), unseal with the snapshot's key set if the nodes sealed, and check the
 * cluster: every node unsealed, voters, autopilot healthy, canaries readable.
 */
export async function restoreSnapshot(o: RestoreOptions): Promise<RestoreResult> {
  const log = o.log ?? (() => undefined);
  const timeoutMs = o.timeoutMs ?? 180_000;

  log(`Verifying ${o.file}...`);
  const checked = await checkFile(o.file, { identity: o.identity });
  if (checked.encryption && !checked.encryption.contents_checked) {
    throw new IdentityNeededError(
      `${o.file} is encrypted (${checked.encryption.format}) and no identity was given to open it, so it can be neither verified nor restored. The cluster was not touched.`,
      {
        hint: 'Pass --identity REF (env:NAME, file:PATH, cmd:COMMAND; never the key itself), or set `decrypt: { identity: REF }` on the store.',
      },
    );
  }
  if (checked.problems.length || !checked.verified) {
    throw new SnapshotInvalidError(
      `Refusing to restore ${o.file}: ${checked.problems.join('; ')}. The cluster was not touched.`,
    );
  }
  const { verified, manifest } = checked;

  const probes = await o.cluster.probeAll();
  const leader = await o.cluster.findLeader(probes);
  const health = probes.find((p) => p.node.name === leader.node.name)?.health?.body;
  const identity = sameCluster(manifest, health, o.clusterName);
  const isOther = identity.verdict === 'other';
  if (isOther && !o.forceOtherCluster) {
    throw new GateError(
      `${o.file} was taken on cluster ${manifest!.cluster.name} (${identity.why}), not on ${o.clusterName}. Restoring it replaces all of ${o.clusterName}'s data, tokens and seal configuration with ${manifest!.cluster.name}'s; the nodes then seal and only ${manifest!.cluster.name}'s unseal keys (key set ${manifest!.key_set ?? 'unknown'}) open them. The cluster was not touched.`,
      {
        hint: 'If that is what you want (a DR rebuild), pass --force-other-cluster and make sure the inventory holds that key set.',
      },
    );
  }
  if (identity.verdict === 'unknown' && !o.forceOtherCluster) {
    throw new GateError(
      `Cannot tell whether ${o.file} was taken on ${o.clusterName}: ${identity.why}. The cluster was not touched.`,
      {
        hint: "If you know the snapshot is this cluster's (or mean to replace it with another's), pass --force-other-cluster.",
      },
    );
  }
  log(
    identity.verdict === 'unchecked'
      ? `${o.file} has no manifest: Vault's own check (the snapshot's SHA256SUMS.sealed must open with this cluster's seal) decides whether it belongs here.`
      : `Same cluster: ${identity.why}.`,
  );

  const leaderStatus = await leader.client.leader().catch(() => undefined);
  const indexBefore = leaderStatus?.raft_committed_index;
  const lossLine =
    indexBefore !== undefined
      ? `${o.clusterName} is at Raft index ${indexBefore}; the snapshot is at index ${verified.meta.index}${manifest ? ` (taken ${manifest.finished_at} on ${manifest.cluster.name})` : ''}. Everything written to ${o.clusterName} since then is lost: secrets, tokens, leases, policies.`
      : `The snapshot is at Raft index ${verified.meta.index}; everything written since it was taken is lost.`;
  log(lossLine);
  if (!o.confirmed)
    await o.prompter.confirm({
      message: `Restore ${o.file} into cluster ${o.clusterName}, replacing all of its data. ${lossLine}`,
      expected: o.clusterName,
      source: `--confirm ${o.clusterName}`,
    });

  // An encrypted backup's safety snapshot should not lie around in clear. Its recipients come from
  // the safety store's own `encrypt:` or from the operator (safetyEncryption), never from the
  // backup's manifest: the manifest is not signed, and whoever wrote it would choose who can read
  // the safety snapshot of this cluster's current data.
  if (checked.encryption && !o.safetyStore.encryption) {
    if (o.safetyEncryption) o.safetyStore.encryption = o.safetyEncryption;
    else
      log(
        `warning: the safety snapshot goes to ${o.safetyStore.location} unencrypted (the backup's recipients come from its unsigned manifest, so they are not reused); give that store an encrypt: entry to encrypt it.`,
      );
  }
  log('Taking a safety snapshot of the current state first...');
  const safetyProgress = o.startTransfer?.(`safety snapshot of ${o.clusterName}`, undefined);
  const safetyBackup = await takeBackup({
    cluster: o.cluster,
    clusterName: o.clusterName,
    flavor: o.flavor,
    keySet: o.keySet,
    store: o.safetyStore,
    reason: 'pre-restore',
    log,
    signal: o.signal,
    onBytes: safetyProgress ? (n: number) => safetyProgress.add(n) : undefined,
  }).finally(() => safetyProgress?.done());

  // A value written after the safety snapshot: once it is gone the restored data is in place. The
  // 204 of the upload comes before the restore happens, and the Raft index alone cannot tell.
  const marker = randomBytes(12).toString('hex');
  const hasMarker = await leader.client.write(MARKER_PATH, { id: marker }).then(
    () => true,
    () => false,
  );

  const force = o.forceOtherCluster && (isOther || identity.verdict !== 'same');
  log(
    `Uploading the snapshot to the leader ${leader.node.name}${force ? " (snapshot-force: another cluster's snapshot)" : ''}...`,
  );
  try {
    // An encrypted file is decrypted a second time while it uploads (it was decrypted and verified
    // in full above); the plaintext only ever exists in memory, one chunk at a time.
    // The file is opened again here; what is sent is hashed on the way and must be exactly what
    // was verified: a file replaced or changed since the check fails the upload before its end, so
    // Vault never receives a complete snapshot.
    const source =
      checked.encryption && o.identity
        ? openDecrypted(o.file, checked.encryption, await o.identity())
        : createReadStream(o.file);
    const body = sameBytesAs(verified.sha256, verified.bytes, o.file);
    source.on('error', (e: Error) => body.destroy(e));
    source.pipe(body);
    // The plaintext's size is the file's unless it is encrypted (then only the bytes are shown).
    const upload = o.startTransfer?.(
      `upload to ${leader.node.name}`,
      checked.encryption ? undefined : statSync(o.file).size,
    );
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
        {
          hint: "If you mean to replace this cluster with that data, pass --force-other-cluster; the nodes will then need the source cluster's unseal keys.",
        },
      );
    }
    throw e;
  }
  log('Vault accepted the snapshot (204); waiting for the restore to happen...');

  const deadline = Date.now() + timeoutMs;
  // 1. Wait until the data is the snapshot's: nodes sealed (other key set), or our marker gone.
  for (;;) {
    if (o.signal?.aborted)
      throw new VaultopsError('Interrupted while waiting for the restore; the cluster may still be restoring.', {
        exitCode: 130,
      });
    const all = await o.cluster.probeAll();
    if (all.some((p) => p.health?.state === 'sealed')) break;
    const active = all.find((p) => p.health?.state === 'active');
    if (active) {
      if (!hasMarker) break;
      const res = await o.cluster
        .client(active.node.name)
        .raw('GET', `/${MARKER_PATH}`)
        .catch(() => undefined);
      if (res && (res.status === 404 || res.status === 403)) break;
      if (res && res.status === 200 && !res.body.toString('utf8').includes(marker)) break;
    }
    if (Date.now() > deadline)
      throw new VaultopsError(
        `Vault accepted the snapshot but ${o.clusterName} did not show the restored data within ${Math.round(timeoutMs / 1000)} s.`,
        { hint: 'Read the server logs for "snapshot restore"; run `vaultops status`.' },
      );
    await sleep(POLL_MS);
  }

  // 2. Unseal whatever sealed, with the key set the snapshot's data needs.
  let unsealedWith: string | undefined;
  let secrets: KeySetSecrets | undefined;
  const neededSet = isOther || force ? manifest?.key_set : o.keySet;
  for (;;) {
    const all = await o.cluster.probeAll();
    const sealed = all.filter((p) => p.health?.state === 'sealed');
    const serving = all.filter((p) => p.health && isServing(p.health.state));
    if (sealed.length === 0 && serving.length === all.length && serving.some((p) => p.health?.state === 'active'))
      break;
    if (sealed.length) {
      if (!secrets) {
        if (force && !manifest?.key_set)
          log("The nodes sealed and the snapshot has no manifest naming its key set; trying the inventory's key sets.");
        secrets = await o.keysFor(neededSet);
        log(
          `Nodes sealed after the restore (${sealed.map((p) => p.node.name).join(', ')}); unsealing with key set ${secrets.label}...`,
        );
      }
      unsealedWith = secrets.label;
      for (const p of sealed) await unsealNode(o.cluster, p.node.name, secrets);
    }
    if (Date.now() > deadline)
      throw new VaultopsError(
        `${o.clusterName} did not come back within ${Math.round(timeoutMs / 1000)} s after the restore: ${all.map((p) => `${p.node.name} ${p.health?.state ?? 'unreachable'}`).join(', ')}.`,
        { hint: 'Run `vaultops status`; unseal with `vaultops run playbooks/unseal.yml`.' },
      );
    await sleep(POLL_MS);
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
      throw new VaultopsError(
        `${o.clusterName} is back but not healthy after the restore: ${status.problems.join('; ') || status.autopilotNote || 'autopilot not healthy'}.`,
        { hint: 'Run `vaultops status` and check the server logs.' },
      );
    }
    await sleep(POLL_MS);
  }
  log(`Restored: ${status.nodes.length} nodes unsealed voters, autopilot healthy, leader ${status.leader ?? '?'}.`);
  const canaries = await checkCanaries(
    o.cluster,
    o.canaries ?? [],
    Math.max(deadline, Date.now() + 30_000),
    log,
    sleep,
  );
  return {
    file: o.file,
    manifest,
    snapshotIndex: verified.meta.index,
    indexBefore,
    safetyBackup,
    forced: force,
    unsealedWith,
    status,
    canaries,
  };
}

/**
 * Reads each canary on the leader and compares sha256(value) with expect_sha256. A canary that is
 * not readable yet is read again until the deadline (a fresh leader may still be loading mounts); a
 * different hash is final. Only paths, fields and verdicts are logged or thrown, never values.
 */
async function checkCanaries(
  cluster: ClusterClient,
  specs: readonly CanarySpec[],
  deadline: number,
  log: (m: string) => void,
  sleep: (ms: number) => Promise<unknown>,
): Promise<CanaryResult[]> {
  if (specs.length === 0) return [];
  const label = (c: CanarySpec) => `${c.path}${c.field ? `#${c.field}` : ''}`;
  for (;;) {
    const { client } = await cluster.findLeader();
    const results: CanaryResult[] = [];
    for (const spec of specs) {
      const got = await readCanaryHash(client, spec);
      const readAt = new Date().toISOString();
      if (got.sha256 === undefined)
        results.push({
          path: spec.path,
          field: spec.field,
          result: 'missing',
          expected_from: spec.expect_sha256 ? 'inventory' : 'none',
          problem: got.problem,
          read_at: readAt,
        });
      else if (spec.expect_sha256 === undefined)
        results.push({
          path: spec.path,
          field: spec.field,
          result: 'match',
          expected_from: 'none',
          read_at: readAt,
          problem: 'readable; no expect_sha256 to compare with',
        });
      else
        results.push({
          path: spec.path,
          field: spec.field,
          result: got.sha256 === spec.expect_sha256.toLowerCase() ? 'match' : 'mismatch',
          expected_from: 'inventory',
          read_at: readAt,
        });
    }
    const mismatched = results.filter((r) => r.result === 'mismatch');
    if (mismatched.length) {
      throw new CanaryMismatchError(
        `The cluster was restored, but canar${mismatched.length === 1 ? 'y' : 'ies'} ${mismatched.map(label).join(', ')} ${mismatched.length === 1 ? 'does' : 'do'} not hold the value the inventory expects (sha256 differs).`,
        {
          hint: 'The restored data is not what the inventory expects: check which backup was restored and the canary\'s expect_sha256 (`printf %s "$value" | sha256sum`). The safety snapshot holds the state from before the restore.',
        },
      );
    }
    const missing = results.filter((r) => r.result === 'missing');
    if (missing.length === 0) {
      log(
        `Canaries: ${results.map((r) => `${label(r)} ${r.expected_from === 'inventory' ? 'matches' : 'readable'}`).join(', ')}.`,
      );
      return results;
    }
    if (Date.now() > deadline) {
      throw new CanaryMismatchError(
        `The cluster was restored, but canar${missing.length === 1 ? 'y' : 'ies'} ${missing.map((r) => `${label(r)} (${r.problem ?? 'unreadable'})`).join(', ')} could not be read.`,
        {
          hint: 'Check that the token may read the canary paths and that the restored snapshot is the one you meant.',
        },
      );
    }
    await sleep(POLL_MS);
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
      if (
        e instanceof VaultApiError &&
        e.status === 400 &&
        /invalid key|authentication failed|failed to decrypt/i.test(e.message)
      ) {
        await client.unsealReset().catch(() => undefined);
        throw new VaultopsError(
          `${nodeName} refused the unseal keys of key set ${secrets.label} after the restore: the restored data was sealed with another key set.`,
          {
            hint: "Give the inventory the key set named in the snapshot's manifest (unseal.key_set), or restore a snapshot of this cluster.",
          },
        );
      }
      // Not ready yet (a follower still installing the snapshot); the caller tries again.
      return;
    }
  }
}

/**
 * Whether the snapshot's manifest and the server say the same cluster. Compared in order of
 * strength, using what both sides have: cluster_id (sys/health), else the server's cluster_name,
 * and always the inventory name the backup was taken under. When neither an id nor a server name
 * can be compared, identity cannot be established ('unknown': refused without --force-other-cluster).
 * Without a manifest ('unchecked') there is nothing to compare: Vault's own check on upload
 * (SHA256SUMS.sealed must open with this cluster's seal) is what refuses another cluster's file.
 */
export function sameCluster(
  manifest: Manifest | undefined,
  health: { cluster_id?: string | undefined; cluster_name?: string | undefined } | undefined,
  clusterName: string,
): { verdict: 'same' | 'other' | 'unknown' | 'unchecked'; why: string } {
  if (!manifest) return { verdict: 'unchecked', why: 'no manifest' };
  const m = manifest.cluster;
  if (m.cluster_id && health?.cluster_id) {
    return m.cluster_id === health.cluster_id
      ? { verdict: 'same', why: `cluster id ${m.cluster_id} matches` }
      : { verdict: 'other', why: `id ${m.cluster_id}; ${clusterName} is ${health.cluster_id}` };
  }
  if (m.cluster_name && health?.cluster_name && m.cluster_name !== health.cluster_name) {
    return {
      verdict: 'other',
      why: `cluster_name ${m.cluster_name}; ${clusterName}'s server says ${health.cluster_name}`,
    };
  }
  if (m.name !== clusterName) return { verdict: 'other', why: `inventory name ${m.name}` };
  if (m.cluster_name && health?.cluster_name) {
    return {
      verdict: 'same',
      why: `no cluster id to compare (${m.cluster_id ? 'the server gave none' : 'the manifest has none'}); cluster_name ${m.cluster_name} and the inventory name match`,
    };
  }
  return {
    verdict: 'unknown',
    why: `${m.cluster_id ? 'the server gave no cluster id' : 'the manifest has no cluster id'} and ${m.cluster_name ? 'the server no cluster_name' : 'no cluster_name'} to compare; only the inventory names match`,
  };
}

/**
 * The last bytes of an upload held back until the whole stream has been checked. Withholding the
 * end of the HTTP body is not enough: Vault reads the gzip/tar stream and acts once the snapshot in
 * it is complete, without waiting for the body's end. The tail of the compressed stream holds the
 * end of the tar (SHA256SUMS, SHA256SUMS.sealed, the end blocks) and the gzip trailer, so without
 * it Vault never has a complete snapshot. Seen on OpenBao 2.7.2: with only the body's end held
 * back, a swapped file was restored.
 */
const HOLD_BACK = 256 << 10;

/**
 * A pass-through that hashes what flows and passes on the last HOLD_BACK bytes only once the
 * stream turned out to be exactly `bytes` bytes with sha256 `sha256`; otherwise it fails without
 * them, and a piped request is destroyed before Vault has a complete snapshot.
 */
function sameBytesAs(sha256: string, bytes: number, file: string): Transform {
  const hash = createHash('sha256');
  let seen = 0;
  const held: Buffer[] = [];
  let heldBytes = 0;
  const changed = (what: string) =>
    new SnapshotInvalidError(
      `${file} changed after it was verified (${what}); the upload was stopped before the snapshot's end, so the cluster was not restored from it.`,
      {
        hint: 'Something replaced or modified the file during the restore. Check who writes to that directory, then run the restore again.',
      },
    );
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (seen > bytes) return cb(changed(`more than the ${bytes} bytes verified`));
      hash.update(chunk);
      // Copies: a source may reuse its buffer once the chunk is acknowledged.
      held.push(Buffer.from(chunk));
      heldBytes += chunk.length;
      while (held.length > 1 && heldBytes - held[0]!.length >= HOLD_BACK) {
        const out = held.shift()!;
        heldBytes -= out.length;
        this.push(out);
      }
      cb();
    },
    flush(cb) {
      if (seen !== bytes) return cb(changed(`${seen} bytes, not the ${bytes} verified`));
      const got = hash.digest('hex');
      if (got !== sha256) return cb(changed(`sha256 ${got}, not the verified ${sha256}`));
      for (const b of held.splice(0)) this.push(b);
      cb();
    },
  });
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
