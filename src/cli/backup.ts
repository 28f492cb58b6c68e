import { ExitCode } from '../core/exit-codes.js';
import { InputError, isVaultopsError, VaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import { loadInventory, selectCluster } from '../inventory/load.js';
import { resolveSecretString } from '../secrets/refs.js';
import { pruneStore, backupOf, type BackupResult, type PruneResult } from '../backup/take-backup.js';
import { sendWebhook, writePromTextfile, type BackupReport } from '../notify/notify.js';
import { hasRetentionRule } from '../backup/stores/retention.js';
import { fleetExitCode, parseConcurrency, runLimited } from '../backup/fleet.js';
import { err, out, progressPrinter } from '../ui/output.js';
import { createProgress } from '../ui/progress.js';
import { connectCluster } from './cluster-from-inventory.js';
import { storeFromOptions, type StoreOptions } from './backup-store-option.js';
import type { BackupStore } from '../backup/stores/store.js';
import { encryptionSpecFromFlags } from '../backup/crypto/encryption.js';
import type { Door } from '../playbook/door.js';
import { openDoorFor } from './through-door.js';
import { catchInterrupts } from './interrupts.js';

interface BackupOptions extends StoreOptions {
  /** One file, or several when `-i` is repeated. */
  inventory: string | string[];
  /** One name, or several when `--cluster` is repeated. */
  cluster?: string | string[] | undefined;
  allClusters?: boolean;
  concurrency?: string;
  json?: boolean;
  prune?: boolean;
  notifyUrl?: string;
  notifyOn?: string;
  textfile?: string;
  quiet?: boolean;
  /** --encrypt-to: age recipients or recipient/public-key files; overrides the store's encrypt:. */
  encryptTo?: string[];
  breakLock?: boolean;
}

/** One cluster to back up: which inventory names it, and its name there (undefined: the only one). */
interface Target {
  /** Undefined: the cluster at VAULT_ADDR / BAO_ADDR. */
  inventory: string | undefined;
  cluster: string | undefined;
}

/** What happened to one cluster: its report for the outside world and what the CLI prints. */
interface ClusterOutcome {
  report: BackupReport;
  result: BackupResult | undefined;
  pruned: PruneResult | undefined;
  pruneWarning: string | undefined;
  failure: unknown;
  inventory: string | undefined;
}

/**
 * `vaultops backup`: one verified snapshot, then retention, then the notifications. Built for cron:
 * nothing is asked, the exit code says what happened (0 stored and verified; 1 the snapshot failed
 * or was invalid; 2 bad input; 3 the cluster could not be reached / has no leader).
 *
 * With `--all-clusters`, several `--cluster` or several `-i`, it backs up a fleet: every cluster
 * on its own (leader, store, retention, webhook), `--concurrency` at a time, one failure never
 * stopping the others; exit code per `fleetExitCode`.
 */
export async function backupCommand(o: BackupOptions): Promise<void> {
  const inventories = asList(o.inventory);
  const clusters = asList(o.cluster);
  const concurrency = parseConcurrency(o.concurrency);
  if (concurrency === undefined)
    throw new InputError(`--concurrency ${o.concurrency} is not a whole number >= 1.`, {
      hint: 'Pass how many clusters to back up at once, e.g. --concurrency 2.',
    });
  if (o.allClusters && clusters.length > 0) throw new InputError('Pass either --all-clusters or --cluster, not both.');
  if (inventories.length === 0 && (o.allClusters || clusters.length > 0))
    throw new InputError('Say which inventory: -i FILE.');
  // Checked once, before any cluster is asked for a snapshot.
  if (o.encryptTo?.length) encryptionSpecFromFlags(o.encryptTo);
  if (!o.allClusters && inventories.length <= 1 && clusters.length <= 1)
    return singleBackup(o, { inventory: inventories[0], cluster: clusters[0] });
  return fleetBackup(o, selectTargets(inventories, clusters, o.allClusters === true), concurrency);
}

/** The one-cluster form, unchanged since it shipped: one path line (or one JSON object), the cluster's own exit code. */
async function singleBackup(o: BackupOptions, target: Target): Promise<void> {
  const log = progressPrinter({ quiet: o.quiet === true });
  const notifyOn = notifySet(o);
  const notifyUrl = await resolveNotifyUrl(o);
  // Ctrl-C, or a scheduler's SIGTERM: the backup stops at once and removes its partial file.
  const interrupts = catchInterrupts('stopping the backup (the partial file is removed)');
  const c = await backupCluster(target, o, log, interrupts.signal, true).finally(() => interrupts.dispose());
  const { report, result, pruned, failure } = c;
  if (o.textfile)
    await writePromTextfile(o.textfile, report).catch((e: unknown) => err.line(`warning: ${(e as Error).message}`));
  if (notifyUrl && notifyOn.has(report.result))
    await sendWebhook(notifyUrl, report).catch((e: unknown) => err.line(`warning: ${(e as Error).message}`));
  if (c.pruneWarning) err.line(`warning: ${c.pruneWarning}`);
  if (o.json) {
    out.json({
      result: report.result,
      exit_code: report.exitCode,
      cluster: report.cluster,
      file: result ? `${result.location}/${result.name}` : undefined,
      manifest: result?.manifest,
      retention: pruned ? { removed: pruned.removed, kept: pruned.decision.keep.map((k) => k.entry.name) } : undefined,
      error: report.error,
    });
  } else if (result) {
    out.line(`${result.location}/${result.name}`);
  }
  if (failure !== undefined) {
    if (o.json) {
      // stdout holds the JSON report; the reason still goes to stderr for cron mail and logs.
      err.line(`error: ${report.error ?? 'backup failed'}`);
      process.exitCode = report.exitCode;
      return;
    }
    throw failure instanceof Error ? failure : new VaultopsError(String(failure));
  }
  process.exitCode = ExitCode.ok;
}

/**
 * The fleet form. Every input (inventories, cluster names, flags, the webhook reference) is checked
 * before the first backup starts; from then on each cluster stands alone. Webhooks go out as each
 * cluster finishes; the textfile is written once at the end with every cluster's series.
 * SIGINT/SIGTERM (Ctrl-C, systemd's TimeoutStartSec) aborts the running backups, which remove their
 * partial files, and starts no new one.
 */
async function fleetBackup(o: BackupOptions, targets: Target[], concurrency: number): Promise<void> {
  const log = progressPrinter({ quiet: o.quiet === true });
  const notifyOn = notifySet(o);
  const notifyUrl = await resolveNotifyUrl(o);
  const started = new Date();
  const interrupts = catchInterrupts('stopping the running backups (partial files are removed)');
  log(
    `Backing up ${targets.length} clusters, ${Math.min(concurrency, targets.length)} at a time: ${targets.map((t) => t.cluster).join(', ')}.`,
  );
  let settled: PromiseSettledResult<ClusterOutcome>[];
  try {
    settled = await runLimited(
      targets,
      concurrency,
      async (target) => {
        const c = await backupCluster(target, o, log, interrupts.signal);
        if (notifyUrl && notifyOn.has(c.report.result))
          await sendWebhook(notifyUrl, c.report).catch((e: unknown) =>
            err.line(`warning: ${c.report.cluster}: ${(e as Error).message}`),
          );
        return c;
      },
      interrupts.signal,
    );
  } finally {
    interrupts.dispose();
  }
  const finished = new Date();
  // backupCluster catches everything; a rejection here is a cluster never started (interrupted) or a bug.
  const outcomes = settled.map((s, i) =>
    s.status === 'fulfilled' ? s.value : failedOutcome(targets[i]!, s.reason, started),
  );
  if (o.textfile)
    await writePromTextfile(
      o.textfile,
      outcomes.map((c) => c.report),
    ).catch((e: unknown) => err.line(`warning: ${(e as Error).message}`));
  for (const c of outcomes) if (c.pruneWarning) err.line(`warning: ${c.report.cluster}: ${c.pruneWarning}`);
  const exitCode = fleetExitCode(
    outcomes.map((c) => c.report.exitCode),
    interrupts.signal.aborted,
  );
  const failed = outcomes.filter((c) => c.failure !== undefined);
  if (o.json) {
    out.json({
      result: failed.length === 0 ? 'success' : 'failure',
      exit_code: exitCode,
      concurrency,
      started_at: started.toISOString(),
      finished_at: finished.toISOString(),
      duration_seconds: seconds(started, finished),
      succeeded: outcomes.filter((c) => c.failure === undefined).map((c) => c.report.cluster),
      failed: failed.map((c) => c.report.cluster),
      clusters: outcomes.map((c) => ({
        cluster: c.report.cluster,
        inventory: c.inventory,
        result: c.report.result,
        exit_code: c.report.exitCode,
        started_at: c.report.startedAt.toISOString(),
        finished_at: c.report.finishedAt.toISOString(),
        duration_seconds: seconds(c.report.startedAt, c.report.finishedAt),
        file: c.result ? `${c.result.location}/${c.result.name}` : undefined,
        manifest: c.result?.manifest,
        retention: c.pruned
          ? { removed: c.pruned.removed, kept: c.pruned.decision.keep.map((k) => k.entry.name) }
          : undefined,
        error: c.report.error,
        hint: hintOf(c.failure),
      })),
    });
  } else {
    const width = Math.max(...outcomes.map((c) => c.report.cluster.length));
    for (const c of outcomes) {
      const name = c.report.cluster.padEnd(width);
      const took = `${seconds(c.report.startedAt, c.report.finishedAt).toFixed(1)} s`;
      if (c.result)
        out.line(
          `ok      ${name}  ${c.result.location}/${c.result.name}  ${megabytes(c.result.manifest.size)} in ${took}`,
        );
      else out.line(`FAILED  ${name}  exit ${c.report.exitCode} after ${took}: ${c.report.error ?? 'backup failed'}`);
    }
  }
  if (failed.length > 0) {
    // stdout holds the per-cluster lines (or the JSON); the summary and hints go to stderr for cron mail and logs.
    err.line(
      `error: ${failed.length} of ${outcomes.length} clusters failed: ${failed.map((c) => `${c.report.cluster} (exit ${c.report.exitCode})`).join(', ')}.`,
    );
    for (const c of failed) {
      const hint = hintOf(c.failure);
      if (hint) err.line(`hint: ${c.report.cluster}: ${hint}`);
    }
  }
  process.exitCode = exitCode;
}

/**
 * One cluster, start to end: connect, snapshot into its store, retention. Never throws: whatever
 * went wrong is the outcome's `failure`, with the exit code it stands for.
 */
async function backupCluster(
  target: Target,
  o: BackupOptions,
  log: (m: string) => void,
  signal: AbortSignal,
  showProgress = false,
): Promise<ClusterOutcome> {
  const started = new Date();
  let clusterName = target.cluster ?? '(unknown)';
  let result: BackupResult | undefined;
  let pruned: PruneResult | undefined;
  let failure: unknown;
  let pruneWarning: string | undefined;
  const conn = await connectCluster(target.inventory, target.cluster).catch((e: unknown) => {
    failure = e;
    return undefined;
  });
  if (conn) {
    clusterName = conn.name;
    let store: BackupStore | undefined;
    let door: Door | undefined;
    try {
      // A backup only reads the cluster: it shares the lock with other readers, but never runs
      // during a restore or an upgrade of this cluster (exit 4, nothing written).
      door = await openDoorFor(conn, { operation: 'backup', mode: 'shared', breakLock: o.breakLock }, signal);
      store = storeFromOptions(o, conn);
      if (o.encryptTo?.length) store.encryption = encryptionSpecFromFlags(o.encryptTo);
      // One cluster: its bytes, rate and time on stderr (a fleet's parallel transfers would fight over one line).
      const progress = showProgress
        ? createProgress({ label: `snapshot of ${conn.name}`, quiet: o.quiet === true })
        : undefined;
      const say = progress ? (m: string) => (progress.clear(), log(m)) : log;
      try {
        result = await backupOf({ cluster: conn.client, clusterName: conn.name, spec: conn.spec }, store, {
          log: say,
          signal: door.signal,
          onBytes: progress ? (n: number) => progress.add(n) : undefined,
        });
      } finally {
        progress?.done();
      }
      if (o.prune !== false && hasRetentionRule(store.retention)) {
        // Only now, after the new snapshot is verified and committed, may older ones go.
        try {
          pruned = await pruneStore(store, { dryRun: false, cluster: conn.name, justTaken: result.name });
          for (const r of pruned.decision.remove) log(`Retention removed ${r.entry.name} (${r.why}).`);
          const bad = pruned.decision.unverified.map((u) => `${u.entry.name} (${u.why})`);
          if (bad.length)
            pruneWarning = `retention did not count ${bad.length === 1 ? 'a backup that does' : `${bad.length} backups that do`} not verify, and left ${bad.length === 1 ? 'it' : 'them'} in place: ${bad.join('; ')}`;
        } catch (e) {
          pruneWarning = `retention could not run: ${(e as Error).message}`;
        }
      }
    } catch (e) {
      failure = e;
    } finally {
      store?.close?.();
      await door?.close();
      await conn.client.release();
    }
  }
  const finished = new Date();
  const exitCode = failure === undefined ? ExitCode.ok : isVaultopsError(failure) ? failure.exitCode : ExitCode.failed;
  const report: BackupReport = {
    cluster: clusterName,
    result: failure === undefined ? 'success' : 'failure',
    startedAt: started,
    finishedAt: finished,
    file: result?.name,
    location: result?.location,
    size: result?.manifest.size,
    sha256: result?.manifest.sha256,
    raftIndex: result?.manifest.raft.index,
    error: failure === undefined ? undefined : redactor.redact((failure as Error).message ?? String(failure)),
    exitCode,
  };
  return { report, result, pruned, pruneWarning, failure, inventory: target.inventory };
}

function failedOutcome(target: Target, failure: unknown, at: Date): ClusterOutcome {
  const now = new Date();
  return {
    report: {
      cluster: target.cluster ?? '(unknown)',
      result: 'failure',
      startedAt: now < at ? now : at,
      finishedAt: now,
      error: redactor.redact((failure as Error)?.message ?? String(failure)),
      exitCode: isVaultopsError(failure) ? failure.exitCode : ExitCode.failed,
    },
    result: undefined,
    pruned: undefined,
    pruneWarning: undefined,
    failure,
    inventory: target.inventory,
  };
}

/**
 * Which clusters a fleet run backs up, resolved before anything starts (a wrong name is bad input
 * for the whole run, exit 2, nothing backed up). Order: as named with --cluster; with --all-clusters
 * or without --cluster, inventory by inventory in the order of -i, clusters in file order. Names
 * must be unique across inventories: they name the snapshot files, manifests and metric labels.
 */
function selectTargets(inventories: string[], clusters: string[], all: boolean): Target[] {
  const found = new Map<string, string>();
  const order: string[] = [];
  for (const file of inventories) {
    const inv = loadInventory(file);
    const names = all || clusters.length > 0 ? Object.keys(inv.data.clusters) : [selectCluster(inv, undefined).name];
    for (const name of names) {
      if (!all && clusters.length > 0 && !clusters.includes(name)) continue;
      const other = found.get(name);
      if (other !== undefined)
        throw new InputError(`Cluster ${name} is in both ${other} and ${file}.`, {
          hint: 'Cluster names name the snapshot files and metrics, so they must be unique across the inventories of one run: rename one.',
        });
      found.set(name, file);
      order.push(name);
    }
  }
  if (clusters.length > 0) {
    const missing = clusters.filter((c) => !found.has(c));
    if (missing.length > 0) {
      const known = inventories.flatMap((f) => Object.keys(loadInventory(f).data.clusters));
      throw new InputError(`No cluster ${missing.map((m) => `"${m}"`).join(', ')} in ${inventories.join(', ')}.`, {
        hint: `Clusters: ${known.join(', ')}.`,
      });
    }
    const twice = clusters.filter((c, i) => clusters.indexOf(c) !== i);
    if (twice.length > 0) throw new InputError(`--cluster ${twice[0]} is given twice.`);
  }
  const names = clusters.length > 0 ? clusters : order;
  return names.map((name) => ({ inventory: found.get(name)!, cluster: name }));
}

function asList(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

function notifySet(o: BackupOptions): Set<string> {
  return new Set((o.notifyOn ?? 'failure').split(',').map((s) => s.trim()));
}

async function resolveNotifyUrl(o: BackupOptions): Promise<string | undefined> {
  return o.notifyUrl === undefined
    ? undefined
    : /^(env|file|cmd):/.test(o.notifyUrl)
      ? await resolveSecretString(o.notifyUrl)
      : o.notifyUrl;
}

function hintOf(failure: unknown): string | undefined {
  return isVaultopsError(failure) && failure.hint ? redactor.redact(failure.hint) : undefined;
}

function seconds(a: Date, b: Date): number {
  return (b.getTime() - a.getTime()) / 1000;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
