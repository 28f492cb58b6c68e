import type { Command } from 'commander';

/** vaultops status: what every node is doing now. */
export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description('what every node of a cluster is doing now; exit 0 healthy, 5 degraded, 3 unreachable')
    .option(
      '-i, --inventory <file>',
      'inventory file (default: the cluster at VAULT_ADDR / BAO_ADDR, its nodes from the Raft configuration)',
    )
    .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
    .option('--json', 'machine-readable output')
    .action(async (o) => (await import('../status.js')).statusCommand(o));
}
