import { randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Prompter } from '../core/prompter.js';
import { VaultopsError, isVaultopsError } from '../core/errors.js';
import { ExitCode, type ExitCodeValue } from '../core/exit-codes.js';
import { redactor } from '../core/redact.js';
import { checkFile } from '../backup/stores/check-file.js';
import { LocalDirStore } from '../backup/stores/local-dir-store.js';
import type { Manifest } from '../backup/stores/manifest.js';
import { SnapshotInvalidError } from '../backup/stores/snapshot-verify.js';
import type { IdentityLoader } from '../backup/crypto/encryption.js';
import { IdentityNeededError } from '../backup/crypto/encryption-errors.js';
import { localCopy, type BackupStore } from '../backup/stores/store.js';
import { checkVersion, ensureBinary, parseFlavor, type Flavor } from '../lab/binaries.js';
import { clusterFor, labDestroy, labUp, readInit, readLab, runningPids, type LabRecord } from '../lab/lab.js';
import type { ClusterClient } from '../vault/cluster.js';
import { CanaryMismatchError, readCanaryHash, type CanaryResult, type CanarySpec } from '../vault/canaries.js';
import type { KeySetSecrets } from '../vault/key-set.js';

export const DRILL_FORMAT = 'vaultops-drill/1';

export type PhaseName = 'verify' | 'provision' | 'restore' | 'unseal' | 'canaries' | 'raft-index' | 'teardown';

export const PHASE_TITLES: Record<PhaseName, string> = {
  verify: 'Verify backup',
  provision: 'Start scratch cluster',
  restore: 'Restore snapshot',
  unseal: "Unseal with the backup's key set",
  canaries: 'Read canaries',
  'raft-index': 'Check Raft index',
  teardown: 'Tear down scratch cluster',
};

export interface DrillPhase {
  name: PhaseName;
  title: string;
  started_at: string;
  finished_at: string;
  duration_ms: number;
  result: 'ok' | 'failed';
  /** This phase's part of the RTO (0..1), for phases before the first canary read. */
  share_of_rto?: number | undefined;
  note?: string | undefined;
}

export interface DrillReport {
  format: typeof DRILL_FORMAT;
  id: string;
  cluster: string;
  result: 'passed' | 'failed';
  started_at: string;
  finished_at: string;
  duration_ms: number;
  /** The phase that failed, when the drill failed. */
  failed_phase?: PhaseName | undefined;
  error?: string | undefined;
  exit_code: number;
  backup?:
    | {
        file: string;
        location: string;
        taken_at: string;
        raft_index: number;
        raft_term: number;
        sha256: string;
        size: number;
        flavor?: string | undefined;
        server_version?: string | undefined;
        key_set?: string | undefined;
      }
    | undefined;
  scratch?:
    | {
        lab: string;
        flavor: string;
        version: string;
        nodes: number;
        dir: string;
        torn_down: boolean;
        processes_left: number;
      }
    | undefined;
  /** Recovery time: drill start to the first successful canary read (or to the restored cluster, without canaries). */
  rto_ms?: number | undefined;
  rto_basis: 'first-canary-read' | 'cluster-restored' | 'not-reached';
  /** Recovery point: age of the backup (its finished_at) when the restore began. */
  rpo_ms?: number | undefined;
  raft?: { manifest_index: number; restored_index?: number | undefined; ok: boolean } | undefined;
  canaries: CanaryResult[];
  phases: DrillPhase[];
}

export interface DrillOptions {
  clusterName: string;
  /** The cluster's inventory entry: flavour (when the manifest lacks it) and canaries. */
  flavor?: string | undefined;
  canaries: readonly CanarySpec[];
  store: BackupStore;
  /** Unseal keys (and a token valid in that data) of a key set, from the inventory. */
  keysFor(label: string | undefined): Promise<KeySetSecrets>;
  /** The live cluster, to compare canaries that have no expect_sha256 (optional). */
  liveCluster?: ClusterClient | undefined;
  /** Parent folder for the scratch lab's own state (never the user's labs). */
  scratchParent: string;
  prompter: Prompter;
  /** Server version for the scratch cluster instead of the manifest's (a patch the machine lacks). */
  version?: string | undefined;
  restoreTimeoutMs?: number | undefined;
  log?: ((message: string) => void) | undefined;
  now?: () => Date;
  /** Opens an encrypted backup (resolved only when the newest backup is encrypted). */
  identity?: IdentityLoader | undefined;
  /**
   * The restore itself: the backup family's `restoreSnapshot`. The caller hands it in because
   * drill and backup are sibling use cases and never import each other.
   */
  restore: RestoreIntoScratch;
}

