import type { Command } from 'commander';

/** vaultops lb config: a load balancer's configuration from the inventory. */
export function registerLbCommands(program: Command): void {
  const lb = program.command('lb').description('load balancers in front of a cluster (TCP passthrough, health checks)');
  lb.command('config')
    .description(
      'print an HAProxy or nginx configuration for the cluster: TCP passthrough, /v1/sys/health checks over TLS verified against the cluster CA',
    )
    .requiredOption('-i, --inventory <file>', 'inventory file')
    .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
    .requiredOption('--format <format>', 'haproxy or nginx')
    .option(
      '--mode <mode>',
      'active (only the active node) or read (unsealed standbys too); default load_balancer.mode, else active',
    )
    .option('-o, --output <file>', 'write the configuration to this file instead of stdout')
    .action(async (o) => (await import('../lb.js')).lbConfigCommand(o));
}
