import { GateError, VaultopsError } from '../core/errors.js';
import type { ClusterClient } from './cluster.js';
import type { VaultClient } from './client.js';

/** Who holds the cluster-wide lock, as stored in the KV v2 record. */
export interface ClusterLockRecord {
  run_id: string;
  operation: string;
  user: string;
  host: string;
  pid: number;
  started_at: string;
  expires_at: string;
  released?: boolean;
}

export interface ClusterLockOptions {
  /** KV v2 mount (default `vaultops`) and the record's path in it (default `locks/<cluster>`). */
  mount: string;
  path: string;
  ttlMs: number;
  owner: Omit<ClusterLockRecord, 'expires_at' | 'released'>;
  /** --break-lock: take the record even while another holder's expiry lies ahead. */
  breakLock: boolean;
  /** Called when a renewal finds the record taken by someone else: stop at the next safe point. */
  onLost: (why: string) => void;
}

/** The cluster cannot keep a lock record now: sealed, down, no token, no KV v2 mount or no permission. */
export class ClusterLockUnavailable extends VaultopsError {}

interface Versioned {
  record: ClusterLockRecord | undefined;
  version: number;
}

/**
 * A lock kept in the cluster itself, so runs from several admin hosts and CI runners exclude each
 * other (the local lock only sees this machine). The record is written with KV v2 check-and-set:
 * `cas: 0` creates it only when absent, `cas: N` replaces only version N, so of two writers racing
 * for the same version exactly one wins. The holder renews the expiry every third of the TTL; a
 * holder that died leaves a record that expires, and a released record is marked `released`.
 *
 * A restore replaces the whole storage, this record included: the renewal then finds the record
 * of the snapshot (or none) and writes its own again, unless a live holder's record came back.
 */
export class ClusterLock {
  #version: number;
  #timer: NodeJS.Timeout | undefined;
  #released = false;

  private constructor(
    private readonly cluster: ClusterClient,
    private readonly o: ClusterLockOptions,
    version: number,
  ) {
    this.#version = version;
  }

  static async acquire(cluster: ClusterClient, o: ClusterLockOptions): Promise<ClusterLock> {
    if (!cluster.hasToken) throw new ClusterLockUnavailable('no token to write the lock record with');
    const client = await leaderOrUnavailable(cluster);
    const version = await take(client, o);
    const lock = new ClusterLock(cluster, o, version);
    lock.#timer = setInterval(() => void lock.#renew(), Math.max(1000, Math.floor(o.ttlMs / 3)));
    lock.#timer.unref();
    return lock;
  }

