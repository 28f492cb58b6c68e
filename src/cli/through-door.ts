import type { Prompter } from '../core/prompter.js';
import { stateDir } from '../core/state-dir.js';
import { openDoor, type Door } from '../playbook/door.js';
import type { LockMode } from '../playbook/lock.js';
import { err } from '../ui/output.js';
import type { ConnectedCluster } from './cluster-from-inventory.js';
import { catchInterrupts, type Interrupts } from './interrupts.js';

export interface DoorOptions {
  /** What the lock shows to others: `restore`, `rotate`, `upgrade --strategy rolling`... */
  operation: string;
  mode?: LockMode | undefined;
  breakLock?: boolean | undefined;
  /** The typed confirmation of the cluster name, asked once the locks are held. */
  confirm?: { prompter: Prompter; message: string } | undefined;
  /** What the first Ctrl-C does, in words: "stopping the backup (the partial file is removed)". */
  onInterrupt: string;
  runId?: string | undefined;
  resumeOf?: string | undefined;
}

/**
 * Runs a command's use case behind the one door (locks, confirmation) with the one interrupt
 * handler, the same rules `vaultops run` keeps: a held lock refuses with exit 4 before anything
 * changes, the first signal stops at the next safe point (exit 130 through InterruptedError), a
 * second exits at once after releasing the local lock.
 */
export async function throughDoor<T>(
  conn: Pick<ConnectedCluster, 'name' | 'spec' | 'client'>,
  o: DoorOptions,
  body: (door: Door, interrupts: Interrupts) => Promise<T>,
): Promise<T> {
  const interrupts = catchInterrupts(o.onInterrupt);
  let door: Door | undefined;
  try {
    door = await openDoorFor(conn, o, interrupts.signal);
    const opened = door;
    interrupts.onHardExit(() => opened.closeNow());
    return await body(door, interrupts);
  } finally {
    interrupts.dispose();
    await door?.close();
  }
}

/**
 * The door for one cluster of the inventory, for callers that handle interrupts themselves (a
 * fleet backup has one handler for all its clusters).
 */
export function openDoorFor(
  conn: Pick<ConnectedCluster, 'name' | 'spec' | 'client'>,
  o: Omit<DoorOptions, 'onInterrupt'>,
  signal: AbortSignal,
): Promise<Door> {
  return openDoor({
    stateDir: stateDir(),
    cluster: conn.client,
    clusterName: conn.name,
    spec: conn.spec,
    operation: o.operation,
    mode: o.mode ?? 'exclusive',
    breakLock: o.breakLock === true,
    runId: o.runId,
    resumeOf: o.resumeOf,
    confirm: o.confirm,
    signal,
    warn: (m) => err.line(`warning: ${conn.name}: ${m}`),
  });
}
