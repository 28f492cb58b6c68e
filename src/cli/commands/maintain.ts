import type { Command } from 'commander';

/** vaultops maintain: rolling host maintenance and configuration roll-outs (built-in playbooks). */
export function registerMaintainCommand(program: Command): void {
  program
    .command('maintain')
    .description(
      'rolling host maintenance over SSH: standbys one at a time, the leader last, the upgrade gates and waits around each node; resumable (vaultops resume)',
    )
    .requiredOption('-i, --inventory <file>', 'inventory file')
    .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
    .option('--command <cmd>', 'shell command run on each host (through sudo when ssh.sudo)')
    .option('--script <file>', 'local script copied to each host and run there')
    .option('--reboot', 'reboot each host after the command; wait for SSH, the service and the node (unsealed)')
    .option('--restart-service', 'stop the server before the command and start it after')
    .option('--config <file>', 'roll this server configuration out instead: stage, validate, swap, reload or restart')
    .option('--non-interactive', 'never ask: the typed confirmation then comes from --confirm (cron, CI)')
    .option('--confirm <cluster>', 'the cluster name, instead of typing it (required when unattended)')
    .option('-y, --yes', 'do not ask "Run this plan?" at a terminal')
    .option('--break-lock', 'take over a stale cluster lock (its process is gone) or one held from another host')
    .option('--json', 'one JSON event per line')
    .action(async (o) => (await import('../maintain.js')).maintainCommand(o));
}
