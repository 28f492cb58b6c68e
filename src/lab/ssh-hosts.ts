import type { RunAs } from './run-as.js';
import { spawn } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { PrerequisiteError, VaultopsError } from '../core/errors.js';
import { FLAVORS } from './binaries.js';
import { lastLines, run } from './exec.js';
import { isAlive } from './file-lock.js';
import type { LabNode, LabRecord } from './lab-record.js';
import { sleep } from '../core/sleep.js';

/**
 * `lab up --ssh`: each lab node becomes a "host" reached the way production hosts are, through a
 * real OpenSSH sshd (Debian's /usr/sbin/sshd) on the node's own loopback address, port 2222,
 * root by key only, with its own host key that the inventory pins. The node's server runs from a
 * node-local binary path (so an upgrade swaps that path, never the shared cache) and is
 * controlled by a small service script, the "lab" service manager:
 *   <node>/service.sh start|stop|status|pid
 */
export const SSH_PORT = 2222;
const SSHD = '/usr/sbin/sshd';

export interface LabSsh {
  keyFile: string;
  /** Per node: the pinned host key line and the sshd pid. */
  nodes: Record<string, { hostKey: string; pid?: number | undefined }>;
}

export function sshDir(lab: LabRecord): string {
  return join(lab.dir, 'ssh');
}

function nodeSshDir(n: LabNode): string {
  return join(n.dir, 'sshd');
}

export function serviceScript(n: LabNode): string {
  return join(n.dir, 'service.sh');
}

/** Keys, sshd configs, node-local binaries and service scripts. Idempotent. */
export async function prepareSshHosts(lab: LabRecord & { ssh?: LabSsh | undefined }): Promise<LabSsh> {
  if (!existsSync(SSHD))
    throw new PrerequisiteError(`${SSHD} is not installed; \`lab up --ssh\` needs a real OpenSSH server.`, {
      hint: 'apt-get install -y openssh-server',
    });
  const dir = sshDir(lab);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = join(dir, 'id_ed25519');
  if (!existsSync(keyFile)) await keygen(keyFile, `vaultops-lab-${lab.name}`);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${keyFile}.pub`), { mode: 0o600 });
  const ssh: LabSsh = { keyFile, nodes: {} };
  const binName = FLAVORS[lab.flavor].binaryName;
  for (const n of lab.nodes) {
    const sdir = nodeSshDir(n);
    mkdirSync(sdir, { recursive: true, mode: 0o700 });
    const hostKey = join(sdir, 'ssh_host_ed25519_key');
    if (!existsSync(hostKey)) await keygen(hostKey, `${lab.name}-${n.name}`);
    writeFileSync(join(sdir, 'sshd_config'), renderSshdConfig(lab, n));
    // The node's own binary path: a hard link to the cached binary (no copy); an upgrade renames a
    // new file over this path, which never changes the cache's file.
    const bin = join(n.dir, 'bin', binName);
    mkdirSync(join(n.dir, 'bin'), { recursive: true });
    if (!existsSync(bin)) {
      try {
        linkSync(lab.binary, bin);
      } catch {
        copyFileSync(lab.binary, bin);
        chmodSync(bin, 0o755);
      }
    }
    n.binary = bin;
    writeFileSync(serviceScript(n), renderServiceScript(n, bin, lab.runAs), { mode: 0o755 });
    ssh.nodes[n.name] = { hostKey: readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ') };
  }
  lab.ssh = ssh;
  return ssh;
}

function renderSshdConfig(lab: LabRecord, n: LabNode): string {
  const sdir = nodeSshDir(n);
  return [
    `# vaultops lab ${lab.name}, node ${n.name}: the node's sshd. Generated; edits are overwritten.`,
    `ListenAddress ${n.ip}:${SSH_PORT}`,
    `HostKey ${join(sdir, 'ssh_host_ed25519_key')}`,
    `PidFile ${join(sdir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(sshDir(lab), 'authorized_keys')}`,
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    // The lab lives under a temp dir whose parents are not root-only; this is a lab.
    'StrictModes no',
    'AllowTcpForwarding yes',
    'X11Forwarding no',
    'PrintMotd no',
    'LogLevel VERBOSE',
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n');
}

/**
 * The lab service manager. stop = SIGTERM to the recorded pid, then wait until it is gone
 * (a zombie counts as gone: in a container PID 1 may never reap it). Exit codes: 0 ok,
 * 3 not running (status), 4 did not stop in time.
 */
