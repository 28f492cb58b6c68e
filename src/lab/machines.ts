import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { PrerequisiteError, VaultopsError } from '../core/errors.js';
import { lastLines, run } from './exec.js';
import { isAlive } from './file-lock.js';
import { machinePaths, unmountRoot, type MachinePaths } from './machine-root.js';
import { removeMachineLink, type MachineLink } from './machine-net.js';

/**
 * A lab machine is a real systemd booted by systemd-nspawn on an overlay root, in its own network
 * namespace. A small supervisor (boot.sh) keeps it running across reboots: systemd-nspawn exits
 * 133 when the machine reboots, and the supervisor boots it again; any other exit (a poweroff) ends
 * the supervisor. The supervisor's pid is the machine's pid in the lab record.
 */
export interface MachineRef {
  name: string;
  /** The machine's directory: upper/, work/, root/, boot.sh, console.log, pid. */
  dir: string;
  link: MachineLink;
}

const NSPAWN = '/usr/bin/systemd-nspawn';
export const REBOOT_EXIT = 133;

/** Root, systemd-nspawn, ip, nsenter, sshd and sudo on this machine (the machines boot from its own tree). */
export async function checkMachinePrerequisites(): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new PrerequisiteError(
      '`lab up --hosts` must run as root: it mounts overlays, makes network namespaces and boots machines.',
      { hint: 'Run it as root (sudo -E vaultops lab up --hosts ...).' },
    );
  }
  const missing: string[] = [];
  if (!existsSync(NSPAWN)) missing.push('systemd-container (systemd-nspawn)');
  if (!existsSync('/lib/systemd/systemd') && !existsSync('/usr/lib/systemd/systemd')) missing.push('systemd');
  if (!existsSync('/usr/sbin/sshd')) missing.push('openssh-server');
  if (!existsSync('/usr/bin/sudo')) missing.push('sudo');
  if (!existsSync('/usr/bin/nsenter')) missing.push('util-linux (nsenter)');
  if (!existsSync('/usr/sbin/ip') && !existsSync('/sbin/ip') && !existsSync('/bin/ip')) missing.push('iproute2');
  if (missing.length) {
    const pkgs = missing.map((m) => m.split(' ')[0]).join(' ');
    throw new PrerequisiteError(
      `\`lab up --hosts\` needs ${missing.join(', ')} on this machine: the lab machines boot from its own root tree.`,
      { hint: `apt-get install -y ${pkgs}` },
    );
  }
}

function supervisorScript(m: MachineRef, p: MachinePaths): string {
  const args = [
    NSPAWN,
    '-D',
    p.root,
    `--network-namespace-path=/run/netns/${m.link.netns}`,
    '-M',
    m.name,
    '--register=no',
    '--keep-unit',
    '-b',
    '--console=read-only',
  ];
  return [
    '#!/bin/sh',
    `# Written by \`vaultops lab up --hosts\`: keeps lab machine ${m.name} booted across reboots.`,
    '# SIGTERM powers the machine off (systemd-nspawn turns it into an orderly shutdown).',
    'stopping=0',
    'child=',
    'trap \'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null\' TERM INT',
    'while :; do',
    `  ${args.map((a) => `'${a}'`).join(' ')} </dev/null &`,
    '  child=$!',
    '  while :; do wait "$child"; rc=$?; kill -0 "$child" 2>/dev/null || break; done',
    '  child=',
    `  echo "[supervisor] systemd-nspawn exited with $rc at $(date -u +%FT%TZ)"`,
    `  [ "$stopping" -eq 0 ] && [ "$rc" -eq ${REBOOT_EXIT} ] || exit "$rc"`,
    'done',
    '',
  ].join('\n');
}

