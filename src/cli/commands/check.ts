import type { Command } from 'commander';

/** vaultops check: production readiness of a live cluster. */
export function registerCheckCommand(program: Command): void {
  program
    .command('check')
    .description(
      'production-readiness check of a live cluster (API and, with ssh blocks, each host); exit 0 passed, 1 a finding at or above --fail-on, 3 unreachable',
    )
    .option(
      '-i, --inventory <file>',
      'inventory file (default: the cluster at VAULT_ADDR / BAO_ADDR, its nodes from the Raft configuration)',
    )
    .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
    .option('--json', 'machine-readable result on stdout')
    .option('--markdown <file>', 'also write the result as Markdown')
    .option('--html <file>', 'also write the result as an HTML page')
    .option(
      '--fail-on <severity>',
      'lowest severity of a failed check that fails the command: warning or critical',
      'critical',
    )
    .option('--drill-dir <dir>', 'where the drill reports are (default $VAULTOPS_STATE_DIR/drills/<cluster>)')
    .option('--trust-on-first-use', 'accept SSH host keys that neither ssh.host_key nor known_hosts knows')
    .option(
      '--offline',
      'judge versions by the cached upstream release list, else the one bundled with vaultops; ask no one',
    )
    .action(async (o) => (await import('../check.js')).checkCommand(o));
}
