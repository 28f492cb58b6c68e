/**
 * One finding of `vaultops check`. `unknown` means it could not be looked at (host unreachable,
 * permission denied): it is never counted as passed.
 */
export type Severity = 'critical' | 'warning' | 'info';
export type CheckStatus = 'pass' | 'fail' | 'unknown' | 'skip';

export interface CheckResult {
  id: string;
  title: string;
  /** The checklist the rule comes from (see CHECKLISTS). */
  checklist: keyof typeof CHECKLISTS;
  severity: Severity;
  status: CheckStatus;
  /** `cluster`, or the node/host it is about. */
  target: string;
  found: string;
  /** How to fix it (shown when it did not pass). */
  fix: string;
}

export const CHECKLISTS = {
  'production-hardening':
    "HashiCorp Vault production hardening (developer.hashicorp.com/vault/docs/concepts/production-hardening); OpenBao's is the same list",
  'raft-reference-architecture':
    'Integrated storage reference architecture and autopilot (developer.hashicorp.com/vault/tutorials/day-one-raft)',
  'audit-devices':
    'Audit devices: a blocked device blocks every request (developer.hashicorp.com/vault/docs/audit#blocked-audit-devices)',
  'systemd-unit':
    "The production guide's systemd unit (developer.hashicorp.com/vault/tutorials/day-one-raft/raft-deployment-guide#configure-systemd)",
  recovery: 'vaultops recovery practice: verified backups and tested restores',
  'load-balancer':
    'Load balancing in the Raft reference architecture: TCP passthrough, /sys/health checks (developer.hashicorp.com/vault/tutorials/day-one-raft/raft-reference-architecture)',
} as const;

export const SEVERITY_RANK: Record<Severity, number> = { info: 0, warning: 1, critical: 2 };