/** What the drill asks of a restore (a subset of backup's RestoreOptions/RestoreResult). */
export type RestoreIntoScratch = (o: {
  cluster: ClusterClient;
  clusterName: string;
  flavor?: string | undefined;
  file: string;
  forceOtherCluster: boolean;
  confirmed?: boolean | undefined;
  prompter: Prompter;
  identity?: IdentityLoader | undefined;
  safetyStore: BackupStore;
  keysFor(label: string | undefined): Promise<KeySetSecrets>;
  log?: ((message: string) => void) | undefined;
  timeoutMs?: number | undefined;
}) => Promise<{ unsealedWith?: string | undefined }>;

/**
 * A disaster-recovery drill: the newest verified backup of a cluster, restored into a scratch lab
 * cluster of the backup's flavour and version, unsealed with the key set the manifest names, its
 * canaries read and compared by hash, its Raft index checked, and the scratch cluster torn down
 * whatever happened. Never throws for a failed drill: the report says where it stopped, and
 * `error` carries the exception for the caller's exit code.
 */
export async function runDrill(o: DrillOptions): Promise<{ report: DrillReport; error?: VaultopsError | undefined }> {
  const run = startRun(o);
  try {
    const backup = await verifyNewestBackup(run);
    const scratch = await startScratchCluster(run, backup.manifest);
    await restoreIntoScratch(run, scratch, backup);
    await readCanaries(run, scratch.cluster);
    await checkRaftIndex(run, scratch.cluster, backup.manifest);
    run.report.result = 'passed';
    run.report.exit_code = ExitCode.ok;
  } catch (e) {
    recordFailure(run, e);
  } finally {
    await run.removeCopy?.().catch(() => undefined);
    run.scratch?.cluster?.close();
    if (run.scratch) await tearDownScratch(run, run.scratch);
  }
  finishReport(run);
  return { report: run.report, error: run.error };
}

/** What one drill carries from phase to phase. */
interface DrillRun {
  readonly o: DrillOptions;
  readonly log: (message: string) => void;
  readonly now: () => Date;
  readonly started: Date;
  readonly report: DrillReport;
  /** The phase under way: a failure is charged to it. */
  current?: { name: PhaseName; started: Date } | undefined;
  /** Set once the scratch lab has a state folder: from then on the teardown runs. */
  scratch?: Scratch | undefined;
  /** Removes the private local copy of a remote store's backup. */
  removeCopy?: (() => Promise<void>) | undefined;
  /** The end of the RTO: the first good canary read, or the restored cluster when there are no canaries. */
  rtoEnd?: Date | undefined;
  error?: VaultopsError | undefined;
}

/** The scratch lab of one drill, in a state folder of its own (never the user's labs). */
interface Scratch {
  name: string;
  state: string;
  env: NodeJS.ProcessEnv;
  flavor: Flavor;
  /** The lab's client, once it is up. */
  cluster?: ClusterClient | undefined;
}

interface VerifiedBackup {
  /** A local path to the backup (a private copy for a remote store). */
  file: string;
  manifest: Manifest;
}

function startRun(o: DrillOptions): DrillRun {
  const now = o.now ?? (() => new Date());
  const started = now();
  return {
    o,
    log: o.log ?? (() => undefined),
    now,
    started,
    report: {
      format: DRILL_FORMAT,
      id: `${o.clusterName}-${stamp(started)}`,
      cluster: o.clusterName,
      result: 'failed',
      started_at: started.toISOString(),
      finished_at: started.toISOString(),
      duration_ms: 0,
      exit_code: ExitCode.failed,
      rto_basis: 'not-reached',
      canaries: [],
      phases: [],
    },
  };
}

function beginPhase(run: DrillRun, name: PhaseName): void {
  run.current = { name, started: run.now() };
  run.log(`[${PHASE_TITLES[name]}]`);
}

function endPhase(run: DrillRun, result: 'ok' | 'failed', note?: string): void {
  const current = run.current;
  if (!current) return;
  const fin = run.now();
  run.report.phases.push({
    name: current.name,
    title: PHASE_TITLES[current.name],
    started_at: current.started.toISOString(),
    finished_at: fin.toISOString(),
    duration_ms: fin.getTime() - current.started.getTime(),
    result,
    note,
  });
  run.current = undefined;
}

