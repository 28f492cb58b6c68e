/**
 * Exit codes are part of the contract with cron, CI and shell scripts: never renumber them.
 * docs/exit-codes.md lists the same meanings.
 */
export const ExitCode = {
  /** Everything asked for was done (or, for `status`, the cluster is healthy). */
  ok: 0,
  /** A step failed while running. */
  failed: 1,
  /** Bad input: usage, inventory, playbook, flags, a missing answer in unattended mode. */
  badInput: 2,
  /** A node or host could not be reached. */
  unreachable: 3,
  /** A gate refused to go on: nothing was changed on the node it guarded. */
  gateRefused: 4,
  /** `status`/`check`: the cluster answers but is degraded (sealed node, non-voter, tolerance < 1). */
  degraded: 5,
  /** A prerequisite of this machine is missing (go, pip, openssl, sshd...). */
  prerequisite: 6,
  /** Interrupted by SIGINT/SIGTERM at a safe point; `vaultops resume` continues. */
  interrupted: 130,
} as const;

export type ExitCodeName = keyof typeof ExitCode;
export type ExitCodeValue = (typeof ExitCode)[ExitCodeName];
