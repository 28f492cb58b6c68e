import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LocalDirStore } from '../backup/stores/local-dir-store.js';
import type { BackupStore } from '../backup/stores/store.js';
import { InputError } from '../core/errors.js';
import { formatMs } from '../drill/drill-report.js';
import { drillReportDir, finishDrill } from '../drill/finish-drill.js';
import { runDrill } from '../drill/run-drill.js';
import { stateDir } from '../core/state-dir.js';
import { resolveSecretString } from '../secrets/refs.js';
import { makePrompter } from '../ui/prompter.js';
import { err, out, progressPrinter } from '../ui/output.js';
import { connectCluster } from './cluster-from-inventory.js';
import { throughDoor } from './through-door.js';
import { storeFromOptions } from './backup-store-option.js';
import { keySetFromInventory } from './restore.js';
import { identityFromOptions, type IdentityOptions } from './backup-identity-option.js';
import { restoreSnapshot } from '../backup/restore-snapshot.js';

interface DrillCliOptions extends IdentityOptions {
  inventory: string;
  cluster?: string;
  from?: string;
  reportDir?: string;
  version?: string;
  notifyUrl?: string;
  notifyOn?: string;
  timeout?: string;
  nonInteractive?: boolean;
  quiet?: boolean;
  json?: boolean;
  breakLock?: boolean;
}

/** Where a cluster's drill reports go by default; `vaultops check` looks there for the last passed drill. */
export function defaultDrillReportDir(cluster: string, env: NodeJS.ProcessEnv = process.env): string {
  return drillReportDir(stateDir(env), cluster);
}

/**
 * `vaultops drill`: exit 0 passed; otherwise the failed phase's code (1 failed, 2 bad input, 3
 * unreachable...). The reports are written either way, and a failure is sent to the webhook.
 */
export async function drillCommand(o: DrillCliOptions): Promise<void> {
  const conn = await connectCluster(o.inventory, o.cluster);
  const log = progressPrinter({ quiet: o.quiet === true || o.json === true });
  const notifyOn = new Set((o.notifyOn ?? 'failure').split(',').map((s) => s.trim()));
  const notifyUrl =
    o.notifyUrl === undefined
      ? undefined
      : /^(env|file|cmd):/.test(o.notifyUrl)
        ? await resolveSecretString(o.notifyUrl)
        : o.notifyUrl;
  const timeoutMs = o.timeout === undefined ? undefined : Number(o.timeout) * 1000;
  if (timeoutMs !== undefined && !(timeoutMs > 0))
    throw new InputError(`--timeout ${o.timeout} is not a number of seconds.`);
  const reportDir = resolve(o.reportDir ?? defaultDrillReportDir(conn.name));
  let store: BackupStore | undefined;
  try {
    store = storeFor(o.from, conn);
    const from = store;
    // The drill only reads the live cluster (its canaries) and its store: it shares the lock with
    // other readers, and never runs while a restore or an upgrade changes the cluster.
    const { report, error } = await throughDoor(
      conn,
      {
        operation: 'drill',
        mode: 'shared',
        breakLock: o.breakLock,
        onInterrupt: 'the drill runs to its end and tears its scratch cluster down',
      },
      () =>
        runDrill({
          clusterName: conn.name,
          flavor: conn.spec.flavor,
          canaries: conn.spec.canaries ?? [],
          store: from,
          keysFor: (label) => keySetFromInventory(conn.inventoryFile, conn.name, label),
          restore: restoreSnapshot,
          liveCluster: conn.client,
          scratchParent: join(stateDir(), 'drills', '.scratch'),
          prompter: makePrompter({ nonInteractive: true }),
          identity: identityFromOptions(o, from, makePrompter({ nonInteractive: true })),
          version: o.version,
          restoreTimeoutMs: timeoutMs,
          log,
        }),
    );
    const { files, warning } = await finishDrill(report, { reportDir, notifyUrl, notifyOn });
    if (warning) err.line(`warning: ${warning}`);
    if (o.json) out.json({ ...report, reports: files });
    else {
      out.line(
        `Drill of ${conn.name}: ${report.result.toUpperCase()}${report.failed_phase ? ` (stopped in ${report.failed_phase})` : ''}. RTO ${formatMs(report.rto_ms)}, RPO ${formatMs(report.rpo_ms)}.`,
      );
      for (const p of report.phases)
        out.line(
          `  ${p.result === 'ok' ? 'ok    ' : 'FAILED'} ${p.title.padEnd(34)} ${formatMs(p.duration_ms).padStart(9)}${p.share_of_rto !== undefined ? `  ${(p.share_of_rto * 100).toFixed(0).padStart(3)} % of RTO` : ''}`,
        );
      out.line(`Reports: ${files.json}, ${files.markdown}, ${files.html}`);
    }
    if (error) throw error;
  } finally {
    // An SFTP store holds an SSH connection that would keep the process alive.
    store?.close?.();
    await conn.client.release();
  }
}

/** `--from NAME` (a store of the cluster), `--from DIR` (a folder of backups), else the cluster's only store. */
function storeFor(from: string | undefined, conn: Parameters<typeof storeFromOptions>[1] & object): BackupStore {
  if (from !== undefined && !(conn.spec.stores && from in conn.spec.stores)) {
    if (!existsSync(from) || !statSync(from).isDirectory()) {
      throw new InputError(`--from ${from} is neither a store of ${conn.name} nor a directory.`, {
        hint: `Stores: ${Object.keys(conn.spec.stores ?? {}).join(', ') || '(none)'}; or give the folder the backups are in.`,
      });
    }
    return new LocalDirStore(resolve(from));
  }
  return storeFromOptions({ store: from }, conn);
}
