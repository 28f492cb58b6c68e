import { createHash } from 'node:crypto';
import { basename, extname, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { parseConcurrency } from '../backup/fleet.js';
import { loadInventory, selectCluster } from '../inventory/load.js';
import type { ClusterSpec } from '../inventory/schema.js';
import { FORMATS, renderSchedule, SEMI_SPACE_FLAG, type Format, type Timing } from './schedule-render.js';

export { SEMI_SPACE_FLAG };

interface ScheduleBackupOptions {
  inventory: string;
  /** One name, or several when `--cluster` is repeated (the fleet form). */
  cluster?: string | string[];
  allClusters?: boolean;
  concurrency?: string;
  store?: string;
  to?: string;
  keepLast?: string;
  keepWithin?: string;
  every?: string;
  format?: string;
  textfile?: string;
  notifyUrl?: string;
  notifyOn?: string;
  image?: string;
  user?: string;
}

/**
 * `vaultops schedule backup`: prints ready-to-install definitions for the schedulers a site already
 * runs (cron, a systemd service + timer, a Kubernetes CronJob). No daemon of our own. The minute is
 * derived from the cluster name so a fleet's backups do not all hit at :00.
 */
export async function scheduleBackupCommand(o: ScheduleBackupOptions): Promise<void> {
  const invFile = resolve(o.inventory);
  const inv = loadInventory(invFile);
  const named = o.cluster === undefined ? [] : Array.isArray(o.cluster) ? o.cluster : [o.cluster];
  if (o.allClusters && named.length > 0) throw new InputError('Pass either --all-clusters or --cluster, not both.');
  if (o.concurrency !== undefined && parseConcurrency(o.concurrency) === undefined)
    throw new InputError(`--concurrency ${o.concurrency} is not a whole number >= 1.`);
  // The fleet form: one job backs up several clusters (`vaultops backup --all-clusters` or repeated --cluster).
  const isFleet = o.allClusters === true || named.length > 1;
  const names = o.allClusters
    ? Object.keys(inv.data.clusters)
    : isFleet
      ? named.map((n) => selectCluster(inv, n).name)
      : [selectCluster(inv, named[0]).name];
  if (o.store === undefined && o.to === undefined) {
    for (const name of names) {
      const stores = Object.keys(inv.data.clusters[name]?.stores ?? {});
      if (stores.length !== 1)
        throw new InputError(`Say where the scheduled backups go: --store NAME or --to DIR.`, {
          hint: stores.length
            ? `Stores of ${name}: ${stores.join(', ')}.`
            : `Cluster ${name} has no stores; pass --to DIR.`,
        });
    }
  }
  const name = isFleet ? basename(invFile, extname(invFile)).replace(/[^A-Za-z0-9_.-]/g, '-') : names[0]!;
  const what = isFleet ? `${names.length} clusters (${names.join(', ')})` : name;
  const timing = parseEvery(o.every ?? '1h', isFleet ? `fleet-${name}` : name);
  const formats = parseFormats(o.format, o.image);
  // --all-clusters stays in the job (not the names of today's clusters): a cluster added to the inventory later is backed up too.
  const selection = o.allClusters ? ['--all-clusters'] : names.flatMap((n) => ['--cluster', n]);
  if (isFleet && o.concurrency !== undefined) selection.push('--concurrency', o.concurrency);
  const unit = isFleet ? `vaultops-backup-fleet-${name}` : `vaultops-backup-${name}`;
  const store = o.to !== undefined ? resolve(o.to) : undefined;
  const login = scheduledLogin(
    names.map((n) => inv.data.clusters[n]!),
    isFleet,
    'vaultops-backup',
  );
  renderSchedule(
    {
      unit,
      timing,
      args: backupArgs(o, invFile, selection),
      user: o.user,
      image: o.image,
      cronComments: [
        `# cron (crontab -e as the user that can read the inventory's secrets): ${timing.describe}`,
        '# Secrets come from the inventory references (file: with mode 0600 is simplest under cron: its environment is empty).',
        ...login.cronComments,
      ],
      systemd: {
        description: `vaultops: verified Raft snapshot${isFleet ? 's' : ''} of ${what}`,
        unitOptions: ['Wants=network-online.target', 'After=network-online.target'],
        serviceSetup: login.systemd,
        serviceOptions: [
          'Nice=10',
          'IOSchedulingClass=best-effort',
          'IOSchedulingPriority=7',
          'NoNewPrivileges=yes',
          'PrivateTmp=yes',
          'ProtectSystem=full',
          ...(store ? [`ReadWritePaths=${store}`] : []),
          // A hung server must not block the next run forever.
          'TimeoutStartSec=1h',
        ],
        timerDescription: `vaultops backup of ${what}: ${timing.describe}`,
        randomizedDelaySec: 60,
      },
      kubernetes: {
        comment: [
          `# Kubernetes CronJob: mount the inventory (and the secrets it references) at /etc/vaultops, the backups at /backups.`,
          ...login.kubernetesComments,
        ].join('\n'),
        successfulJobsHistoryLimit: 3,
        backoffLimit: 1,
        container: 'backup',
        serviceAccount: login.serviceAccount,
        args: backupArgs(
          { ...o, to: o.to === undefined ? undefined : '/backups' },
          '/etc/vaultops/inventory.yml',
          selection,
        ),
        env: [`- { name: NODE_OPTIONS, value: ${JSON.stringify(SEMI_SPACE_FLAG)} }`, ...login.kubernetesEnv],
        volumeMounts: [
          '- { name: inventory, mountPath: /etc/vaultops, readOnly: true }',
          '- { name: backups, mountPath: /backups }',
        ],
        volumes: [
          '- name: inventory',
          '  secret: { secretName: vaultops-inventory, defaultMode: 0400 }',
          '- name: backups',
          '  persistentVolumeClaim: { claimName: vaultops-backups }',
        ],
      },
    },
    formats,
  );
}

function backupArgs(o: ScheduleBackupOptions, inventory: string, selection: string[]): string[] {
  const a = ['backup', '-i', inventory, ...selection, '--non-interactive', '--quiet'];
  if (o.store !== undefined) a.push('--store', o.store);
  if (o.to !== undefined) a.push('--to', o.to.startsWith('/') ? o.to : resolve(o.to));
  if (o.keepLast !== undefined) a.push('--keep-last', o.keepLast);
  if (o.keepWithin !== undefined) a.push('--keep-within', o.keepWithin);
  if (o.textfile !== undefined) a.push('--textfile', o.textfile);
  a.push(...notifyArgs(o));
  return a;
}

/** --notify-url/--notify-on of a scheduled job: the URL only as a reference, never inline in a unit file. */
function notifyArgs(o: { notifyUrl?: string; notifyOn?: string }): string[] {
  const a: string[] = [];
  if (o.notifyUrl !== undefined) {
    if (!/^(env|file|cmd):/.test(o.notifyUrl))
      throw new InputError(
        '--notify-url must be a reference (env:NAME, file:PATH) in a schedule: a URL with a token would sit in a unit file and in process lists.',
        { hint: 'Put the URL in a 0600 file and pass --notify-url file:/etc/vaultops/webhook-url.' },
      );
    a.push('--notify-url', o.notifyUrl);
  }
  if (o.notifyOn !== undefined) a.push('--notify-on', o.notifyOn);
  return a;
}

export function parseEvery(every: string, seed: string): Timing {
  const m = /^(\d+)(m|h|d)$/.exec(every.trim());
  if (!m) throw new InputError(`--every ${every} is not an interval.`, { hint: 'Use 15m, 30m, 1h, 6h, 12h or 1d.' });
  const n = Number(m[1]);
  const unit = m[2] as 'm' | 'h' | 'd';
  const h = createHash('sha256').update(seed).digest();
  const minute = h[0]! % 60;
  const hour = h[1]! % 24;
  const pad = (x: number) => String(x).padStart(2, '0');
  if (unit === 'm') {
    if (n < 1 || 60 % n !== 0)
      throw new InputError(`--every ${every}: minutes must divide 60 (5m, 10m, 15m, 20m, 30m).`);
    const off = minute % n;
    return {
      cron: `${off}-59/${n} * * * *`,
      onCalendar: `*-*-* *:${pad(off)}/${n}:00`,
      describe: `every ${n} minutes`,
    };
  }
  if (unit === 'h') {
    if (n < 1 || 24 % n !== 0)
      throw new InputError(`--every ${every}: hours must divide 24 (1h, 2h, 3h, 4h, 6h, 8h, 12h).`);
    const off = hour % n;
    return n === 1
      ? { cron: `${minute} * * * *`, onCalendar: `*-*-* *:${pad(minute)}:00`, describe: `hourly at :${pad(minute)}` }
      : {
          cron: `${minute} ${off}-23/${n} * * *`,
          onCalendar: `*-*-* ${pad(off)}/${n}:${pad(minute)}:00`,
          describe: `every ${n} hours`,
        };
  }
  if (n !== 1) throw new InputError(`--every ${every}: only 1d is supported for days.`);
  return {
    cron: `${minute} ${hour} * * *`,
    onCalendar: `*-*-* ${pad(hour)}:${pad(minute)}:00`,
    describe: `daily at ${pad(hour)}:${pad(minute)}`,
  };
}

interface ScheduleDrillOptions {
  inventory: string;
  cluster?: string;
  from?: string;
  reportDir?: string;
  every?: string;
  format?: string;
  notifyUrl?: string;
  notifyOn?: string;
  image?: string;
  user?: string;
}

/**
 * `vaultops schedule drill`: the same three schedulers as for backups, running `vaultops
 * drill` daily or weekly. A drill starts a scratch lab on the host that runs it, so that host needs
 * the server binary in its cache (`vaultops lab fetch`) and free loopback addresses.
 */
export async function scheduleDrillCommand(o: ScheduleDrillOptions): Promise<void> {
  const invFile = resolve(o.inventory);
  const { name } = selectCluster(loadInventory(invFile), o.cluster);
  const every = o.every ?? '7d';
  const timing = every === '7d' || every === '1w' ? weekly(name) : parseEvery(every, `drill-${name}`);
  const formats = parseFormats(o.format, o.image);
  const drillArgs = (inventory: string, reportDir: string | undefined) => {
    const a = ['drill', '-i', inventory, '--cluster', name, '--non-interactive', '--quiet'];
    if (o.from !== undefined)
      a.push('--from', o.from.startsWith('/') || !o.from.includes('/') ? o.from : resolve(o.from));
    if (reportDir !== undefined) a.push('--report-dir', reportDir);
    a.push(...notifyArgs(o));
    return a;
  };
  const unit = `vaultops-drill-${name}`;
  const login = scheduledLogin([selectCluster(loadInventory(invFile), name).spec], false, 'vaultops-drill');
  renderSchedule(
    {
      unit,
      timing,
      args: drillArgs(invFile, o.reportDir === undefined ? undefined : resolve(o.reportDir)),
      user: o.user,
      image: o.image,
      cronComments: [
        `# cron (crontab -e as the user that can read the inventory's secrets and the backups): ${timing.describe}`,
        '# The drill starts a scratch lab cluster on this host and always tears it down; it exits non-zero and calls the webhook when it fails.',
        ...login.cronComments,
      ],
      systemd: {
        description: `vaultops: disaster-recovery drill of ${name} (restore of the newest backup into a scratch cluster)`,
        unitOptions: [],
        serviceSetup: ['StateDirectory=vaultops', 'Environment=VAULTOPS_STATE_DIR=/var/lib/vaultops', ...login.systemd],
        serviceOptions: [
          'Nice=10',
          'NoNewPrivileges=yes',
          'PrivateTmp=yes',
          'ProtectSystem=full',
          // KillMode=control-group (the default) stops a scratch server left by a killed drill.
          'KillMode=control-group',
          'TimeoutStartSec=1h',
        ],
        timerDescription: `vaultops drill of ${name}: ${timing.describe}`,
        randomizedDelaySec: 300,
      },
      kubernetes: {
        comment: [
          "# Kubernetes CronJob: the image must hold the server binary in VAULTOPS_CACHE_DIR; inventory and secrets at /etc/vaultops, backups mounted where the inventory's store points, reports at /reports.",
          ...login.kubernetesComments,
        ].join('\n'),
        backoffLimit: 0,
        container: 'drill',
        serviceAccount: login.serviceAccount,
        args: drillArgs('/etc/vaultops/inventory.yml', '/reports'),
        env: ['- { name: VAULTOPS_STATE_DIR, value: /state }', ...login.kubernetesEnv],
        volumeMounts: [
          '- { name: inventory, mountPath: /etc/vaultops, readOnly: true }',
          '- { name: backups, mountPath: /backups, readOnly: true }',
          '- { name: reports, mountPath: /reports }',
          '- { name: state, mountPath: /state }',
        ],
        volumes: [
          '- name: inventory',
          '  secret: { secretName: vaultops-inventory, defaultMode: 0400 }',
          '- name: backups',
          '  persistentVolumeClaim: { claimName: vaultops-backups }',
          '- name: reports',
          '  persistentVolumeClaim: { claimName: vaultops-drill-reports }',
          '- name: state',
          '  emptyDir: {}',
        ],
      },
    },
    formats,
  );
}

interface ScheduledLogin {
  cronComments: string[];
  /** [Service] lines: the credential the unit hands to the job. */
  systemd: string[];
  kubernetesComments: string[];
  kubernetesEnv: string[];
  serviceAccount?: string | undefined;
}

/**
 * How a scheduled job logs in, from the inventory's auth: (docs/unattended-logins.md). No unit
 * file, crontab line or CronJob ever holds a token or secret_id: they name where it is.
 *  - AppRole with `secret_id: file:PATH` (one cluster): systemd loads PATH as a credential
 *    (LoadCredential=, readable by root only on disk, by the job only at run time) and points
 *    VAULTOPS_AUTH_SECRET_ID at the copy in $CREDENTIALS_DIRECTORY (%d).
 *  - The CronJob runs as a service account; with `auth: {method: kubernetes}`, or no login in the
 *    inventory at all, the job logs in with that account's token (for the latter through
 *    VAULTOPS_AUTH_METHOD=kubernetes and a role of the account's name).
 */
function scheduledLogin(specs: ClusterSpec[], isFleet: boolean, account: string): ScheduledLogin {
  const out: ScheduledLogin = { cronComments: [], systemd: [], kubernetesComments: [], kubernetesEnv: [] };
  const auths = specs.map((s) => s.auth);
  const noLogin = specs.every((s) => s.auth === undefined && s.token === undefined);
  const approleFile =
    !isFleet && auths[0]?.method === 'approle' && auths[0].secret_id.startsWith('file:')
      ? auths[0].secret_id.slice(5)
      : undefined;
  if (approleFile !== undefined) {
    out.systemd.push(
      `LoadCredential=vaultops-secret-id:${approleFile}`,
      'Environment=VAULTOPS_AUTH_SECRET_ID=file:%d/vaultops-secret-id',
    );
    out.cronComments.push(
      `# Logs in with AppRole: ${approleFile} (the secret_id) must be mode 0600 and owned by the user of this crontab.`,
    );
  } else if (noLogin) {
    out.cronComments.push(
      '# No auth: in the inventory: the job uses VAULT_TOKEN or ~/.vault-token of its user. Prefer auth: { method: approle } (docs/unattended-logins.md).',
    );
  }
  if (noLogin || auths.some((a) => a?.method === 'kubernetes')) {
    out.serviceAccount = account;
    out.kubernetesComments.push(
      `# It logs in with the token of service account ${account} (Vault's kubernetes auth method; role ${noLogin ? account : 'from the inventory'}).`,
    );
    if (noLogin)
      out.kubernetesEnv.push(
        '- { name: VAULTOPS_AUTH_METHOD, value: kubernetes }',
        `- { name: VAULTOPS_AUTH_ROLE, value: ${account} }`,
      );
  }
  return out;
}

/**
 * `--format cron,systemd,kubernetes` (k8s is kubernetes). A name we do not know is an error (exit 2)
 * before anything is printed: printing less than asked for, or nothing, would look like success.
 */
export function parseFormats(list: string | undefined, image?: string): Set<Format> {
  const names = (list ?? FORMATS.join(','))
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  const unknown = names.filter((n) => n !== 'k8s' && !(FORMATS as readonly string[]).includes(n));
  if (unknown.length || names.length === 0) {
    throw new InputError(
      `--format ${list ?? ''} ${unknown.length ? `names ${unknown.map((u) => `"${u}"`).join(', ')}, which is not a scheduler we print` : 'names no scheduler'}.`,
      {
        hint: `Use one or more of ${FORMATS.join(', ')}, separated by commas (e.g. --format cron,systemd).`,
      },
    );
  }
  const formats = new Set(names.map((n) => (n === 'k8s' ? 'kubernetes' : n) as Format));
  // Asked for by name, a CronJob without an image is an error; by default it is left out with a note.
  if (list !== undefined && formats.has('kubernetes') && !image)
    throw new InputError('--format kubernetes needs --image REF: the CronJob must name an image that exists.', {
      hint: 'Build one with `npm run image` (FROM scratch: Node and vaultops), push it to a registry the cluster pulls from, and pass its reference.',
    });
  return formats;
}

/** Weekly, on a day and time derived from the cluster name so a fleet's drills spread out. */
function weekly(seed: string): Timing {
  const h = createHash('sha256').update(`drill-${seed}`).digest();
  const minute = h[0]! % 60;
  const hour = h[1]! % 24;
  const day = h[2]! % 7;
  const names = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const pad = (x: number) => String(x).padStart(2, '0');
  return {
    cron: `${minute} ${hour} * * ${day}`,
    onCalendar: `${names[day]} *-*-* ${pad(hour)}:${pad(minute)}:00`,
    describe: `weekly on ${names[day]} at ${pad(hour)}:${pad(minute)}`,
  };
}
