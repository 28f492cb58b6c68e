import { join } from 'node:path';
import { sendWebhook } from '../notify/notify.js';
import { writeDrillReports } from './drill-report.js';
import type { DrillReport } from './run-drill.js';

/** Where a cluster's drill reports go by default; `vaultops check` looks there for the last passed drill. */
export function drillReportDir(stateDirPath: string, cluster: string): string {
  return join(stateDirPath, 'drills', cluster);
}

/**
 * After a drill: the three reports, then the webhook (failures by default). A webhook that fails is
 * returned as a warning and never changes the drill's own result.
 */
export async function finishDrill(
  report: DrillReport,
  o: { reportDir: string; notifyUrl?: string | undefined; notifyOn?: ReadonlySet<string> | undefined },
): Promise<{ files: { json: string; markdown: string; html: string }; warning?: string | undefined }> {
  const files = await writeDrillReports(report, o.reportDir);
  const outcome = report.result === 'passed' ? 'success' : 'failure';
  let warning: string | undefined;
  if (o.notifyUrl && (o.notifyOn ?? new Set(['failure'])).has(outcome)) {
    const secs = (ms: number | undefined) => (ms === undefined ? undefined : ms / 1000);
    await sendWebhook(o.notifyUrl, {
      kind: 'drill',
      cluster: report.cluster,
      result: outcome,
      startedAt: new Date(report.started_at),
      finishedAt: new Date(report.finished_at),
      file: report.backup?.file,
      location: report.backup?.location,
      size: report.backup?.size,
      sha256: report.backup?.sha256,
      raftIndex: report.backup?.raft_index,
      error: report.error === undefined ? undefined : `${report.failed_phase ?? ''}: ${report.error}`,
      exitCode: report.exit_code,
      extra: {
        drill_id: report.id,
        rto_seconds: secs(report.rto_ms),
        rpo_seconds: secs(report.rpo_ms),
        failed_phase: report.failed_phase,
        report: files.html,
      },
    }).catch((e: unknown) => {
      warning = (e as Error).message;
    });
  }
  return { files, warning };
}
