import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { VaultopsError } from '../core/errors.js';
import { FLAVORS, type Flavor } from './binaries.js';
import { run } from './exec.js';

/**
 * The root tree of a lab machine: an overlay whose lower layer is this machine's own `/` and whose
 * upper layer holds what makes it a Vault host, laid out as HashiCorp's and OpenBao's packages lay
 * it out. Nothing is downloaded; a machine costs the files it changes.
 */
export interface ServerLayout {
  /** The system account the server runs as (the packages create `vault` / `openbao`). */
  user: string;
  unit: string;
  binary: string;
  configDir: string;
  config: string;
  envFile: string;
  dataDir: string;
  tlsDir: string;
}

export function serverLayout(flavor: Flavor): ServerLayout {
  if (flavor === 'vault') {
    return {
      user: 'vault',
      unit: 'vault',
      binary: '/usr/local/bin/vault',
      configDir: '/etc/vault.d',
      config: '/etc/vault.d/vault.hcl',
      envFile: '/etc/vault.d/vault.env',
      dataDir: '/opt/vault/data',
      tlsDir: '/opt/vault/tls',
    };
  }
  return {
    user: 'openbao',
    unit: 'openbao',
    binary: '/usr/local/bin/bao',
    configDir: '/etc/openbao',
    config: '/etc/openbao/openbao.hcl',
    envFile: '/etc/openbao/openbao.env',
    dataDir: '/opt/openbao/data',
    tlsDir: '/opt/openbao/tls',
  };
}

/**
 * Modelled on the units the vendors ship (HashiCorp's vault.service in its .deb, OpenBao's
 * openbao.service): both stop with SIGINT, which makes the active node step down and release the
 * HA lock at once. Type=notify: both servers tell systemd when their listeners are up, so
 * `systemctl start` returns when the API answers (sealed).
 */
