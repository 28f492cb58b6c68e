import type { Command } from 'commander';
import { repeatable, storeOptions } from './options.js';

/** vaultops schedule backup|drill: definitions for cron, systemd and Kubernetes. */
export function registerScheduleCommands(program: Command): void {
  const schedule = program
    .command('schedule')
    .description('print definitions for existing schedulers (cron, systemd, Kubernetes)');
  storeOptions(
    schedule
      .command('backup')
      .description('a cron line, a systemd service + timer and a Kubernetes CronJob that run `vaultops backup`')
      .requiredOption('-i, --inventory <file>', 'inventory file')
      .option(
        '--cluster <name>',
        'cluster in the inventory (optional when it has one; repeat for one job backing up several)',
        repeatable,
      ),
  )
    .option('--all-clusters', 'one job that backs up every cluster of the inventory (clusters added later included)')
    .option('--concurrency <n>', 'with several clusters: how many the job backs up at once')
    .option('--every <interval>', 'how often: 15m, 30m, 1h, 6h, 12h, 1d', '1h')
    .option('--format <list>', 'which of cron, systemd, kubernetes (default: all three; kubernetes needs --image)')
    .option('--textfile <path>', 'Prometheus textfile for node_exporter')
    .option('--notify-url <ref>', 'webhook reference (env:NAME or file:PATH)')
    .option('--notify-on <results>', 'failure, success or failure,success')
    .option('--image <image>', 'container image for the CronJob (build one with `npm run image`)')
    .option('--user <user>', 'systemd User= (default vaultops)')
    .action(async (o) => (await import('../schedule.js')).scheduleBackupCommand(o));
  schedule
    .command('drill')
    .description('a cron line, a systemd service + timer and a Kubernetes CronJob that run `vaultops drill`')
    .requiredOption('-i, --inventory <file>', 'inventory file')
    .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
    .option('--from <store|dir>', 'a store of the cluster, or a folder of backups')
    .option('--report-dir <dir>', 'where the reports go')
    .option('--every <interval>', 'how often: 1d, or 7d for weekly', '7d')
    .option('--format <list>', 'which of cron, systemd, kubernetes (default: all three; kubernetes needs --image)')
    .option('--notify-url <ref>', 'webhook reference (env:NAME or file:PATH)')
    .option('--notify-on <results>', 'failure, success or failure,success')
    .option('--image <image>', 'container image for the CronJob (build one with `npm run image`)')
    .option('--user <user>', 'systemd User= (default vaultops)')
    .action(async (o) => (await import('../schedule.js')).scheduleDrillCommand(o));
}