/** The newest backup of this cluster, verified in full before anything is started. */
async function verifyNewestBackup(run: DrillRun): Promise<VerifiedBackup> {
  const o = run.o;
  beginPhase(run, 'verify');
  const entries = await o.store.list();
  const newest = entries.find(
    (e) => e.manifest !== undefined && e.manifest.cluster.name === o.clusterName && e.manifest.reason === 'backup',
  );
  if (!newest) {
    throw new VaultopsError(`No backup of ${o.clusterName} with a manifest in ${o.store.location}.`, {
      exitCode: ExitCode.badInput,
      hint: 'Take one with `vaultops backup`, or point --from at the store that holds them.',
    });
  }
  // A remote store (SFTP) hands out a private local copy, removed when the drill ends.
  const copy = await localCopy(o.store, newest.name);
  run.removeCopy = copy.cleanup;
  const file = copy.path;
  const checked = await checkFile(file, { identity: o.identity });
  if (checked.encryption && !checked.encryption.contents_checked) {
    throw new IdentityNeededError(
      `The newest backup ${newest.name} is encrypted (${checked.encryption.format}) and no identity was given to open it. Nothing was started.`,
      {
        hint: 'Pass --identity REF (file:PATH, env:NAME, cmd:COMMAND), or set `decrypt: { identity: REF }` on the store.',
      },
    );
  }
  if (checked.problems.length || !checked.verified || !checked.manifest) {
    throw new SnapshotInvalidError(
      `The newest backup ${file} fails verification: ${checked.problems.join('; ') || 'no manifest'}. Nothing was started.`,
    );
  }
  const manifest: Manifest = checked.manifest;
  run.report.backup = {
    file: o.store.localPath(newest.name) ?? newest.name,
    location: o.store.location,
    taken_at: manifest.finished_at,
    raft_index: manifest.raft.index,
    raft_term: manifest.raft.term,
    sha256: manifest.sha256,
    size: manifest.size,
    flavor: manifest.cluster.flavor,
    server_version: manifest.server_version,
    key_set: manifest.key_set,
  };
  endPhase(
    run,
    'ok',
    `${newest.name}: ${manifest.size} bytes, Raft index ${manifest.raft.index}, taken ${manifest.finished_at}`,
  );
  return { file, manifest };
}

/** A scratch lab of the backup's flavour and version, in a state folder of its own. */
async function startScratchCluster(run: DrillRun, manifest: Manifest): Promise<Scratch & { cluster: ClusterClient }> {
  const o = run.o;
  beginPhase(run, 'provision');
  const flavor: Flavor = parseFlavor(manifest.cluster.flavor ?? o.flavor);
  const version = checkVersion(flavor, o.version ?? manifest.server_version);
  const binary = await ensureBinary({ flavor, version, onProgress: run.log });
  mkdirSync(o.scratchParent, { recursive: true, mode: 0o700 });
  const state = mkdtempSync(join(o.scratchParent, 'scratch-'));
  const env = { ...process.env, VAULTOPS_STATE_DIR: state };
  const name = `drill-${randomBytes(3).toString('hex')}`;
  const scratch: Scratch = { name, state, env, flavor };
  run.scratch = scratch;
  // The scratch nodes take the Raft node IDs of the backup's cluster: Vault (1.19 and later) marks a
  // node whose ID is absent from the restored Raft configuration as removed from the cluster, and it
  // then never becomes active (a cluster whose nodes were replaced has IDs n4-n6, not n1-n3).
  const raftIds = scratchRaftIds(manifest.raft.servers.map((s) => s.id));
  run.report.scratch = {
    lab: name,
    flavor,
    version,
    nodes: raftIds.length,
    dir: join(state, 'labs', name),
    torn_down: false,
    processes_left: 0,
  };
  const { lab } = await labUp({
    name,
    flavor,
    version,
    binary: binary.path,
    tls: true,
    inventory: join(state, `${name}.yml`),
    env,
    nodes: raftIds.length,
    raftIds,
    onProgress: run.log,
  });
  const init = readInit(lab);
  redactor.add(init.root_token, ...init.unseal_keys_b64);
  const cluster = clusterFor(lab, init.root_token);
  scratch.cluster = cluster;
  endPhase(run, 'ok', `lab ${name}: ${flavor} ${version}, ${lab.nodes.length} nodes`);
  return { ...scratch, cluster };
}

