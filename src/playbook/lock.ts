import {
  closeSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { GateError } from '../core/errors.js';

export type LockMode = 'exclusive' | 'shared';

export interface LockOwner {
  runId: string;
  pid: number;
  host: string;
  user: string;
  startedAt: string;
  /** What holds the lock: a playbook name or a command (`restore`, `upgrade --strategy rolling`). */
  playbook: string;
  mode?: LockMode | undefined;
  /** Unique per acquisition: a takeover removes exactly the lock it judged stale, never a newer one. */
  nonce?: string | undefined;
  /** The holder's start time in clock ticks since boot (/proc/PID/stat field 22), against pid reuse. */
  procStart?: string | undefined;
  /** The kernel's boot id: a lock from before a reboot is stale whatever its pid. */
  bootId?: string | undefined;
}

export interface LockRequest {
  stateDir: string;
  /** Identities of the cluster (see clusterLockKeys); every one is locked, in this order. */
  keys: readonly string[];
  owner: Omit<LockOwner, 'nonce' | 'procStart' | 'bootId' | 'mode'>;
  mode: LockMode;
  /** --break-lock: take over a stale lock, or one held from another host. */
  breakLock: boolean;
  /** The run being resumed may take over its own stale lock. */
  resumeOf?: string | undefined;
}

/**
 * The identities one cluster is locked under. The server's cluster id makes two inventories that
 * name one cluster differently share a lock; the normalised node addresses (scheme, case, trailing
 * slash and default port ignored) cover a sealed or unreachable cluster, whose id nobody can read.
 */
export function clusterLockKeys(apiAddrs: readonly string[], clusterId: string | undefined): string[] {
  const norm = [...new Set(apiAddrs.map(normaliseAddr))].sort();
  const keys = [`addr-${createHash('sha256').update(norm.join('\n')).digest('hex').slice(0, 16)}`];
  if (clusterId) keys.unshift(`id-${clusterId.replace(/[^A-Za-z0-9_.-]/g, '_')}`);
  return keys;
}

function normaliseAddr(addr: string): string {
  try {
    const u = new URL(addr);
    const port = u.port || (u.protocol === 'http:' ? '80' : '443');
    return `${u.hostname.toLowerCase()}:${port}`;
  } catch {
    return addr.trim().replace(/\/+$/, '').toLowerCase();
  }
}

export function lockFile(stateDir: string, key: string): string {
  return join(stateDir, 'locks', `${key}.lock`);
}

function readersDir(stateDir: string, key: string): string {
  return join(stateDir, 'locks', `${key}.readers`);
}

export function readLock(path: string): LockOwner | undefined {
  try {
    return parseOwner(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const v = JSON.parse(text) as LockOwner | null;
    return v && typeof v === 'object' && typeof v.pid === 'number' ? v : undefined;
  } catch {
    return undefined;
  }
}

function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

function procStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Whether the holder still runs. Another host's holder cannot be checked from here. */
function holderState(owner: LockOwner): 'alive' | 'dead' | 'other-host' {
  if (owner.host !== hostname()) return 'other-host';
  if (owner.bootId && bootId() && owner.bootId !== bootId()) return 'dead';
  try {
    process.kill(owner.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return 'dead';
  }
  if (owner.procStart && procStart(owner.pid) !== undefined && procStart(owner.pid) !== owner.procStart) return 'dead';
  return 'alive';
}

function describeHolder(o: LockOwner): string {
  const what = o.mode === 'shared' ? 'a read-only' : '';
  return `${what ? `${what} ` : ''}run ${o.runId} (${o.playbook}) by ${o.user}@${o.host}, pid ${o.pid}, since ${o.startedAt}`;
}

/** Writes `content` to a new private file under a unique name, to be linked or renamed into place. */
function writeTemp(dir: string, content: string): string {
  const tmp = join(dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  return tmp;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Takes the cluster's locks (every key of the request). Exclusive holders (anything that changes
 * the cluster) exclude everyone; shared holders (a backup) exclude only exclusive ones.
 *
 * - A lock file appears whole or not at all: it is written to a private temp file and hard-linked
 *   into place, and link(2) fails when the name exists (no window where a reader finds it empty).
 * - A stale lock (its process is gone, or it predates a reboot) is taken over by one process at a
 *   time: the taker first creates `<lock>.break` exclusively, checks the lock is still the very one
 *   it judged stale (its nonce), removes it and links its own. Two takers can never both win.
 * - A lock held from another host cannot be checked from here: only --break-lock passes it.
 *
 * Returns the release function (idempotent; removes only what this process created).
 */
export function acquireLocks(req: LockRequest): () => void {
  const releases: Array<() => void> = [];
  const releaseAll = () => {
    for (const r of releases.splice(0).reverse()) r();
  };
  try {
    for (const key of req.keys)
      releases.push(req.mode === 'exclusive' ? takeExclusive(req, key) : takeShared(req, key));
  } catch (e) {
    releaseAll();
    throw e;
  }
  return releaseAll;
}

function ownerRecord(req: LockRequest): LockOwner {
  return {
    ...req.owner,
    mode: req.mode,
    nonce: randomBytes(12).toString('hex'),
    procStart: procStart(process.pid),
    bootId: bootId(),
  };
}

function takeExclusive(req: LockRequest, key: string): () => void {
  const path = lockFile(req.stateDir, key);
  const dir = join(path, '..');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const me = ownerRecord(req);
  for (let attempt = 0; attempt < 200; attempt++) {
    const tmp = writeTemp(dir, JSON.stringify(me));
    let linked = false;
    try {
      linkSync(tmp, path);
      linked = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      rmSync(tmp, { force: true });
    }
    if (linked) {
      const release = () => removeIfMine(path, me);
      const reader = liveReader(req.stateDir, key);
      if (reader) {
        release();
        throw new GateError(`A read-only operation is running on this cluster: ${describeHolder(reader)}.`, {
          hint: 'Wait for it to finish (a backup takes seconds to minutes), then run again.',
        });
      }
      return release;
    }
    const cur = readLock(path);
    if (cur && cur.runId === me.runId && cur.pid === me.pid) {
      // This process already holds it under another key order: nothing to take.
      return () => undefined;
    }
    assertMayTakeOver(req, cur);
    takeOver(path, cur);
  }
  throw new GateError(`Could not take the cluster lock ${path}: it keeps changing hands.`, { hint: 'Run again.' });
}

function takeShared(req: LockRequest, key: string): () => void {
  const dir = readersDir(req.stateDir, key);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const me = ownerRecord(req);
  const mine = join(dir, `${process.pid}-${me.nonce}.json`);
  renameSync(writeTemp(dir, JSON.stringify(me)), mine);
  const release = () => rmSync(mine, { force: true });
  // Written first, then checked: an exclusive taker links first, then checks the readers, so at
  // least one of two racing processes sees the other.
  const path = lockFile(req.stateDir, key);
  for (let attempt = 0; attempt < 200; attempt++) {
    const cur = readLock(path);
    if (!cur) return release;
    try {
      assertMayTakeOver(req, cur);
      takeOver(path, cur);
    } catch (e) {
      release();
      throw e;
    }
  }
  release();
  throw new GateError(`Could not take the cluster lock ${path}: it keeps changing hands.`, { hint: 'Run again.' });
}

/** Decides about a lock held by someone else: throws when it must be respected. */
function assertMayTakeOver(req: LockRequest, cur: LockOwner | undefined): void {
  if (!cur) return; // vanished (released) or unreadable debris: the next link decides
  const state = holderState(cur);
  const who = describeHolder(cur);
  if (state === 'alive') {
    throw new GateError(`Another run holds the lock of this cluster: ${who}.`, {
      hint: 'Wait for it to finish; two runs must never act on one cluster at once.',
    });
  }
  if (state === 'other-host') {
    if (req.breakLock) return;
    throw new GateError(
      `Another host holds the lock of this cluster: ${who}. Whether it still runs cannot be checked from ${hostname()}.`,
      {
        hint: `Ask on ${cur.host} first. If that run is really dead, run again with --break-lock.`,
      },
    );
  }
  if (req.breakLock || (req.resumeOf !== undefined && cur.runId === req.resumeOf)) return;
  throw new GateError(`The lock of this cluster is stale: ${who}, and that process is gone.`, {
    hint: `If that run is really dead, run again with --break-lock (or \`vaultops resume ${cur.runId}\` to continue it).`,
  });
}

/** Removes the lock judged stale, if it is still that very lock; one taker at a time. */
function takeOver(path: string, stale: LockOwner | undefined): void {
  const breaker = `${path}.break`;
  let fd: number;
  try {
    fd = openSync(breaker, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    // Another process is taking over right now. A breaker left by a taker that died is old.
    try {
      if (Date.now() - statSync(breaker).mtimeMs > 10_000) rmSync(breaker, { force: true });
    } catch {
      // gone meanwhile
    }
    sleepSync(2);
    return;
  }
  try {
    writeSync(fd, String(process.pid));
    closeSync(fd);
    // Remove only a file that is there and is what was judged stale: the very lock (its nonce),
    // or debris that does not parse. An absent file must not be "removed": between reading and
    // unlinking, another process may have linked its fresh lock at that name. Nobody else can
    // replace an existing file meanwhile (takers hold the breaker, linkers get EEXIST).
    let raw: string | undefined;
    try {
      raw = readFileSync(path, 'utf8');
    } catch {
      raw = undefined;
    }
    const cur = raw === undefined ? undefined : parseOwner(raw);
    const same =
      raw !== undefined &&
      (stale === undefined ? cur === undefined : cur?.nonce === stale.nonce && cur?.pid === stale.pid);
    if (same) {
      try {
        unlinkSync(path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
  } finally {
    rmSync(breaker, { force: true });
  }
}

function removeIfMine(path: string, me: LockOwner): void {
  const cur = readLock(path);
  if (cur && cur.nonce === me.nonce && cur.pid === me.pid) rmSync(path, { force: true });
}

/** A shared holder that still runs; dead holders' files are removed on the way. */
function liveReader(stateDir: string, key: string): LockOwner | undefined {
  const dir = readersDir(stateDir, key);
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.json'));
  } catch {
    return undefined;
  }
  for (const name of names) {
    const owner = readLock(join(dir, name));
    if (!owner) continue;
    if (holderState(owner) === 'dead') rmSync(join(dir, name), { force: true });
    else return owner;
  }
  return undefined;
}
