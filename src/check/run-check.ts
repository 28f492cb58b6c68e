import type { BackupStore } from '../backup/stores/store.js';
import { ExitCode } from '../core/exit-codes.js';
import type { ClusterSpec } from '../inventory/schema.js';
import type { Host } from '../ssh/host.js';
import type { ClusterClient } from '../vault/cluster.js';
import type { TlsSettings } from '../vault/tls.js';
import { runApiChecks, type DrillReportSummary } from './api-checks.js';
import type { ReleaseListOptions } from './release-list.js';
import { runHostChecks, unknownHostChecks } from './host-checks.js';
import { runLoadBalancerChecks } from './lb-checks.js';
import { SEVERITY_RANK, type CheckResult, type Severity } from './check-result.js';

export interface CheckReport {
  format: 'vaultops-check/1';
  cluster: string;
  checked_at: string;
  fail_on: Severity;
  summary: { pass: number; fail: number; unknown: number; skip: number; failing: number };
  result: 'passed' | 'failed' | 'incomplete';
  exit_code: number;
  checks: CheckResult[];
}

export interface CheckInput {
  clusterName: string;
  spec: ClusterSpec;
  cluster: ClusterClient;
  tls: TlsSettings;
  stores: BackupStore[];
  drillDir: string;
  /** Reads the drill reports in a folder, newest first (see ApiCheckInput). */
  readDrillReports: (dir: string) => Promise<DrillReportSummary[]>;
  failOn: Severity;
  /** Opens a node's SSH host; rejects when it cannot be reached (its checks become unknown). */
  openHost(node: ClusterSpec['nodes'][number]): Promise<Host>;
  now?: Date | undefined;
  /** Where version.support's release list comes from (see release-list.ts). */
  releases?: ReleaseListOptions | undefined;
}

/**
 * The readiness check: API checks, then host checks over SSH for nodes with an `ssh:` block, one
 * host at a time. Exit code for CI: 1 when a check of at least `failOn` severity failed; else 3 when
 * one of that severity could not be checked (unknown is never passed); else 0.
 */
export async function runCheck(i: CheckInput): Promise<CheckReport> {
  const now = i.now ?? new Date();
  const checks = await runApiChecks({
    clusterName: i.clusterName,
    spec: i.spec,
    cluster: i.cluster,
    tls: i.tls,
    stores: i.stores,
    drillDir: i.drillDir,
    readDrillReports: i.readDrillReports,
    now,
    releases: i.releases,
  });
  const lb = i.spec.load_balancer;
  if (lb) {
    const probes = await i.cluster.probeAll();
    checks.push(
      ...(await runLoadBalancerChecks({
        spec: { ...i.spec, load_balancer: lb },
        tls: i.tls,
        activeNode: probes.find((p) => p.health?.state === 'active')?.node.name,
        downNodes: probes
          .filter((p) => p.health?.state === 'sealed' || p.health?.state === 'uninitialized')
          .map((p) => p.node.name),
      })),
    );
  }
  for (const n of i.spec.nodes) {
    if (!n.ssh) continue;
    let host: Host | undefined;
    try {
      host = await i.openHost(n);
    } catch (e) {
      checks.push(
        ...unknownHostChecks(
          n.name,
          `SSH to ${n.ssh.host ?? new URL(n.api_addr).hostname}:${n.ssh.port ?? 22} failed: ${(e as Error).message}`,
        ),
      );
      continue;
    }
    try {
      checks.push(...(await runHostChecks(n, host)));
    } catch (e) {
      checks.push(...unknownHostChecks(n.name, `lost the host while checking: ${(e as Error).message}`));
    } finally {
      host.close();
    }
  }
  const gating = (c: CheckResult) => SEVERITY_RANK[c.severity] >= SEVERITY_RANK[i.failOn];
  const count = (s: CheckResult['status']) => checks.filter((c) => c.status === s).length;
  const failing = checks.filter((c) => c.status === 'fail' && gating(c)).length;
  const unknownGating = checks.filter((c) => c.status === 'unknown' && gating(c)).length;
  const result = failing ? 'failed' : unknownGating ? 'incomplete' : 'passed';
  return {
    format: 'vaultops-check/1',
    cluster: i.clusterName,
    checked_at: now.toISOString(),
    fail_on: i.failOn,
    summary: { pass: count('pass'), fail: count('fail'), unknown: count('unknown'), skip: count('skip'), failing },
    result,
    exit_code: failing ? ExitCode.failed : unknownGating ? ExitCode.unreachable : ExitCode.ok,
    checks,
  };
}
