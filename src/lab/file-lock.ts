import { randomBytes } from 'node:crypto';
import { mkdirSync, openSync, closeSync, linkSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * A lock file naming its owner, for work two processes must not do at once (building the same
 * binary, allocating lab slots). The record is "pid start-time boot-id": a pid alone would read as
 * alive forever when it is reused or names a process that never ends (pid 1), so a lock whose pid
 * is gone, started at another time or belongs to another boot is stale and taken over. The record is written to a private temp file and linked into place, so the lock
 * never exists empty (a reader would take an empty one for stale).
 */
export async function withFileLock<T>(
  path: string,
  onWait: (message: string) => void,
  fn: () => Promise<T>,
): Promise<T> {
  mkdirSync(dirname(path), { recursive: true });
  let announced = false;
  for (;;) {
    if (tryTake(path)) break;
    const text = safeRead(path);
    if (!holderAlive(text)) {
      rmSync(path, { force: true });
      continue;
    }
    if (!announced)
      onWait(`Waiting for process ${Number.parseInt(text, 10)}, which is doing the same work (${path})...`);
    announced = true;
    await new Promise((r) => setTimeout(r, 1000));
  }
  try {
    return await fn();
  } finally {
    rmSync(path, { force: true });
  }
}

function tryTake(path: string): boolean {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, ownerRecord(process.pid));
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return false;
  } finally {
    rmSync(tmp, { force: true });
  }
}

function ownerRecord(pid: number): string {
  return `${pid} ${processStart(pid) ?? '-'} ${bootId() ?? '-'}`;
}

/** Whether the lock's record names a live process: same pid, same start time, same boot. */
function holderAlive(text: string): boolean {
  const [pidText, start, boot] = text.trim().split(/\s+/);
  const pid = Number.parseInt(pidText ?? '', 10);
  if (!Number.isFinite(pid) || pid <= 0 || !isAlive(pid)) return false;
  // Without /proc (not Linux) there is nothing more to compare: the pid has to do.
  const nowStart = processStart(pid);
  if (nowStart === undefined) return true;
  // A record of only a pid was written by an older vaultops: alive while that pid is a Node
  // process (pid 1, or any other program that took over the pid, is not).
  if (start === undefined) return /node/.test(safeRead(`/proc/${pid}/cmdline`).split('\0')[0] ?? '');
  if (start !== nowStart) return false;
  const nowBoot = bootId();
  return boot === undefined || boot === '-' || nowBoot === undefined || boot === nowBoot;
}

/** The process's start time in clock ticks since boot (/proc/PID/stat field 22). */
function processStart(pid: number): string | undefined {
  const stat = safeRead(`/proc/${pid}/stat`);
  // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return stat && rest.length > 19 ? rest[19] : undefined;
}

function bootId(): string | undefined {
  return safeRead('/proc/sys/kernel/random/boot_id').trim() || undefined;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