/**
 * The Raft node IDs for scratch nodes n1..nN: the backup's own IDs, one per node (1-9 of them; else
 * three nodes named as the lab names them). An ID that is a scratch node's name goes to that node,
 * so the cluster's name-or-address matching never pairs a node with another's ID.
 */
export function scratchRaftIds(backupIds: readonly string[]): string[] {
  const ids = [...new Set(backupIds)].sort();
  if (ids.length < 1 || ids.length > 9) return ['n1', 'n2', 'n3'];
  const names = ids.map((_, i) => `n${i + 1}`);
  const others = ids.filter((id) => !names.includes(id));
  return names.map((n) => (ids.includes(n) ? n : others.shift()!));
}

/**
 * Restore with force (another cluster), then unseal with the manifest's key set: one call, since the
 * restore asks for the keys exactly when the nodes have sealed. That moment splits the two phases.
 */
async function restoreIntoScratch(
  run: DrillRun,
  scratch: Scratch & { cluster: ClusterClient },
  backup: VerifiedBackup,
): Promise<void> {
  const o = run.o;
  beginPhase(run, 'restore');
  const restoreStarted = run.now();
  run.report.rpo_ms = restoreStarted.getTime() - Date.parse(backup.manifest.finished_at);
  let unsealStarted = false;
  const result = await o.restore({
    cluster: scratch.cluster,
    clusterName: scratch.name,
    flavor: scratch.flavor,
    file: backup.file,
    forceOtherCluster: true,
    confirmed: true,
    prompter: o.prompter,
    identity: o.identity,
    safetyStore: new LocalDirStore(join(scratch.state, 'safety')),
    keysFor: async (label) => {
      if (!unsealStarted) {
        unsealStarted = true;
        endPhase(run, 'ok');
        beginPhase(run, 'unseal');
      }
      return unsealKeys(o, label);
    },
    log: run.log,
    timeoutMs: o.restoreTimeoutMs,
  });
  endPhase(run, 'ok', result.unsealedWith ? `unsealed with key set ${result.unsealedWith}` : undefined);
  run.rtoEnd = run.now();
}

/** The key set the manifest names, from the inventory; its shares and token are redacted from then on. */
async function unsealKeys(o: DrillOptions, label: string | undefined): Promise<KeySetSecrets> {
  const keys = await o.keysFor(label);
  redactor.add(...keys.keys, keys.token);
  return keys;
}

