import type { Command } from 'commander';

/** vaultops drill: a restore drill into a scratch lab cluster. */
export function registerDrillCommand(program: Command): void {
  program
    .command('drill')
    .description(
      "DR drill: newest verified backup -> scratch lab cluster -> restore, unseal, canaries, Raft index -> teardown; RTO/RPO reports (JSON, Markdown, HTML); exit 0 passed, else the failed phase's code",
    )
    .requiredOption('-i, --inventory <file>', 'inventory file')
    .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
    .option('--from <store|dir>', "a store of the cluster, or a folder of backups (default: the cluster's only store)")
    .option(
      '--report-dir <dir>',
      'where the reports go (default $VAULTOPS_STATE_DIR/drills/<cluster>, where `check` looks)',
    )
    .option('--version <version>', "server version of the scratch cluster instead of the backup's")
    .option(
      '--notify-url <url>',
      'POST a JSON report here (a reference like env:NAME or file:PATH keeps a tokened URL out of argv)',
    )
    .option('--notify-on <results>', 'when to notify: failure, success or failure,success', 'failure')
    .option('--timeout <seconds>', 'how long the restored cluster may take to come back', '180')
    .option('--non-interactive', 'never ask (a drill never asks; accepted for cron lines)')
    .option('--break-lock', 'take over a stale cluster lock (its process is gone) or one held from another host')
    .option(
      '--identity <ref>',
      "secret reference (file:PATH, env:NAME, cmd:COMMAND, prompt:LABEL) to the age identity or armored OpenPGP private key that opens encrypted backups (default: the store's decrypt.identity); never the key itself",
    )
    .option('--identity-passphrase <ref>', "secret reference to the OpenPGP private key's passphrase")
    .option('--quiet', 'no progress lines on stderr')
    .option('--json', 'the report as JSON on stdout')
    .action(async (o) => (await import('../drill.js')).drillCommand(o));
}
