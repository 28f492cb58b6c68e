import { ExitCode } from '../core/exit-codes.js';
import { isVaultopsError, VaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import { resolveSecretString } from '../secrets/refs.js';
import { pruneStore, takeBackup, type BackupResult, type PruneResult } from '../backup/take-backup.js';
import { sendWebhook, writePromTextfile, type BackupReport } from '../backup/notify.js';
import { hasRetentionRule } from '../backup/retention.js';
import { err, out, progressPrinter } from '../ui/output.js';
import { connectCluster } from './cluster-from-inventory.js';
import { storeFromOptions, type StoreOptions } from './backup-store-option.js';
import type { BackupStore } from '../backup/store.js';

interface BackupOptions extends StoreOptions {
  inventory: string;
  cluster?: string;
  json?: boolean;
  prune?: boolean;
  notifyUrl?: string;
  notifyOn?: string;
  textfile?: string;
  quiet?: boolean;
}

/**
 * `vaultops backup`: one verified snapshot, then retention, then the notifications. Built for cron:
 * nothing is asked, the exit code says what happened (0 stored and verified; 1 the snapshot failed
 * or was invalid; 2 bad input; 3 the cluster could not be reached / has no leader).
 */
export async function backupCommand(o: BackupOptions): Promise<void> {
  const started = new Date();
  const log = progressPrinter({ quiet: o.quiet === true });
  const notifyOn = new Set((o.notifyOn ?? 'failure').split(',').map((s) => s.trim()));
  const notifyUrl = o.notifyUrl === undefined ? undefined : /^(env|file|cmd):/.test(o.notifyUrl) ? await resolveSecretString(o.notifyUrl) : o.notifyUrl;
  let clusterName = o.cluster ?? '(unknown)';
  let result: BackupResult | undefined;
  let pruned: PruneResult | undefined;
  let failure: unknown;
  let pruneWarning: string | undefined;
  const conn = await connectCluster(o.inventory, o.cluster).catch((e: unknown) => {
    failure = e;
    return undefined;
  });
  if (conn) {
    clusterName = conn.name;
    let store: BackupStore | undefined;
    try {
      store = storeFromOptions(o, conn);
      result = await takeBackup({ cluster: conn.client, clusterName: conn.name, flavor: conn.spec.flavor, keySet: conn.spec.unseal?.key_set, store, log });
      if (o.prune !== false && hasRetentionRule(store.retention)) {
        // Only now, after the new snapshot is verified and committed, may older ones go.
        try {
          pruned = await pruneStore(store, { dryRun: false, cluster: conn.name });
          for (const r of pruned.decision.remove) log(`Retention removed ${r.entry.name} (${r.why}).`);
        } catch (e) {
          pruneWarning = `retention could not run: ${(e as Error).message}`;
        }
      }
    } catch (e) {
      failure = e;
    } finally {
      store?.close?.();
      conn.client.close();
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
  if (o.textfile) await writePromTextfile(o.textfile, report).catch((e: unknown) => err.line(`warning: ${(e as Error).message}`));
  if (notifyUrl && notifyOn.has(report.result)) await sendWebhook(notifyUrl, report).catch((e: unknown) => err.line(`warning: ${(e as Error).message}`));
  if (pruneWarning) err.line(`warning: ${pruneWarning}`);
  if (o.json) {
    out.json({
      result: report.result,
      exit_code: exitCode,
      cluster: clusterName,
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
      process.exitCode = exitCode;
      return;
    }
    throw failure instanceof Error ? failure : new VaultopsError(String(failure));
  }
  process.exitCode = ExitCode.ok;
}