/** Starts the supervisor (which boots the machine). Returns its pid, also written to DIR/pid. */
export function bootMachine(m: MachineRef): number {
  const p = machinePaths(m.dir);
  const script = join(m.dir, 'boot.sh');
  writeFileSync(script, supervisorScript(m, p), { mode: 0o700 });
  const fd = openSync(p.console, 'a', 0o600);
  try {
    const child = spawn('/bin/sh', [script], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', SYSTEMD_LOG_LEVEL: 'warning' },
    });
    child.unref();
    if (child.pid === undefined) throw new VaultopsError(`Could not start the supervisor of machine ${m.name}.`);
    writeFileSync(join(m.dir, 'pid'), `${child.pid}\n`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

export function supervisorPid(m: { dir: string }): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(join(m.dir, 'pid'), 'utf8'), 10);
    return Number.isFinite(pid) && isAlive(pid) && cmdline(pid).includes(join(m.dir, 'boot.sh')) ? pid : undefined;
  } catch {
    return undefined;
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

function allPids(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

/** Every process of this machine kind that belongs to the machine: its supervisor and systemd-nspawn. */
function machineProcesses(m: { dir: string }): number[] {
  const marker = join(m.dir, 'root');
  return allPids().filter((pid) => {
    const c = cmdline(pid);
    return c.includes(join(m.dir, 'boot.sh')) || (c.includes('systemd-nspawn') && c.includes(marker));
  });
}

/** The host pid of the machine's PID 1 (systemd), when it is booted. */
export function machineInitPid(m: { dir: string }): number | undefined {
  const nspawn = machineProcesses(m).filter((pid) => cmdline(pid).includes('systemd-nspawn'));
  if (nspawn.length === 0) return undefined;
  for (const pid of allPids()) {
    const parent = parentOf(pid);
    if (parent === undefined || !nspawn.includes(parent)) continue;
    try {
      const nspid = /^NSpid:\s+(.*)$/m
        .exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
        ?.trim()
        .split(/\s+/);
      if (nspid && nspid.length > 1 && nspid[nspid.length - 1] === '1') return pid;
    } catch {
      /* gone */
    }
  }
  return undefined;
}

/** Runs a command inside a booted machine as its root (nsenter into every namespace of its PID 1). */
export async function execInMachine(
  m: { name: string; dir: string },
  command: string[],
  timeoutMs = 60_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const pid = machineInitPid(m);
  if (pid === undefined)
    throw new VaultopsError(`Machine ${m.name} is not running.`, {
      hint: 'Start it with `vaultops lab up --name LAB`.',
    });
  return run('nsenter', ['-t', String(pid), '-a', '--', ...command], { timeoutMs });
}

export function consoleTail(m: { dir: string }, lines = 15): string[] {
  try {
    return lastLines(readFileSync(machinePaths(m.dir).console, 'utf8'), lines);
  } catch {
    return [];
  }
}

function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolveOpen) => {
    const s = connect({ host, port, timeout: 1000 });
    s.once('connect', () => {
      s.destroy();
      resolveOpen(true);
    });
    s.once('error', () => resolveOpen(false));
    s.once('timeout', () => {
      s.destroy();
      resolveOpen(false);
    });
  });
}

/**
 * Waits until the machine has booted: systemd running (or degraded), ssh.service and the server's
 * unit active, and the server's API port open. Throws with the unit's journal when the unit
 * failed, and with the console's last lines when the machine stops or does not get there in time.
 */
export async function waitBooted(m: MachineRef, unit: string, apiPort: number, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'not booted yet';
  for (;;) {
    if (supervisorPid(m) === undefined) throw machineFailed(m, 'stopped while booting');
    if (machineInitPid(m) !== undefined) {
      const st = await execInMachine(m, ['systemctl', 'is-system-running'], 15_000).catch(() => undefined);
      const state = st?.stdout.trim() ?? '';
      if (state === 'running' || state === 'degraded') {
        const units = await execInMachine(
          m,
          ['systemctl', 'is-active', 'ssh.service', `${unit}.service`],
          15_000,
        ).catch(() => undefined);
        const [ssh, server] = (units?.stdout ?? '').trim().split('\n');
        if (server === 'failed')
          throw machineFailed(m, `could not start ${unit}.service`, await unitJournal(m, unit).catch(() => []));
        if (ssh === 'active' && server === 'active' && (await portOpen(m.link.ip, apiPort))) return;
        last = `systemd ${state}; ssh.service ${ssh ?? '?'}, ${unit}.service ${server ?? '?'}`;
      } else {
        last = `systemd ${state || 'starting'}`;
      }
    }
    if (Date.now() > deadline)
      throw machineFailed(
        m,
        `did not finish booting within ${Math.round(timeoutMs / 1000)} s (${last})`,
        await unitJournal(m, unit).catch(() => []),
      );
    await sleep(300);
  }
}

