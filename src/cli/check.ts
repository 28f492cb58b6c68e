import { writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { openStore, type BackupStore } from '../backup/stores/store.js';
import { renderHtml, renderMarkdown, sortedChecks, summaryLine } from '../check/render.js';
import { runCheck } from '../check/run-check.js';
import { readDrillReports } from '../drill/drill-report.js';
import type { Severity } from '../check/check-result.js';
import { InputError } from '../core/errors.js';
import { openNodeHost } from '../ssh/open-host.js';
import { out, table } from '../ui/output.js';
import { readVaultEnv } from '../vault/env.js';
import { connectCluster } from './cluster-from-inventory.js';
import { defaultDrillReportDir } from './drill.js';

interface CheckCliOptions {
  /** Without one: the cluster at VAULT_ADDR / BAO_ADDR (API checks only: no hosts, no stores). */
  inventory?: string;
  cluster?: string;
  json?: boolean;
  markdown?: string;
  html?: string;
  failOn?: string;
  drillDir?: string;
  trustOnFirstUse?: boolean;
  /** version.support without asking upstream: the cached release list, else the bundled one. */
  offline?: boolean;
}

/** `vaultops check`: exit 0 passed; 1 a check at or above --fail-on failed; 3 one could not be checked. */
export async function checkCommand(o: CheckCliOptions): Promise<void> {
  const failOn = (o.failOn ?? 'critical') as Severity;
  if (failOn !== 'warning' && failOn !== 'critical')
    throw new InputError(`--fail-on ${o.failOn} is not a severity.`, {
      hint: 'Use --fail-on critical (default) or --fail-on warning.',
    });
  const conn = await connectCluster(o.inventory, o.cluster);
  let stores: BackupStore[] = [];
  try {
    const env = readVaultEnv();
    const base = conn.inventoryFile === undefined ? process.cwd() : dirname(resolve(conn.inventoryFile));
    stores = Object.entries(conn.spec.stores ?? {}).map(([name, raw]) => openStore(name, raw, base));
    const report = await runCheck({
      clusterName: conn.name,
      spec: conn.spec,
      cluster: conn.client,
      tls: {
        caCert: conn.spec.tls?.ca_cert ?? env.tls.caCert,
        serverName: conn.spec.tls?.server_name ?? env.tls.serverName,
        skipVerify: false,
      },
      stores,
      drillDir: resolve(o.drillDir ?? defaultDrillReportDir(conn.name)),
      failOn,
      readDrillReports,
      openHost: (n) => openNodeHost(n, { trustOnFirstUse: o.trustOnFirstUse }),
      releases: { offline: o.offline === true },
    });
    if (o.markdown) await writeFile(o.markdown, renderMarkdown(report));
    if (o.html) await writeFile(o.html, renderHtml(report));
    if (o.json) out.json(report);
    else {
      const rows = sortedChecks(report).map((c) => [
        c.status === 'pass' ? 'PASS' : c.status === 'fail' ? 'FAIL' : c.status === 'unknown' ? 'UNKNOWN' : 'skip',
        c.severity,
        c.id,
        c.target,
        c.found.length > 110 ? `${c.found.slice(0, 107)}...` : c.found,
      ]);
      for (const line of table(rows, ['STATUS', 'SEVERITY', 'CHECK', 'TARGET', 'FOUND'])) out.line(line);
      out.line();
      const failed = sortedChecks(report).filter((c) => c.status === 'fail' || c.status === 'unknown');
      const fixes = [...new Map(failed.map((c) => [c.id, c.fix])).entries()];
      if (fixes.length) {
        out.line('How to fix:');
        for (const [id, fix] of fixes) out.line(`  ${id}: ${fix}`);
        out.line();
      }
      out.line(summaryLine(report));
    }
    process.exitCode = report.exit_code;
  } finally {
    // SFTP stores hold SSH connections that would keep the process alive.
    for (const s of stores) s.close?.();
    await conn.client.release();
  }
}