function renderServiceScript(n: LabNode, bin: string, runAs?: RunAs): string {
  // setpriv execs the server, so $! is the server's own pid, running as the unprivileged account.
  const drop = runAs ? `setpriv --reuid=${runAs.uid} --regid=${runAs.gid} --clear-groups ` : '';
  return `#!/bin/sh
# vaultops lab service manager for node ${n.name}. Generated; edits are overwritten.
set -u
DIR=${JSON.stringify(n.dir)}
BIN=${JSON.stringify(bin)}
PIDFILE="$DIR/pid"
LOG="$DIR/server.log"
running() {
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  state=$(sed -n 's/^State:[[:space:]]*\\([A-Z]\\).*/\\1/p' "/proc/$pid/status" 2>/dev/null)
  [ "$state" != Z ] || return 1
  tr '\\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$DIR" || return 1
  return 0
}
case "\${1:-}" in
  start)
    if running; then echo "running $pid"; exit 0; fi
    cd "$DIR" || exit 1
    # A clean environment: the server must not inherit anything of the SSH session.
    env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$DIR" setsid ${drop}"$BIN" server -config="$DIR/server.hcl" >>"$LOG" 2>&1 </dev/null &
    echo $! > "$PIDFILE"
    echo "started $!"
    ;;
  stop)
    timeout=\${2:-60}
    if ! running; then echo stopped; exit 0; fi
    kill -TERM "$pid"
    i=0
    while running; do
      i=$((i + 1))
      if [ "$i" -gt $((timeout * 10)) ]; then echo "still running $pid after \${timeout}s"; exit 4; fi
      sleep 0.1
    done
    echo "stopped $pid"
    ;;
  status)
    if running; then echo "running $pid"; exit 0; else echo stopped; exit 3; fi
    ;;
  *)
    echo "usage: $0 start|stop [timeout]|status" >&2; exit 2
    ;;
esac
`;
}

export async function keygen(file: string, comment: string): Promise<void> {
  rmSync(file, { force: true });
  rmSync(`${file}.pub`, { force: true });
  const r = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], {
    timeoutMs: 30_000,
  });
  if (r.code !== 0)
    throw new PrerequisiteError(`ssh-keygen failed: ${r.stderr.trim()}`, { hint: 'apt-get install -y openssh-client' });
}

/** Starts one sshd per node (foreground mode, detached from us) and waits until each accepts TCP. */
export async function startSshds(
  lab: LabRecord & { ssh?: LabSsh | undefined },
  progress: (m: string) => void,
): Promise<void> {
  if (!lab.ssh) return;
  progress(`Starting sshd on ${lab.nodes.map((n) => `${n.ip}:${SSH_PORT}`).join(', ')}...`);
  // Debian's sshd refuses to start without its privilege-separation directory (made by its unit).
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  for (const n of lab.nodes) {
    const rec = lab.ssh.nodes[n.name]!;
    if (rec.pid !== undefined && isOurSshd(rec.pid, n)) continue;
    const sdir = nodeSshDir(n);
    const cfg = join(sdir, 'sshd_config');
    const test = await run(SSHD, ['-t', '-f', cfg], { timeoutMs: 15_000 });
    if (test.code !== 0) throw new VaultopsError(`sshd rejects the config of node ${n.name}: ${test.stderr.trim()}`);
    const fd = openSync(join(sdir, 'sshd.log'), 'a', 0o600);
    try {
      const child = spawn(SSHD, ['-D', '-f', cfg, '-E', join(sdir, 'sshd.log')], {
        detached: true,
        stdio: ['ignore', fd, fd],
        env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
      });
      child.unref();
      rec.pid = child.pid;
    } finally {
      closeSync(fd);
    }
  }
  const deadline = Date.now() + 15_000;
  for (const n of lab.nodes) {
    for (;;) {
      const pid = lab.ssh.nodes[n.name]!.pid;
      if (pid === undefined || !isAlive(pid))
        throw new VaultopsError(`sshd of node ${n.name} exited at start.`, {
          details: lastLines(safeRead(join(nodeSshDir(n), 'sshd.log')), 10),
        });
      if (await accepts(n.ip, SSH_PORT)) break;
      if (Date.now() > deadline)
        throw new VaultopsError(`sshd of node ${n.name} does not accept connections on ${n.ip}:${SSH_PORT}.`, {
          details: lastLines(safeRead(join(nodeSshDir(n), 'sshd.log')), 10),
        });
      await sleep(100);
    }
  }
}

/**
 * Stops the lab's sshds (SIGTERM, wait). Sessions already open end with them. Each node's sshd is
 * found by the pid in the lab record and by the PidFile sshd wrote: a `lab up` killed after it
 * started them but before it recorded them leaves only the latter.
 */
export async function stopSshds(lab: LabRecord & { ssh?: LabSsh | undefined }): Promise<number> {
  const pids: number[] = [];
  for (const n of lab.nodes) {
    const rec = lab.ssh?.nodes[n.name];
    const fromFile = Number.parseInt(safeRead(join(nodeSshDir(n), 'sshd.pid')).trim(), 10);
    for (const p of [rec?.pid, Number.isInteger(fromFile) && fromFile > 0 ? fromFile : undefined])
      if (p !== undefined && !pids.includes(p) && isOurSshd(p, n)) pids.push(p);
    if (rec) rec.pid = undefined;
  }
  for (const p of pids) {
    try {
      process.kill(p, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  const deadline = Date.now() + 10_000;
  while (pids.some(isAlive) && Date.now() < deadline) await sleep(50);
  for (const p of pids.filter(isAlive)) process.kill(p, 'SIGKILL');
  return pids.length;
}

function isOurSshd(pid: number, n: LabNode): boolean {
  try {
    return isAlive(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(nodeSshDir(n));
  } catch {
    return false;
  }
}

function safeRead(f: string): string {
  try {
    return readFileSync(f, 'utf8');
  } catch {
    return '';
  }
}

function accepts(host: string, port: number): Promise<boolean> {
  return import('node:net').then(
    ({ connect }) =>
      new Promise<boolean>((resolve) => {
        const s = connect({ host, port });
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      }),
  );
}
