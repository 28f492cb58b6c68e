import { resolve } from 'node:path';
import { out } from '../ui/output.js';

/**
 * V8 flag for scheduled runs: a small young generation frees short-lived Buffers sooner. Since the
 * backup streams through pooled buffers it saves only ~5 MB at 1 GB (90 -> 85 MB peak RSS,
 * bench/backup.js), but an age-encrypted backup still peaks at ~116 MB with it against 158-188 MB
 * without (bench/encrypt.js), and it costs nothing measurable in time.
 */
export const SEMI_SPACE_FLAG = '--max-semi-space-size=1';

export const FORMATS = ['cron', 'systemd', 'kubernetes'] as const;
export type Format = (typeof FORMATS)[number];

export interface Timing {
  cron: string;
  onCalendar: string;
  describe: string;
}

/**
 * One scheduled `vaultops` job, as the three schedulers need it. `schedule backup` and `schedule drill`
 * differ only in what they fill in here; the text around it is rendered once, by renderSchedule.
 */
export interface ScheduledJob {
  /** systemd unit name, log file name and (lower-cased) CronJob name. */
  unit: string;
  timing: Timing;
  /** The vaultops arguments on this host (cron and systemd). */
  args: string[];
  /** systemd User= (default vaultops). */
  user?: string;
  /** CronJob image; without one the CronJob is not printed. */
  image?: string;
  /** Comment lines above the crontab line. */
  cronComments: string[];
  systemd: {
    description: string;
    /** [Unit] lines after Description=. */
    unitOptions: string[];
    /** [Service] lines between User= and ExecStart=. */
    serviceSetup: string[];
    /** [Service] lines after ExecStart=. */
    serviceOptions: string[];
    timerDescription: string;
    randomizedDelaySec: number;
  };
  kubernetes: {
    comment: string;
    successfulJobsHistoryLimit?: number;
    backoffLimit: number;
    container: string;
    /** The pod's service account (a Kubernetes login uses its token). */
    serviceAccount?: string | undefined;
    /** The vaultops arguments inside the container. */
    args: string[];
    /** Lines of the lists, relative to their `- ` (the renderer indents them). */
    env: string[];
    volumeMounts: string[];
    volumes: string[];
  };
}

/**
 * The command the scheduler runs on this host, as one shell-quoted line (the crontab line and
 * ExecStart= share it). The one place to wrap the command, e.g. in a timeout or a no-overlap lock.
 */
export function jobCommandLine(job: ScheduledJob): string {
  const node = process.execPath;
  const bin = resolve(process.argv[1] ?? 'vaultops');
  return shellJoin([node, SEMI_SPACE_FLAG, bin, ...job.args]);
}

/** Prints the definitions of `job` for each scheduler in `formats`, in the order cron, systemd, kubernetes. */
export function renderSchedule(job: ScheduledJob, formats: Set<Format>): void {
  if (formats.has('cron')) renderCron(job);
  if (formats.has('systemd')) renderSystemd(job);
  if (formats.has('kubernetes')) {
    // A CronJob naming an image nobody built would fail at its first run, far from here.
    if (job.image) renderCronJob(job);
    else
      out.line(
        '# Kubernetes CronJob: not printed without --image REF (build one with `npm run image`, push it where the cluster pulls from).',
      );
  }
}

function renderCron(job: ScheduledJob): void {
  for (const c of job.cronComments) out.line(c);
  // cron has neither a run-time bound nor a no-overlap rule: timeout(1) gives the job the hour
  // systemd's TimeoutStartSec and the CronJob's activeDeadlineSeconds give it (SIGTERM: a backup
  // removes its partial file, a drill tears its scratch cluster down), and flock -n skips a run
  // (exit 75) while the previous one still holds the lock, as concurrencyPolicy: Forbid does.
  const guard = shellJoin([
    '/usr/bin/flock',
    '-n',
    '-E',
    '75',
    `/tmp/${job.unit}.lock`,
    '/usr/bin/timeout',
    '--kill-after=60',
    '3600',
  ]);
  out.line(`${job.timing.cron} ${guard} ${jobCommandLine(job)} >>/var/log/${job.unit}.log 2>&1`);
  out.line();
}

function renderSystemd(job: ScheduledJob): void {
  const s = job.systemd;
  out.line(`# /etc/systemd/system/${job.unit}.service`);
  out.line(
    [
      '[Unit]',
      `Description=${s.description}`,
      ...s.unitOptions,
      '',
      '[Service]',
      'Type=oneshot',
      `User=${job.user ?? 'vaultops'}`,
      ...s.serviceSetup,
      `ExecStart=${jobCommandLine(job)}`,
      ...s.serviceOptions,
      '',
    ].join('\n'),
  );
  out.line(`# /etc/systemd/system/${job.unit}.timer`);
  out.line(
    [
      '[Unit]',
      `Description=${s.timerDescription}`,
      '',
      '[Timer]',
      `OnCalendar=${job.timing.onCalendar}`,
      'Persistent=true',
      `RandomizedDelaySec=${s.randomizedDelaySec}`,
      '',
      '[Install]',
      'WantedBy=timers.target',
      '',
    ].join('\n'),
  );
  out.line(`# systemctl daemon-reload && systemctl enable --now ${job.unit}.timer`);
  out.line();
}

function renderCronJob(job: ScheduledJob): void {
  const k = job.kubernetes;
  const indent = (spaces: number, lines: string[]) => lines.map((l) => ' '.repeat(spaces) + l);
  out.line(k.comment);
  out.line(
    [
      'apiVersion: batch/v1',
      'kind: CronJob',
      'metadata:',
      `  name: ${job.unit.toLowerCase().replace(/[^a-z0-9-]/g, '-')}`,
      'spec:',
      `  schedule: ${JSON.stringify(job.timing.cron)}`,
      '  concurrencyPolicy: Forbid',
      ...(k.successfulJobsHistoryLimit === undefined
        ? []
        : [`  successfulJobsHistoryLimit: ${k.successfulJobsHistoryLimit}`]),
      '  failedJobsHistoryLimit: 5',
      '  jobTemplate:',
      '    spec:',
      `      backoffLimit: ${k.backoffLimit}`,
      '      activeDeadlineSeconds: 3600',
      '      template:',
      '        spec:',
      '          restartPolicy: Never',
      ...(k.serviceAccount === undefined ? [] : [`          serviceAccountName: ${k.serviceAccount}`]),
      '          containers:',
      `            - name: ${k.container}`,
      `              image: ${job.image!}`,
      '              args:',
      ...k.args.map((a) => `                - ${JSON.stringify(a)}`),
      '              env:',
      ...indent(16, k.env),
      '              volumeMounts:',
      ...indent(16, k.volumeMounts),
      '          volumes:',
      ...indent(12, k.volumes),
    ].join('\n'),
  );
}

export function shellJoin(args: string[]): string {
  return args.map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}
