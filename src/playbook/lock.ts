import { mkdirSync, openSync, writeSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { GateError } from '../core/errors.js';

export interface LockOwner {
  runId: string;
  pid: number;
  host: string;
  user: string;
  startedAt: string;
  playbook: string;
}

/** One lock per cluster (its name and node addresses), so two runs never act on it at once. */
export function lockPath(stateDir: string, cluster: string, apiAddrs: readonly string[]): string {
  const id = createHash('sha256').update([...apiAddrs].sort().join('\n')).digest('hex').slice(0, 12);
  return join(stateDir, 'locks', `${cluster.replace(/[^A-Za-z0-9_.-]/g, '_')}-${id}.lock`);
}

export function readLock(path: string): LockOwner | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as LockOwner;
  } catch {
    return undefined;
  }
}

function alive(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return true; // cannot tell: assume it runs
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the cluster lock. A lock held by a live process refuses; a stale one (its process is gone)
 * is taken over only when `breakStale` is set or it belongs to the run being resumed.
 */
export function acquireLock(path: string, owner: LockOwner, options: { breakStale: boolean; resumeOf?: string | undefined }): () => void {
  mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, JSON.stringify(owner));
      closeSync(fd);
      return () => {
        const cur = readLock(path);
        if (cur && cur.runId === owner.runId && cur.pid === owner.pid) rmSync(path, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const cur = readLock(path);
    if (!cur) {
      rmSync(path, { force: true });
      continue;
    }
    const who = `run ${cur.runId} (${cur.playbook}) by ${cur.user}@${cur.host}, pid ${cur.pid}, since ${cur.startedAt}`;
    if (alive(cur)) {
      throw new GateError(`Another run holds the lock of this cluster: ${who}.`, { hint: 'Wait for it to finish; two runs must never act on one cluster at once.' });
    }
    if (options.breakStale || (options.resumeOf !== undefined && cur.runId === options.resumeOf)) {
      rmSync(path, { force: true });
      continue;
    }
    throw new GateError(`The lock of this cluster is stale: ${who}, and that process is gone.`, {
      hint: `If that run is really dead, run again with --break-lock (or \`vaultops resume ${cur.runId}\` to continue it).`,
    });
  }
  throw new GateError(`Could not take the cluster lock ${path}.`);
}
