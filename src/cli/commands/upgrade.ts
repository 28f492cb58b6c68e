import type { Command } from 'commander';

/** vaultops upgrade: rolling or immutable, over SSH. */
export function registerUpgradeCommand(program: Command): void {
  program
    .command('upgrade')
    .description(
      'upgrade a cluster in place over SSH: standbys one at a time, the leader last (a clean stop), gates before each node',
    )
    .requiredOption('-i, --inventory <file>', 'inventory file')
    .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
    .option('--binary <path|url>', 'the new server binary: a local file, or an http(s) URL downloaded first')
    .option('--sha256 <hex>', 'its expected sha256 (with --binary): a mismatch is refused before any node is touched')
    .option(
      '--version <version>',
      "instead of --binary: fetch the vendor's release archive for the nodes' OS/CPU; its signed SHA256SUMS is verified first",
    )
    .option(
      '--release-mirror <url>',
      'with --version: where releases are fetched (default releases.hashicorp.com for Vault, GitHub releases for OpenBao)',
    )
    .option(
      '--release-key <file>',
      "with --version: the vendor's OpenPGP public key (needed for OpenBao; replaces the bundled HashiCorp key)",
    )
    .option(
      '--strategy <strategy>',
      "rolling (in place) or immutable (the inventory's new_nodes join, then the old nodes leave)",
      'rolling',
    )
    .option(
      '--stage-only',
      'only the gates and the staging: the new binary checked and staged on every host, no node stopped; the upgrade run later uses it',
    )
    .option(
      '--fetch-on-hosts',
      'with --binary URL and --sha256: each host downloads the binary itself (curl or wget) and checks its sha256 there; nothing is sent over SSH',
    )
    .option('--write-inventory <path>', 'immutable: write the updated inventory here instead of over -i')
    .option('--break-lock', 'take over a stale cluster lock (its process is gone) or one held from another host')
    .option('--non-interactive', 'never ask: the typed confirmation then comes from --confirm (cron, CI)')
    .option('--confirm <cluster>', 'the cluster name, instead of typing it (required when unattended)')
    .option(
      '--rollback-on-failure',
      'when a node does not come back on the new binary, put its previous binary back before halting',
    )
    .option(
      '--trust-on-first-use',
      'accept SSH host keys that neither ssh.host_key nor known_hosts knows (and record them)',
    )
    .option(
      '--snapshot-dir <dir>',
      'where the pre-upgrade snapshot goes (default $VAULTOPS_STATE_DIR/upgrades/<cluster>)',
    )
    .option('--wait-timeout <seconds>', 'how long each wait on a node may take', '120')
    .option('--json', 'machine-readable result')
    .action(async (o) => (await import('../upgrade.js')).upgradeCommand(o));
}