/** The machine's failed units and the last lines of the server unit's journal, for error details. */
export async function unitJournal(m: MachineRef, unit: string, lines = 15): Promise<string[]> {
  const failed = await execInMachine(m, ['systemctl', '--failed', '--no-legend', '--plain'], 15_000);
  const journal = await execInMachine(
    m,
    ['journalctl', '-u', `${unit}.service`, '-n', String(lines), '--no-pager', '-o', 'short-iso'],
    15_000,
  );
  return [
    `failed units: ${failed.stdout.trim().replace(/\n/g, '; ') || 'none'}`,
    `journalctl -u ${unit}.service:`,
    ...lastLines(journal.stdout, lines).map((l) => `  ${l}`),
  ];
}

export function machineFailed(m: { name: string; dir: string }, what: string, extra: string[] = []): VaultopsError {
  return new VaultopsError(`Lab machine ${m.name} ${what}.`, {
    details: [...extra, `last lines of ${machinePaths(m.dir).console}:`, ...consoleTail(m).map((l) => `  ${l}`)],
    hint: 'Read the lines above; `vaultops lab destroy --name LAB` removes the lab so it can be made anew.',
  });
}

/** Reboots the machine from inside (`systemctl reboot`); the supervisor boots it again. */
export async function rebootMachine(m: MachineRef): Promise<void> {
  const before = machineInitPid(m);
  if (before === undefined || supervisorPid(m) === undefined)
    throw new VaultopsError(`Machine ${m.name} is not running; nothing to reboot.`, {
      hint: 'Start its lab with `vaultops lab up --name LAB`.',
    });
  await execInMachine(m, ['systemctl', 'reboot'], 30_000);
  const deadline = Date.now() + 60_000;
  while (machineInitPid(m) === before) {
    if (Date.now() > deadline) throw machineFailed(m, 'did not go down within 60 s of `systemctl reboot`');
    await sleep(100);
  }
}

/**
 * Powers the machine off (SIGTERM to the supervisor: an orderly shutdown, units stopped with their
 * KillSignal), then kills what is left after timeoutMs. Returns whether it was running.
 */
export async function powerOff(m: { name: string; dir: string }, timeoutMs = 60_000): Promise<boolean> {
  const sup = supervisorPid(m);
  const procs = machineProcesses(m);
  if (sup === undefined && procs.length === 0) return false;
  if (sup !== undefined) signal(sup, 'SIGTERM');
  else for (const pid of procs) signal(pid, 'SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (machineProcesses(m).length && Date.now() < deadline) await sleep(200);
  const init = machineInitPid(m);
  for (const pid of [...machineProcesses(m), ...(init ? [init] : [])]) signal(pid, 'SIGKILL');
  while (machineProcesses(m).length) await sleep(50);
  return true;
}

/** Everything a machine holds on this machine, gone: processes, the root mount, the namespace and veth. Idempotent. */
export async function tearDownMachine(m: MachineRef): Promise<void> {
  await powerOff(m, 30_000);
  await unmountRoot(machinePaths(m.dir));
  await removeMachineLink(m.link);
}

/** The memory of a running machine: the sum of the resident sets of the processes in its pid namespace (KiB). */
export function machineRssKiB(m: { dir: string }): number {
  const init = machineInitPid(m);
  if (init === undefined) return 0;
  const ns = (pid: number) => {
    try {
      return readFileSync(`/proc/${pid}/status`, 'utf8');
    } catch {
      return '';
    }
  };
  const pidNs = (pid: number) => readlink(`/proc/${pid}/ns/pid`);
  const target = pidNs(init);
  let total = 0;
  for (const pid of allPids()) {
    if (pidNs(pid) !== target) continue;
    total += Number(/^VmRSS:\s+(\d+)/m.exec(ns(pid))?.[1] ?? 0);
  }
  return total;
}

function readlink(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
