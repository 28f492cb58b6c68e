import type { Command } from 'commander';
import { collect, repeatable, storeOptions } from './options.js';

/** vaultops backup|backups|restore. */
export function registerBackupCommands(program: Command): void {
  storeOptions(
    program
      .command('backup')
      .description(
        "one verified Raft snapshot from the leader (streamed, checked, then renamed into place), then retention; exit 0 ok, 1 failed, 2 bad input, 3 unreachable. Several clusters: exit 0 when all succeeded, else the first failed cluster's code",
      )
      .option(
        '-i, --inventory <file>',
        'inventory file (repeat for several; default: the cluster at VAULT_ADDR / BAO_ADDR, with --to)',
        repeatable,
      )
      .option(
        '--cluster <name>',
        'cluster in the inventory (optional when it has one; repeat for several)',
        repeatable,
      ),
  )
    .option('--all-clusters', 'back up every cluster of the inventories, each on its own')
    .option('--concurrency <n>', 'with several clusters: how many to back up at once (default 4)')
    .option('--no-prune', 'do not apply retention after the backup')
    .option(
      '--encrypt-to <recipient>',
      "encrypt the stored file for this age recipient (age1...), or for the recipients / OpenPGP public key in this file (repeatable; overrides the store's encrypt:)",
      collect,
      [],
    )
    .option(
      '--notify-url <url>',
      'POST a JSON report here (a reference like env:NAME or file:PATH keeps a tokened URL out of argv)',
    )
    .option('--notify-on <results>', 'when to notify: failure, success or failure,success', 'failure')
    .option('--textfile <path>', "write Prometheus metrics for node_exporter's textfile collector here")
    .option('--non-interactive', 'never ask (backup never asks; accepted for symmetry with cron lines)')
    .option('--break-lock', 'take over a stale cluster lock (its process is gone) or one held from another host')
    .option('--quiet', 'no progress lines on stderr')
    .option('--json', 'machine-readable result on stdout')
    .action(async (o) => (await import('../backup.js')).backupCommand(o));

  const backups = program.command('backups').description('snapshots in a store: list, verify, inspect, prune');
  storeOptions(
    backups
      .command('list')
      .description('backups in a store with their manifests, newest first')
      .option('-i, --inventory <file>', 'inventory file (for --store)')
      .option('--cluster <name>', 'cluster in the inventory'),
  )
    .option('--json', 'machine-readable output')
    .action(async (o) => (await import('../backups.js')).backupsListCommand(o));
  storeOptions(
    backups
      .command('verify')
      .argument('<file>', 'snapshot file, or with --store/--to the name of a backup in that store')
      .option('-i, --inventory <file>', 'inventory file (for --store)')
      .option('--cluster <name>', 'cluster in the inventory'),
  )
    .description(
      'full check: gzip, tar, SHA256SUMS, SHA256SUMS.sealed, meta.json, manifest and sidecar (an encrypted backup is decrypted while checked); exit 0 valid, 1 invalid, 2 encrypted and no identity (only the stored file was checked)',
    )
    .option(
      '--identity <ref>',
      "secret reference (file:PATH, env:NAME, cmd:COMMAND, prompt:LABEL) to the age identity or armored OpenPGP private key that opens encrypted backups (default: the store's decrypt.identity); never the key itself",
    )
    .option('--identity-passphrase <ref>', "secret reference to the OpenPGP private key's passphrase")
    .option('--json', 'machine-readable output')
    .action(async (file, o) => (await import('../backups.js')).backupsVerifyCommand(file, o));
  storeOptions(
    backups
      .command('inspect')
      .argument('<file>', 'snapshot file, or with --store/--to the name of a backup in that store')
      .option('-i, --inventory <file>', 'inventory file (for --store)')
      .option('--cluster <name>', 'cluster in the inventory'),
  )
    .description('what a snapshot holds (Raft index, term, servers, version, age, key set); no cluster needed')
    .option('--json', 'machine-readable output')
    .action(async (file, o) => (await import('../backups.js')).backupsInspectCommand(file, o));
  storeOptions(
    backups
      .command('prune')
      .description('apply retention now; --dry-run lists what would go')
      .option('-i, --inventory <file>', 'inventory file (for --store)')
      .option('--cluster <name>', 'cluster in the inventory'),
  )
    .option('--dry-run', 'list what would be removed, remove nothing')
    .option('--json', 'machine-readable output')
    .action(async (o) => (await import('../backups.js')).backupsPruneCommand(o));

  storeOptions(
    program
      .command('restore')
      .description(
        'restore a verified snapshot: checks, typed confirmation, safety snapshot, restore on the leader, wait, unseal, verify; exit 0 ok, 1 failed, 2 bad input, 3 unreachable, 4 refused (cluster untouched)',
      )
      .requiredOption('-i, --inventory <file>', 'inventory file')
      .option('--cluster <name>', 'cluster in the inventory (optional when it has one)'),
  )
    .option('--from <file>', 'the snapshot file to restore')
    .option('--latest', 'the newest verified backup of this cluster in the store')
    .option('--confirm <cluster>', "the typed confirmation: the cluster's name")
    .option(
      '--encrypt-to <recipient>',
      "encrypted backups: recipients for the safety snapshot (age1... or a recipients / OpenPGP public key file; repeatable); default: the store's encrypt:, never the manifest's",
      collect,
      [],
    )
    .option(
      '--force-other-cluster',
      "allow a snapshot taken on another cluster (snapshot-force); its keys and tokens replace this cluster's",
    )
    .option(
      '--identity <ref>',
      "secret reference (file:PATH, env:NAME, cmd:COMMAND, prompt:LABEL) to the age identity or armored OpenPGP private key that opens encrypted backups (default: the store's decrypt.identity); never the key itself",
    )
    .option('--identity-passphrase <ref>', "secret reference to the OpenPGP private key's passphrase")
    .option('--timeout <seconds>', 'how long the cluster may take to come back', '180')
    .option('--non-interactive', 'never ask: missing answers are errors naming the flag')
    .option('--quiet', 'no progress lines on stderr')
    .option('--break-lock', 'take over a stale cluster lock (its process is gone) or one held from another host')
    .option('--json', 'machine-readable result')
    .action(async (o) => (await import('../restore.js')).restoreCommand(o));
}
