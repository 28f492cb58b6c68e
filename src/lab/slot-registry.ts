import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { machineTmpDir } from './paths.js';
import { join } from 'node:path';
import { VaultopsError } from '../core/errors.js';

/**
 * Which loopback slot each lab on this machine owns, across state dirs (tests give every lab its
 * own VAULTOPS_STATE_DIR). Without it a stopped lab's free ports look free to a lab made in another
 * state dir, which takes them, and the stopped lab can never start again. Read and written only
 * under the slot lock (lab.ts); an entry whose lab.json is gone is free again.
 *
 * The registry and its lock live in a directory of this user's own (/tmp/vaultops-UID, 0700,
 * checked to be ours and not a symlink), not at fixed names in the world-writable /tmp, where
 * another user could plant a symlink at the temp name (and have us overwrite a file through it)
 * or a lock file that never goes stale. Labs of other users on the machine are seen by the port
 * checks alone.
 */
export function slotFilesDir(): string {
  const dir = join(machineTmpDir(), `vaultops-${process.getuid?.() ?? 'user'}`);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || st.isSymbolicLink() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o077) !== 0) {
    throw new VaultopsError(
      `${dir} is not a private directory of this user (a directory, owned by uid ${uid}, mode 0700): the lab slot registry will not use it.`,
      {
        hint: `Someone else may have made it. Check it, remove it (rm -r ${dir}), and try again.`,
      },
    );
  }
  return dir;
}

export function slotLockPath(): string {
  return join(slotFilesDir(), 'lab-slots.lock');
}

function registryFile(dir: string): string {
  return join(dir, 'lab-slots.json');
}

function read(dir: string): Record<string, string> {
  try {
    return JSON.parse(readFileSync(registryFile(dir), 'utf8')) as Record<string, string>;
  } catch {
    return {};
  }
}

/** Slots held by other labs (their directory still has a lab.json). */
export function slotsHeldElsewhere(labDirPath: string, dir: string = slotFilesDir()): Set<number> {
  const held = new Set<number>();
  for (const [slot, d] of Object.entries(read(dir)))
    if (d !== labDirPath && existsSync(join(d, 'lab.json'))) held.add(Number(slot));
  return held;
}

export function recordSlot(slot: number, labDirPath: string, dir: string = slotFilesDir()): void {
  const live = Object.fromEntries(
    Object.entries(read(dir)).filter(
      ([s, d]) => Number(s) !== slot && d !== labDirPath && existsSync(join(d, 'lab.json')),
    ),
  );
  live[String(slot)] = labDirPath;
  // A fresh random temp name, created exclusively (O_EXCL does not follow a symlink), then renamed.
  const tmp = join(dir, `lab-slots.json.${process.pid}.${randomBytes(6).toString('hex')}`);
  try {
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, `${JSON.stringify(live)}\n`);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, registryFile(dir));
  } catch {
    rmSync(tmp, { force: true });
    /* a read-only tmp: fall back to the port checks alone */
  }
}