export function renderUnit(flavor: Flavor): string {
  const l = serverLayout(flavor);
  const product = FLAVORS[flavor].product;
  const doc = flavor === 'vault' ? 'https://developer.hashicorp.com/vault/docs' : 'https://openbao.org/docs/';
  return [
    "# Written by `vaultops lab up --hosts`, after the vendor's own unit.",
    '[Unit]',
    `Description="${product} - A tool for managing secrets"`,
    `Documentation=${doc}`,
    'Requires=network-online.target',
    'After=network-online.target',
    `ConditionFileNotEmpty=${l.config}`,
    'StartLimitIntervalSec=60',
    'StartLimitBurst=3',
    '',
    '[Service]',
    'Type=notify',
    `EnvironmentFile=-${l.envFile}`,
    `User=${l.user}`,
    `Group=${l.user}`,
    'ProtectSystem=full',
    'ProtectHome=read-only',
    'PrivateTmp=yes',
    'PrivateDevices=yes',
    'SecureBits=keep-caps',
    'AmbientCapabilities=CAP_IPC_LOCK',
    'CapabilityBoundingSet=CAP_SYSLOG CAP_IPC_LOCK',
    'NoNewPrivileges=yes',
    `ExecStart=${l.binary} server -config=${l.config}`,
    'ExecReload=/bin/kill --signal HUP $MAINPID',
    'KillMode=process',
    'KillSignal=SIGINT',
    'Restart=on-failure',
    'RestartSec=5',
    'TimeoutStopSec=30',
    'LimitNOFILE=65536',
    'LimitMEMLOCK=infinity',
    'LimitCORE=0',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

/** Units a Vault host needs; every other unit this machine has enabled is masked in the machine. */
const KEEP_ENABLED = new Set(['ssh.service', 'sshd.service']);
/** Not enabled through a .wants link, but started in a container all the same. */
const ALWAYS_MASK = [
  'console-getty.service',
  'container-getty@.service',
  'getty@.service',
  'systemd-networkd.service',
  'systemd-resolved.service',
  'systemd-networkd-wait-online.service',
  // ops's per-user systemd manager: nothing a runbook uses, and on a cgroup v1 host its cgroup cannot
  // be cleaned up when it stops ("Failed to kill control group ... Input/output error"), which made
  // the next login and the machine's reboots wait for its stop to time out.
  'user@.service',
];

export interface MachinePaths {
  dir: string;
  upper: string;
  work: string;
  root: string;
  console: string;
}

export function machinePaths(dir: string): MachinePaths {
  return {
    dir,
    upper: join(dir, 'upper'),
    work: join(dir, 'work'),
    root: join(dir, 'root'),
    console: join(dir, 'console.log'),
  };
}

export function isMounted(path: string): boolean {
  try {
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[4] === path);
  } catch {
    return false;
  }
}

export async function mountRoot(p: MachinePaths): Promise<void> {
  for (const d of [p.upper, p.work, p.root]) mkdirSync(d, { recursive: true, mode: 0o755 });
  if (isMounted(p.root)) return;
  const r = await run(
    'mount',
    ['-t', 'overlay', 'overlay', '-o', `lowerdir=/,upperdir=${p.upper},workdir=${p.work}`, p.root],
    { timeoutMs: 30_000 },
  );
  if (r.code !== 0)
    throw new VaultopsError(`Could not mount the machine's root tree at ${p.root}: ${r.stderr.trim()}.`, {
      hint: 'The lab needs root and a kernel with overlayfs.',
    });
}

export async function unmountRoot(p: MachinePaths): Promise<void> {
  if (!isMounted(p.root)) return;
  let r = await run('umount', [p.root], { timeoutMs: 30_000 });
  // A process that has not quite gone may still hold it: detach now, the kernel frees it after.
  if (r.code !== 0) r = await run('umount', ['-l', p.root], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new VaultopsError(`Could not unmount ${p.root}: ${r.stderr.trim()}.`);
}

export interface MachineSetup {
  flavor: Flavor;
  hostname: string;
  ip: string;
  /** server config as the server reads it */
  config: string;
  caCert?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  /** The lab's public key for `ops`. */
  authorizedKey: string;
  /** The machine's sshd host key (private; its .pub is pinned in the inventory). */
  hostKey: string;
}

/** What a first boot needs, written into the upper layer (the root tree is mounted). Idempotent. */
export async function populateRoot(p: MachinePaths, s: MachineSetup): Promise<void> {
  const root = (path: string) => join(p.root, path);
  const l = serverLayout(s.flavor);
  writeFileSync(root('/etc/hostname'), `${s.hostname}\n`);
  // Its own machine id: its own journal, and journalctl -u reads this machine's entries only.
  if (!existsSync(join(p.upper, 'etc/machine-id')))
    writeFileSync(root('/etc/machine-id'), `${randomBytes(16).toString('hex')}\n`);
  writeFileSync(root('/etc/hosts'), `127.0.0.1 localhost\n${s.ip} ${s.hostname}\n`);
  maskUnits(p);
  keepLoginsOpenAtBoot(p);

  await ensureUser(p.root, ['--create-home', '--shell', '/bin/bash', '--user-group', 'ops']);
  const ops = accountIds(p.root, 'ops');
  const sshDir = root('/home/ops/.ssh');
  mkdirSync(sshDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(sshDir, 'authorized_keys'), s.authorizedKey, { mode: 0o600 });
  chownSync(sshDir, ops.uid, ops.gid);
  chownSync(join(sshDir, 'authorized_keys'), ops.uid, ops.gid);
  writeSudoers(p, true);

  // sshd: this machine's own host key, keys only, ops only, on the machine's address.
  copyFileSync(s.hostKey, root('/etc/ssh/ssh_host_ed25519_key'));
  chmodSync(root('/etc/ssh/ssh_host_ed25519_key'), 0o600);
  copyFileSync(`${s.hostKey}.pub`, root('/etc/ssh/ssh_host_ed25519_key.pub'));
  mkdirSync(root('/etc/ssh/sshd_config.d'), { recursive: true });
  writeFileSync(
    root('/etc/ssh/sshd_config.d/vaultops-lab.conf'),
    [
      '# Written by `vaultops lab up --hosts`.',
      `ListenAddress ${s.ip}`,
      'HostKey /etc/ssh/ssh_host_ed25519_key',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin no',
      'AllowUsers ops',
      '',
    ].join('\n'),
  );
  enableUnit(p, 'ssh.service', '/lib/systemd/system/ssh.service');

  // The server, as the vendor's package installs it.
  await ensureUser(p.root, [
    '--system',
    '--user-group',
    '--home-dir',
    l.configDir,
    '--no-create-home',
    '--shell',
    '/bin/false',
    l.user,
  ]);
  const svc = accountIds(p.root, l.user);
  for (const d of [l.configDir, dirname(l.dataDir), l.dataDir, l.tlsDir]) mkdirSync(root(d), { recursive: true });
  writeFileSync(root(l.config), s.config, { mode: 0o640 });
  chmodSync(root(l.config), 0o640);
  if (!existsSync(root(l.envFile))) writeFileSync(root(l.envFile), '', { mode: 0o640 });
  if (s.cert && s.key && s.caCert) {
    copyFileSync(s.caCert, root(join(l.tlsDir, 'ca.crt')));
    copyFileSync(s.cert, root(join(l.tlsDir, 'tls.crt')));
    copyFileSync(s.key, root(join(l.tlsDir, 'tls.key')));
    chmodSync(root(join(l.tlsDir, 'tls.key')), 0o600);
  }
  for (const path of [
    l.configDir,
    l.config,
    l.envFile,
    dirname(l.dataDir),
    l.dataDir,
    l.tlsDir,
    ...(s.key ? [join(l.tlsDir, 'tls.key'), join(l.tlsDir, 'tls.crt'), join(l.tlsDir, 'ca.crt')] : []),
  ])
    chownSync(root(path), svc.uid, svc.gid);
  chmodSync(root(l.dataDir), 0o700);
  chmodSync(root(l.configDir), 0o750);
  writeFileSync(root(`/etc/systemd/system/${l.unit}.service`), renderUnit(s.flavor));
  enableUnit(p, `${l.unit}.service`, `/etc/systemd/system/${l.unit}.service`);
}

/**
 * What goes straight into the upper layer, before the root tree is mounted (a change to an upper
 * layer under a mounted overlay is not seen through it): the server binary and the whiteouts.
 */
export function prepareUpper(p: MachinePaths, flavor: Flavor, binary: string, hide: string[]): void {
  if (isMounted(p.root)) throw new VaultopsError(`${p.root} is mounted: the upper layer cannot be prepared under it.`);
  mkdirSync(p.upper, { recursive: true, mode: 0o755 });
  placeBinary(p, binary, serverLayout(flavor).binary);
  for (const h of hide) hideInMachine(p, h);
}

/** ops may run anything as root without a password (`sudo -n`), or only with one (a fault test). */
export function writeSudoers(p: MachinePaths, passwordless: boolean): void {
  const file = join(p.root, '/etc/sudoers.d/vaultops-ops');
  writeFileSync(file, `ops ALL=(ALL:ALL) ${passwordless ? 'NOPASSWD: ' : ''}ALL\n`, { mode: 0o440 });
  chmodSync(file, 0o440);
}

function maskUnits(p: MachinePaths): void {
  const etc = '/etc/systemd/system';
  const enabled = new Set<string>(ALWAYS_MASK);
  for (const d of readdirSync(etc)) {
    if (!d.endsWith('.wants') && !d.endsWith('.requires')) continue;
    for (const u of readdirSync(join(etc, d))) enabled.add(u.replace(/@[^.]+\./, '@.'));
  }
  for (const u of enabled) {
    if (KEEP_ENABLED.has(u)) continue;
    const link = join(p.root, etc, u);
    if (isLink(link)) rmSync(link);
    else if (existsSync(link)) continue;
    symlinkSync('/dev/null', link);
  }
}

/**
 * systemd makes /run/nologin early in boot and systemd-user-sessions.service removes it at the end;
 * until then pam_nologin refuses every user but root. On this host's cgroup v1 hierarchy that
 * one-shot unit sometimes fails to start ("status=219/CGROUP") and is never retried, so ops could
 * never log in. The lab needs no such guard: the tmpfiles entry that makes the file is masked.
 */
function keepLoginsOpenAtBoot(p: MachinePaths): void {
  const dir = join(p.root, '/etc/tmpfiles.d');
  mkdirSync(dir, { recursive: true });
  const link = join(dir, 'systemd-nologin.conf');
  if (isLink(link)) rmSync(link);
  else if (existsSync(link)) return;
  symlinkSync('/dev/null', link);
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

function enableUnit(p: MachinePaths, unit: string, target: string): void {
  const wants = join(p.root, '/etc/systemd/system/multi-user.target.wants');
  mkdirSync(wants, { recursive: true });
  const link = join(wants, unit);
  if (isLink(link)) rmSync(link);
  symlinkSync(target, link);
  // A mask left by maskUnits for a unit we want wins over the link: remove it.
  const mask = join(p.root, '/etc/systemd/system', unit);
  if (isLink(mask)) rmSync(mask);
}

/** The release binary, hard-linked into the upper layer (no copy of 200-400 MB) when it can be, else copied. */
function placeBinary(p: MachinePaths, from: string, to: string): void {
  const inUpper = join(p.upper, to);
  if (existsSync(inUpper)) return;
  mkdirSync(dirname(inUpper), { recursive: true });
  // A link shares the cache file's owner and mode: only a root-owned 0755 file may be linked, so
  // the machine's binary is root's as a package would leave it.
  const st = statSync(from);
  if (st.uid === 0 && (st.mode & 0o7777) === 0o755) {
    try {
      linkSync(from, inUpper);
      return;
    } catch {
      /* another filesystem: copy */
    }
  }
  copyFileSync(from, inUpper);
  chownSync(inUpper, 0, 0);
  chmodSync(inUpper, 0o755);
}

/**
 * An overlay whiteout (a 0/0 character device in the upper layer) makes a path of this machine
 * absent inside the lab machine: the lab's state (init.json with the unseal keys and root token)
 * must not be readable on a machine the way it would never be on a production host.
 */
function hideInMachine(p: MachinePaths, path: string): void {
  const inUpper = join(p.upper, path);
  if (existsSync(inUpper) || isLink(inUpper)) return;
  // Parents in the upper layer merge with the lower ones; give them the lower ones' mode and owner.
  const parts = dirname(path).split('/').filter(Boolean);
  let cur = '/';
  for (const part of parts) {
    cur = join(cur, part);
    const up = join(p.upper, cur);
    if (!existsSync(up)) {
      const st = statSync(cur);
      mkdirSync(up);
      chmodSync(up, st.mode & 0o7777);
      chownSync(up, st.uid, st.gid);
    }
  }
  // node has no mknod(2); the coreutils program makes the whiteout.
  if (spawnSync('mknod', [inUpper, 'c', '0', '0'], { stdio: 'ignore' }).status !== 0)
    throw new VaultopsError(`Could not hide ${path} inside the lab machine (mknod of an overlay whiteout failed).`);
}

async function ensureUser(rootDir: string, args: string[]): Promise<void> {
  const name = args[args.length - 1]!;
  if (
    readFileSync(join(rootDir, 'etc/passwd'), 'utf8')
      .split('\n')
      .some((l) => l.startsWith(`${name}:`))
  )
    return;
  const r = await run('useradd', ['--root', rootDir, ...args], { timeoutMs: 30_000 });
  if (r.code !== 0)
    throw new VaultopsError(`Could not create the account ${name} in the lab machine: ${r.stderr.trim()}.`);
}

function accountIds(rootDir: string, name: string): { uid: number; gid: number } {
  const line = readFileSync(join(rootDir, 'etc/passwd'), 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  if (!line) throw new VaultopsError(`The lab machine has no account ${name}.`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}
