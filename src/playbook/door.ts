import { GateError, InterruptedError } from '../core/errors.js';
import type { Prompter } from '../core/prompter.js';
import type { ClusterSpec } from '../inventory/schema.js';
import type { ClusterClient } from '../vault/cluster.js';
import { ClusterLock, ClusterLockUnavailable } from '../vault/cluster-lock.js';
import { parseDuration } from '../core/duration.js';
import { newRunId, whoAmI } from './journal.js';
import { acquireLocks, clusterLockKeys, type LockMode } from './lock.js';

export interface DoorRequest {
  stateDir: string;
  cluster: ClusterClient;
  clusterName: string;
  spec: ClusterSpec;
  /** What is being done, as the lock shows it to others: `restore`, `upgrade --strategy rolling`, a playbook name. */
  operation: string;
  /** `exclusive` for anything that changes the cluster; `shared` for a read-only backup. */
  mode: LockMode;
  breakLock: boolean;
  runId?: string | undefined;
  /** The run being resumed may take over its own stale lock. */
  resumeOf?: string | undefined;
  /** A typed confirmation of the cluster name, asked once the locks are held and before any change. */
  confirm?: { prompter: Prompter; message: string } | undefined;
  /** Aborted by the first interrupt; the door's own signal follows it. */
  signal?: AbortSignal | undefined;
  /** Warnings for the operator (the cluster-wide lock could not be used...). */
  warn(message: string): void;
}

export interface Door {
  runId: string;
  /** Aborted on interrupt, or when the cluster-wide lock was lost to another holder. */
  signal: AbortSignal;
  /** Releases the locks; call it in `finally`. Idempotent. */
  close(): Promise<void>;
  /** Releases the local locks at once (a hard exit cannot wait for the cluster). */
  closeNow(): void;
}

/**
 * The one door every operation that changes a cluster goes through, whether it runs a playbook
 * through the engine or calls its use case directly: the local lock (this machine), the
 * cluster-wide lock (every machine), then the typed confirmation, so two runs never act on one
 * cluster at once and nothing destructive starts without the cluster's name typed or given with
 * --confirm. A refused door changes nothing.
 */
export async function openDoor(req: DoorRequest): Promise<Door> {
  const runId = req.runId ?? newRunId();
  const { user, host } = whoAmI();
  const clusterId = await readClusterId(req.cluster);
  const releaseLocal = acquireLocks({
    stateDir: req.stateDir,
    keys: clusterLockKeys(
      req.spec.nodes.map((n) => n.api_addr),
      clusterId,
    ),
    owner: { runId, pid: process.pid, host, user, startedAt: new Date().toISOString(), playbook: req.operation },
    mode: req.mode,
    breakLock: req.breakLock,
    resumeOf: req.resumeOf,
  });
  const controller = new AbortController();
  const onOuter = () => controller.abort(req.signal?.reason);
  if (req.signal?.aborted) onOuter();
  req.signal?.addEventListener('abort', onOuter, { once: true });
  let clusterLock: ClusterLock | undefined;
  const closeNow = () => {
    req.signal?.removeEventListener('abort', onOuter);
    releaseLocal();
  };
  const close = async () => {
    await clusterLock?.release();
    clusterLock = undefined;
    closeNow();
  };
  try {
    // A shared (read-only) holder does not take the cluster-wide lock: it only keeps exclusive
    // runs of this machine away; across machines a backup during a restore fails on its own.
    if (req.mode === 'exclusive') clusterLock = await takeClusterLock(req, { runId, user, host }, controller);
    if (req.confirm) {
      await req.confirm.prompter.confirm({
        message: req.confirm.message,
        expected: req.clusterName,
        source: `--confirm ${req.clusterName}`,
      });
    }
  } catch (e) {
    await close();
    throw e;
  }
  return { runId, signal: controller.signal, close, closeNow };
}

/** The server's cluster id (sys/health needs no token; sealed nodes do not tell it). */
async function readClusterId(cluster: ClusterClient): Promise<string | undefined> {
  const probes = await cluster.probeAll();
  return probes.find((p) => p.health?.body.cluster_id)?.health?.body.cluster_id;
}

async function takeClusterLock(
  req: DoorRequest,
  who: { runId: string; user: string; host: string },
  controller: AbortController,
): Promise<ClusterLock | undefined> {
  const settings = req.spec.lock;
  const mode = settings?.cluster ?? 'auto';
  if (mode === 'off') return undefined;
  const mount = settings?.mount ?? 'vaultops';
  const path = settings?.path ?? `locks/${req.clusterName}`;
  try {
    return await ClusterLock.acquire(req.cluster, {
      mount,
      path,
      ttlMs: parseDuration(settings?.ttl ?? '2m') ?? 120_000,
      owner: {
        run_id: who.runId,
        operation: req.operation,
        user: who.user,
        host: who.host,
        pid: process.pid,
        started_at: new Date().toISOString(),
      },
      breakLock: req.breakLock,
      onLost: (why) => {
        req.warn(`${why}: stopping at the next safe point.`);
        controller.abort(new InterruptedError(`Stopped: ${why}.`));
      },
    });
  } catch (e) {
    if (!(e instanceof ClusterLockUnavailable)) throw e;
    if (mode === 'required') {
      throw new GateError(
        `The cluster-wide lock of ${req.clusterName} cannot be taken: ${e.message}. Nothing was changed.`,
        {
          hint: `lock.cluster is "required" for this cluster. Make ${mount}/ a KV v2 mount the token may write (vault secrets enable -path=${mount} kv-v2), or set lock.cluster: auto to run on the local lock alone while the cluster cannot answer (sealed, down).`,
        },
      );
    }
    req.warn(`the cluster-wide lock is not in use (${e.message}); only this machine's lock guards the run.`);
    return undefined;
  }
}