/** Canaries, compared by hash: the first good read ends the RTO. */
async function readCanaries(run: DrillRun, scratch: ClusterClient): Promise<void> {
  const o = run.o;
  if (!o.canaries.length) {
    run.log('The inventory lists no canaries for this cluster: the RTO ends when the restored cluster is healthy.');
    return;
  }
  beginPhase(run, 'canaries');
  run.rtoEnd = undefined;
  const leader = await scratch.findLeader();
  const liveLeader =
    o.liveCluster && o.canaries.some((c) => c.expect_sha256 === undefined)
      ? await o.liveCluster.findLeader().catch(() => undefined)
      : undefined;
  const bad: string[] = [];
  for (const spec of o.canaries) {
    const got = await readCanaryHash(leader.client, spec);
    const readAt = run.now();
    let expected = spec.expect_sha256?.toLowerCase();
    let from: CanaryResult['expected_from'] = expected ? 'inventory' : 'none';
    if (!expected && liveLeader) {
      expected = (await readCanaryHash(liveLeader.client, spec)).sha256;
      if (expected) from = 'live-cluster';
    }
    if (got.sha256 === undefined) {
      run.report.canaries.push({
        path: spec.path,
        field: spec.field,
        result: 'missing',
        expected_from: from,
        problem: got.problem,
      });
      bad.push(`${spec.path}${spec.field ? `#${spec.field}` : ''} could not be read (${got.problem})`);
      continue;
    }
    run.rtoEnd ??= readAt;
    const ok = expected !== undefined && expected === got.sha256;
    run.report.canaries.push({
      path: spec.path,
      field: spec.field,
      result: ok ? 'match' : 'mismatch',
      expected_from: from,
      read_at: readAt.toISOString(),
      problem:
        expected === undefined ? 'no expect_sha256 in the inventory and the live cluster gave no value' : undefined,
    });
    if (!ok)
      bad.push(
        `${spec.path}${spec.field ? `#${spec.field}` : ''} ${expected === undefined ? 'has nothing to compare with' : 'differs from the expected value (sha256 compared; the value is not shown)'}`,
      );
  }
  if (bad.length) {
    throw new CanaryMismatchError(`Canary check failed after the restore: ${bad.join('; ')}.`, {
      hint: 'The restored data is not what the inventory expects: check the backup\'s age and the canary\'s expect_sha256 (`printf %s "$value" | sha256sum`).',
    });
  }
  endPhase(run, 'ok', `${o.canaries.length} canar${o.canaries.length === 1 ? 'y' : 'ies'} match`);
}

/** The restored data is at least as new as the manifest says. */
async function checkRaftIndex(run: DrillRun, scratch: ClusterClient, manifest: Manifest): Promise<void> {
  beginPhase(run, 'raft-index');
  const leader = await scratch.findLeader();
  const ls = await leader.client.leader().catch(() => undefined);
  const restoredIndex = ls?.raft_committed_index ?? ls?.raft_applied_index;
  const ok = restoredIndex !== undefined && restoredIndex >= manifest.raft.index;
  run.report.raft = { manifest_index: manifest.raft.index, restored_index: restoredIndex, ok };
  if (!ok) {
    throw new VaultopsError(
      `The scratch cluster is at Raft index ${restoredIndex ?? 'unknown'}, below the backup's ${manifest.raft.index}: the restore did not take.`,
    );
  }
  endPhase(run, 'ok', `index ${restoredIndex} >= manifest ${manifest.raft.index}`);
}

/** A failed phase: the report names it and carries the (redacted) error; `run.error` keeps it for the exit code. */
function recordFailure(run: DrillRun, e: unknown): void {
  const report = run.report;
  const error = isVaultopsError(e) ? e : new VaultopsError(redactor.redact(e instanceof Error ? e.message : String(e)));
  run.error = error;
  report.failed_phase = run.current?.name;
  report.error = redactor.redact(error.message);
  report.exit_code = error.exitCode === ExitCode.ok ? ExitCode.failed : (error.exitCode as ExitCodeValue);
  endPhase(run, 'failed', report.error);
}

/** Whatever happened: the scratch lab destroyed, its state folder removed, and no server process left. */
async function tearDownScratch(run: DrillRun, scratch: Scratch): Promise<void> {
  const report = run.report;
  beginPhase(run, 'teardown');
  const rec: LabRecord | undefined = readLab(scratch.name, scratch.env);
  try {
    await labDestroy(scratch.name, run.log, scratch.env);
  } catch (e) {
    run.log(`Tearing down ${scratch.name} failed: ${(e as Error).message}`);
  }
  const left = rec ? runningPids(rec).length : 0;
  if (report.scratch) Object.assign(report.scratch, { torn_down: left === 0, processes_left: left });
  rmSync(scratch.state, { recursive: true, force: true });
  endPhase(
    run,
    left === 0 ? 'ok' : 'failed',
    left === 0 ? 'no process left' : `${left} server process(es) still running`,
  );
  if (left > 0 && report.result === 'passed') {
    report.result = 'failed';
    report.failed_phase = 'teardown';
    report.error = `Scratch lab ${scratch.name} still has ${left} server process(es) after the teardown.`;
    report.exit_code = ExitCode.failed;
    run.error = new VaultopsError(report.error, {
      hint: `Stop them by pid (see \`ps\` for ${report.scratch?.dir ?? scratch.name}).`,
    });
  }
}

/** The drill's end and duration, its RTO, and each phase's share of the RTO. */
function finishReport(run: DrillRun): void {
  const report = run.report;
  const finished = run.now();
  report.finished_at = finished.toISOString();
  report.duration_ms = finished.getTime() - run.started.getTime();
  const rtoEnd = run.rtoEnd;
  if (rtoEnd) {
    report.rto_ms = rtoEnd.getTime() - run.started.getTime();
    report.rto_basis = run.o.canaries.length ? 'first-canary-read' : 'cluster-restored';
    for (const p of report.phases) {
      const s = Date.parse(p.started_at);
      const f = Math.min(Date.parse(p.finished_at), rtoEnd.getTime());
      if (s < rtoEnd.getTime()) p.share_of_rto = Math.max(0, f - s) / report.rto_ms;
    }
  }
}

function stamp(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}