  async #renew(): Promise<void> {
    if (this.#released) return;
    try {
      const client = (await this.cluster.findLeader()).client;
      const res = await writeRecord(client, this.o, this.#record(), this.#version);
      if (res.ok) {
        this.#version = res.version;
        return;
      }
      // Someone wrote the record since our last version: ours still (a lost answer), a restore
      // that brought back an older one, or another holder.
      const cur = await readRecord(client, this.o);
      if (cur.record?.run_id === this.o.owner.run_id && cur.record.pid === this.o.owner.pid) {
        this.#version = cur.version;
        return;
      }
      if (!cur.record || cur.record.released || Date.parse(cur.record.expires_at) < Date.now()) {
        const again = await writeRecord(client, this.o, this.#record(), cur.version);
        if (again.ok) {
          this.#version = again.version;
          return;
        }
      }
      const by = cur.record ? `${cur.record.operation} by ${cur.record.user}@${cur.record.host}` : 'another writer';
      this.o.onLost(`the cluster-wide lock was taken by ${by}`);
    } catch {
      // The cluster did not answer (a leader change, a node restarting): try again next time.
    }
  }

  #record(): ClusterLockRecord {
    return { ...this.o.owner, expires_at: new Date(Date.now() + this.o.ttlMs).toISOString() };
  }

  /** Marks the record released (kept as history). Best effort: an unanswered release expires. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    if (this.#timer) clearInterval(this.#timer);
    try {
      const client = (await this.cluster.findLeader()).client;
      await writeRecord(client, this.o, { ...this.#record(), released: true }, this.#version);
    } catch {
      // It expires on its own.
    }
  }
}

async function leaderOrUnavailable(cluster: ClusterClient): Promise<VaultClient> {
  try {
    return (await cluster.findLeader()).client;
  } catch (e) {
    throw new ClusterLockUnavailable(`no active node answers (${(e as Error).message})`);
  }
}

async function take(client: VaultClient, o: ClusterLockOptions): Promise<number> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const cur = await readRecord(client, o);
    const r = cur.record;
    // The run being resumed on this host finds its own record: the local lock, taken first, has
    // already shown that the process which wrote it is gone.
    const ownRun = r !== undefined && r.run_id === o.owner.run_id && r.host === o.owner.host;
    // A record of this host whose process is gone: a run that ended without its release reaching
    // the cluster (best effort, see release()). Another host's record is judged by its expiry alone.
    const deadHere = r !== undefined && r.host === o.owner.host && !processAlive(r.pid);
    const free = !r || ownRun || deadHere || r.released === true || Date.parse(r.expires_at) < Date.now();
    if (!free && !o.breakLock) {
      throw new GateError(
        `Another run holds the cluster-wide lock of this cluster: ${r.operation} (run ${r.run_id}) by ${r.user}@${r.host}, pid ${r.pid}, since ${r.started_at}, renewed until ${r.expires_at}.`,
        {
          hint: `Wait for it to finish (the record is in ${o.mount}/${o.path}). If that run is really dead, wait until its expiry passes or run again with --break-lock.`,
        },
      );
    }
    const res = await writeRecord(
      client,
      o,
      { ...o.owner, expires_at: new Date(Date.now() + o.ttlMs).toISOString() },
      cur.version,
    );
    if (res.ok) return res.version;
    // Lost a race for this version: look again.
  }
  throw new GateError('Could not take the cluster-wide lock: the record keeps changing.', { hint: 'Run again.' });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: alive, another user's.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readRecord(client: VaultClient, o: ClusterLockOptions): Promise<Versioned> {
  const res = await client.raw('GET', `/${o.mount}/data/${o.path}`);
  if (res.status === 404) return { record: undefined, version: await currentVersion(client, o) };
  if (res.status !== 200) throw unavailable(res.status, res.body, o);
  const body = JSON.parse(res.body.toString('utf8')) as {
    data?: { data?: ClusterLockRecord | null; metadata?: { version?: number } };
  };
  return { record: body.data?.data ?? undefined, version: body.data?.metadata?.version ?? 0 };
}

/** A deleted record answers 404 on data/ but keeps its version in the metadata: CAS needs that. */
async function currentVersion(client: VaultClient, o: ClusterLockOptions): Promise<number> {
  const res = await client.raw('GET', `/${o.mount}/metadata/${o.path}`);
  if (res.status === 404) return 0;
  if (res.status !== 200) throw unavailable(res.status, res.body, o);
  const body = JSON.parse(res.body.toString('utf8')) as { data?: { current_version?: number } };
  return body.data?.current_version ?? 0;
}

async function writeRecord(
  client: VaultClient,
  o: ClusterLockOptions,
  record: ClusterLockRecord,
  cas: number,
): Promise<{ ok: true; version: number } | { ok: false }> {
  const res = await client.raw(
    'POST',
    `/${o.mount}/data/${o.path}`,
    JSON.stringify({ options: { cas }, data: record }),
  );
  if (res.status === 200) {
    const body = JSON.parse(res.body.toString('utf8')) as { data?: { version?: number } };
    return { ok: true, version: body.data?.version ?? cas + 1 };
  }
  if (res.status === 400 && /check-and-set/i.test(res.body.toString('utf8'))) return { ok: false };
  throw unavailable(res.status, res.body, o);
}

function unavailable(status: number, body: Buffer, o: ClusterLockOptions): ClusterLockUnavailable {
  const text = body.toString('utf8').slice(0, 300);
  if (status === 503) return new ClusterLockUnavailable('the cluster is sealed or has no leader (503)');
  if (status === 403) return new ClusterLockUnavailable(`the token may not write ${o.mount}/data/${o.path} (403)`);
  if (status === 404) return new ClusterLockUnavailable(`there is no KV v2 mount at ${o.mount}/ (404)`);
  return new ClusterLockUnavailable(`${o.mount}/data/${o.path} answered ${status}: ${text}`);
}
