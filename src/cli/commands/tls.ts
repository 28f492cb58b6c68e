import type { Command } from 'commander';

/** vaultops tls rotate: new listener certificates, node by node, without a restart. */
export function registerTlsCommands(program: Command): void {
  const tls = program.command('tls').description("the nodes' TLS listener certificates");
  tls
    .command('rotate')
    .description(
      'check every new certificate (CA, names, key) before touching anything, then node by node (active last): stage, swap with a backup, reload with SIGHUP, verify the node serves it',
    )
    .requiredOption('-i, --inventory <file>', 'inventory file')
    .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
    .requiredOption('--cert-dir <dir>', 'folder with <node>.pem (or .crt) and <node>.key for every node')
    .option('--non-interactive', 'never prompt (nothing here prompts; accepted for scripts)')
    .option('--trust-on-first-use', 'accept SSH host keys that neither ssh.host_key nor known_hosts knows')
    .option('--break-lock', 'take over a stale lock left by a run that died')
    .option('--json', 'machine-readable result on stdout')
    .action(async (o) => (await import('../tls.js')).tlsRotateCommand(o));
}
