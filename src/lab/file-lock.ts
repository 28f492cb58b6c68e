import { mkdirSync, openSync, closeSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { sleep } from '../core/sleep.js';

/**
 * A lock file holding the owner's pid, for work two processes must not do at once (building the
 * same binary). A lock whose process is gone is stale and taken over.
 */
export async function withFileLock<T>(path: string, onWait: (message: string) => void, fn: () => Promise<T>): Promise<T> {
  mkdirSync(dirname(path), { recursive: true });
  let announced = false;
  for (;;) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const owner = Number.parseInt(safeRead(path), 10);
      if (!Number.isFinite(owner) || !isAlive(owner)) {
        rmSync(path, { force: true });
        continue;
      }
      if (!announced) onWait(`Waiting for process ${owner}, which is doing the same work (${path})...`);
      announced = true;
      await sleep(1000);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(path, { force: true });
  }
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
