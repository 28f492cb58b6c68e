import { readFile } from 'node:fs/promises';
import { VaultopsError } from '../core/errors.js';
import { ProxyError } from '../vault/proxy.js';
import { requestVia } from '../vault/proxied-request.js';
import { redactor } from '../core/redact.js';
import { writeFileAtomic } from '../core/atomic-write.js';

/** What one unattended backup run reports to the outside world (webhook, Prometheus textfile). */
export interface BackupReport {
  cluster: string;
  result: 'success' | 'failure';
  startedAt: Date;
  finishedAt: Date;
  file?: string | undefined;
  location?: string | undefined;
  size?: number | undefined;
  sha256?: string | undefined;
  raftIndex?: number | undefined;
  error?: string | undefined;
  exitCode: number;
  /** What ran: `backup` (default) or `drill` (src/drill reuses this webhook). */
  kind?: 'backup' | 'drill' | undefined;
  /** Extra fields for the JSON body (a drill's RTO, RPO, failed phase). */
  extra?: Record<string, unknown> | undefined;
}

/**
 * POSTs the report as JSON. The error text is redacted; a webhook that fails is reported to the
 * caller (who warns) and never changes the backup's own result.
 */
export async function sendWebhook(url: string, report: BackupReport, timeoutMs = 10_000): Promise<void> {
  const kind = report.kind ?? 'backup';
  const body = JSON.stringify(
    redactor.redactValue({
      event: `vaultops.${kind}`,
      result: report.result,
      cluster: report.cluster,
      started_at: report.startedAt.toISOString(),
      finished_at: report.finishedAt.toISOString(),
      duration_seconds: (report.finishedAt.getTime() - report.startedAt.getTime()) / 1000,
      file: report.file,
      location: report.location,
      size: report.size,
      sha256: report.sha256,
      raft_index: report.raftIndex,
      error: report.error,
      exit_code: report.exitCode,
      ...report.extra,
      // Slack/Mattermost-compatible incoming webhooks show `text`.
      text:
        report.result === 'success'
          ? `vaultops ${kind} of ${report.cluster} succeeded: ${report.file} (${report.size} bytes)`
          : `vaultops ${kind} of ${report.cluster} FAILED: ${report.error ?? 'unknown error'}`,
    }),
  );
  let status: number;
  try {
    const headers = { 'content-type': 'application/json' };
    status = (await requestVia(new URL(url), { method: 'POST', headers, body, timeoutMs })).status;
  } catch (e) {
    // The URL may carry a token (Slack-style); name only its origin. A proxy failure names the proxy.
    if (e instanceof ProxyError) throw new VaultopsError(`Webhook ${safeOrigin(url)}: ${e.message}`, { hint: e.hint });
    throw new VaultopsError(`Webhook ${safeOrigin(url)} could not be reached: ${(e as Error).message}.`);
  }
  if (status < 200 || status > 299) throw new VaultopsError(`Webhook ${safeOrigin(url)} answered ${status}.`);
}

function safeOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
}

/** The series a backup run writes, in file order: name and HELP text. */
const METRICS = [
  ['vaultops_backup_last_run_timestamp_seconds', 'When the last backup run finished.'],
  ['vaultops_backup_last_result', '1 if the last backup run succeeded, 0 if it failed.'],
  ['vaultops_backup_last_duration_seconds', 'Duration of the last backup run.'],
  ['vaultops_backup_last_success_timestamp_seconds', 'When the last verified backup finished.'],
  ['vaultops_backup_last_size_bytes', 'Size of the last verified backup.'],
] as const;

/**
 * Writes node_exporter textfile-collector metrics atomically (temp file + rename, as its docs ask).
 * A failed run keeps the previous last-success timestamp and size, so an alert on
 * `time() - vaultops_backup_last_success_timestamp_seconds` keeps working.
 *
 * The file belongs to one run: it holds a series per cluster of that run (a fleet run passes every
 * cluster's report) and nothing else. Each metric's HELP/TYPE comes once, followed by all its
 * samples: the text format wants a metric family in one group, and node_exporter rejects a file
 * that repeats one.
 */
export async function writePromTextfile(path: string, reports: BackupReport | readonly BackupReport[]): Promise<void> {
  const list = Array.isArray(reports) ? (reports as readonly BackupReport[]) : [reports as BackupReport];
  const previous = await readFile(path, 'utf8').catch(() => '');
  const samples = new Map<string, string[]>(METRICS.map(([m]) => [m, []]));
  for (const report of list) {
    const label = `cluster="${report.cluster.replace(/["\\\n]/g, '_')}"`;
    const prev = (metric: string): string | undefined => {
      const m = new RegExp(`^${metric}\\{${label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\} (\\S+)$`, 'm').exec(
        previous,
      );
      return m?.[1];
    };
    const ok = report.result === 'success';
    const end = report.finishedAt.getTime() / 1000;
    const values: Record<(typeof METRICS)[number][0], string | undefined> = {
      vaultops_backup_last_run_timestamp_seconds: String(end),
      vaultops_backup_last_result: ok ? '1' : '0',
      vaultops_backup_last_duration_seconds: String((report.finishedAt.getTime() - report.startedAt.getTime()) / 1000),
      vaultops_backup_last_success_timestamp_seconds: ok
        ? String(end)
        : prev('vaultops_backup_last_success_timestamp_seconds'),
      vaultops_backup_last_size_bytes: ok ? String(report.size ?? 0) : prev('vaultops_backup_last_size_bytes'),
    };
    for (const [metric] of METRICS) {
      const v = values[metric];
      if (v !== undefined) samples.get(metric)!.push(`${metric}{${label}} ${v}`);
    }
  }
  const lines: string[] = [];
  for (const [metric, help] of METRICS) {
    const s = samples.get(metric)!;
    if (s.length === 0) continue;
    lines.push(`# HELP ${metric} ${help}`, `# TYPE ${metric} gauge`, ...s);
  }
  try {
    await writeFileAtomic(path, `${lines.join('\n')}\n`);
  } catch (e) {
    throw new VaultopsError(
      `Cannot write the Prometheus textfile ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}.`,
    );
  }
}
