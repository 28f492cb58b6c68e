import { randomBytes } from 'node:crypto';
import { VaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import { sleep } from '../core/sleep.js';
import { shq, type Host } from '../ssh/host.js';
import { SystemdService, type ServiceManager } from '../ssh/services.js';

/**
 * Maintenance of one host of a Raft cluster, with the gates and waits of a rolling upgrade around
 * it (given by the caller, see `NodeWaits`): a command or script run on the host, optionally with
 * the server stopped first and started again after, or the host rebooted. The leader is only
 * taken down by a clean stop after the gate saw every node healthy, so a healthy standby takes
 * over; never a step-down.
 */

/** The rolling upgrade's gates and waits, handed in by the caller (use cases do not import each other). */
export interface NodeWaits {
  /** Throws a GateError unless every node is a healthy voter and the cluster can lose one (tolerance >= 1). */
  gate(): Promise<void>;
  /** After the active node `stopped` was stopped: the node that became active, or undefined in time. */
  newLeader(stopped: string): Promise<string | undefined>;
  /**
   * Starts the server (a no-op when it already runs), unseals it (Shamir), waits until a healthy
   * caught-up voter. Resolves to how much of the stabilization time already ran during that wait
   * (from when the node was seen caught up), so only the rest is paused.
   */
  rejoin(service: ServiceManager): Promise<number>;
  /** Autopilot's server_stabilization_time, paused after each node. */
  stabilizationMs: number;
}

export interface MaintenanceWork {
  /** A shell command run on the host (through sudo when the host uses it). */
  command?: string | undefined;
  /** A local script, copied to the host and run there instead of a command. */
  script?: string | undefined;
  /** Reboot the host after the command; wait for SSH, the service and the node. */
  reboot?: boolean | undefined;
  /** Stop the server before the command and start it after (implied by reboot). */
  restartService?: boolean | undefined;
  /** How long the command may run. */
  commandTimeoutMs?: number | undefined;
}

export interface NodeMaintenanceInput {
  name: string;
  host: Host;
  /** Opens the host again (after a reboot the old connection is gone). */
  reopenHost(): Promise<Host>;
  serviceOn(host: Host): ServiceManager;
  /** Is the node active now (asked just before, not assumed from the plan)? */
  isLeader: boolean;
  work: MaintenanceWork;
  waits: NodeWaits;
  timeoutMs: number;
  emit(message: string): void;
}

export interface CommandResult {
  exitCode: number | null;
  timedOut: boolean;
  /** The last lines of its output (stdout, then stderr), redacted. */
  tail: string[];
}

export interface NodeMaintenanceResult {
  command?: CommandResult | undefined;
  /** The node that took over when the leader went down. */
  newLeader?: string | undefined;
  rebooted: boolean;
  restarted: boolean;
  ms: number;
  /** The host in use at the end (a reboot replaces the connection); the caller closes it. */
  host: Host;
}

/** The node's maintenance stopped; the node itself was brought back when it could be. */
export class MaintenanceHaltedError extends VaultopsError {
  readonly node: string;
  readonly command?: CommandResult | undefined;
  constructor(node: string, message: string, o: { details?: string[]; hint: string; command?: CommandResult }) {
    super(`Maintenance halted at ${node}: ${message}`, { details: o.details ?? [], hint: o.hint });
    this.node = node;
    this.command = o.command;
  }
}

const TAIL_LINES = 20;

export async function maintainNode(o: NodeMaintenanceInput): Promise<NodeMaintenanceResult> {
  const t0 = Date.now();
  const w = o.work;
  const takeDown = w.reboot === true || w.restartService === true;
  let host = o.host;
  let service = o.serviceOn(host);
  await o.waits.gate();

  let newLeader: string | undefined;
  if (takeDown) {
    o.emit(
      `${o.isLeader ? 'leader' : 'standby'}: stopping the server (${await service.describeStop().catch(() => 'a clean stop')}), waiting for the process to exit`,
    );
    await service.stop(o.timeoutMs);
    // systemd refuses a start once the unit started StartLimitBurst times within
    // StartLimitIntervalSec (the vendors' units: 3 in 60 s), which earlier maintenance may have used up.
    if (service instanceof SystemdService)
      await host.exec(`systemctl reset-failed ${shq(service.unit)}`, { sudo: true }).catch(() => undefined);
    if (o.isLeader) {
      // A clean stop releases the HA lock; a standby the gate saw healthy takes over (never a step-down).
      newLeader = await o.waits.newLeader(o.name);
      if (!newLeader) {
        await o.waits.rejoin(service).catch(() => undefined);
        throw new MaintenanceHaltedError(o.name, `no other node became active after ${o.name} (the leader) stopped.`, {
          details: await service.logTail(TAIL_LINES).catch(() => []),
          hint: `${o.name} was started again. Find out why no standby took over (\`vaultops status -i INV\`) before trying again.`,
        });
      }
      o.emit(`stopped; ${newLeader} is the active node now`);
    } else {
      o.emit('stopped');
    }
  }

  let command: CommandResult | undefined;
  if (w.command !== undefined || w.script !== undefined) {
    command = await runOnHost(host, w, (m) => o.emit(m));
    if (command.timedOut || command.exitCode !== 0) {
      // Bring the node back as it was before anything else: the cluster keeps its failure tolerance.
      let back = 'it is a healthy voter again';
      try {
        await o.waits.rejoin(service);
      } catch (e) {
        back = `it did not come back either: ${(e as Error).message}`;
      }
      throw new MaintenanceHaltedError(
        o.name,
        `the ${w.script ? 'script' : 'command'} ${command.timedOut ? 'timed out' : `exited ${command.exitCode ?? 'on a signal'}`}; ${back}.`,
        {
          details: command.tail.length ? ['last lines of its output:', ...command.tail.map((l) => `  ${l}`)] : [],
          hint: 'No other node was touched. Fix the cause on the host, then continue with `vaultops resume RUN_ID` (the run id is printed above).',
          command,
        },
      );
    }
  }

  if (w.reboot) {
    host = await rebootAndReconnect(o, host);
    service = o.serviceOn(host);
    o.emit('back over SSH; waiting for the service and the node');
  }
  if (takeDown || w.command !== undefined || w.script !== undefined) {
    // Started again (after a stop), started by the boot (a no-op start), or left running: in every
    // case the node must be a healthy caught-up voter before the next one goes down.
    await stabilize(o.waits, await o.waits.rejoin(service), (m) => o.emit(m));
  }
  return {
    command,
    newLeader,
    rebooted: w.reboot === true,
    restarted: takeDown,
    ms: Date.now() - t0,
    host,
  };
}

async function runOnHost(host: Host, w: MaintenanceWork, emit: (m: string) => void): Promise<CommandResult> {
  const timeoutMs = w.commandTimeoutMs ?? 600_000;
  let remote: string | undefined;
  let line = w.command ?? '';
  if (w.script !== undefined) {
    remote = `/tmp/vaultops-maintain-${randomBytes(6).toString('hex')}.sh`;
    await host.upload(w.script, remote, { mode: 0o700 });
    line = `sh ${shq(remote)}`;
    emit(`running the script ${w.script}`);
  } else {
    emit('running the command');
  }
  try {
    const r = await host.exec(line, { timeoutMs, maxBytes: 64 * 1024 });
    const tail = outputTail(r.stdout, r.stderr);
    const result = { exitCode: r.code, timedOut: r.timedOut, tail };
    emit(`${w.script ? 'script' : 'command'} exited ${r.timedOut ? '(timed out)' : (r.code ?? 'on a signal')}`);
    return result;
  } finally {
    if (remote) await host.exec(`rm -f -- ${shq(remote)}`).catch(() => undefined);
  }
}

/** The last lines of a command's output, stdout then stderr, each redacted. */
export function outputTail(stdout: string, stderr: string, lines = TAIL_LINES): string[] {
  const all = [
    ...stdout.split('\n').filter((l) => l.trim() !== ''),
    ...stderr
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => `stderr: ${l}`),
  ];
  return all.slice(-lines).map((l) => redactor.redact(l.length > 400 ? `${l.slice(0, 400)}...` : l));
}

/**
 * What tells one boot from the next: the kernel's boot id and the start time of PID 1 (in a
 * container the kernel stays, but PID 1 is new after a reboot).
 */
const BOOT_MARK = "cat /proc/sys/kernel/random/boot_id; awk '{print $22}' /proc/1/stat";

async function rebootAndReconnect(o: NodeMaintenanceInput, host: Host): Promise<Host> {
  const mark = (await host.exec(BOOT_MARK)).stdout.trim();
  o.emit('rebooting the host (systemctl reboot)');
  // The connection may drop before the command returns: its result says nothing.
  await host.exec('systemctl reboot', { sudo: true, timeoutMs: 15_000 }).catch(() => undefined);
  host.close();
  const deadline = Date.now() + o.timeoutMs;
  let last = 'not tried yet';
  while (Date.now() < deadline) {
    await sleep(1000);
    let h: Host | undefined;
    try {
      h = await o.reopenHost();
      const now = (await h.exec(BOOT_MARK, { timeoutMs: 10_000 })).stdout.trim();
      if (now && now !== mark) return h;
      last = 'the host has not gone down yet';
    } catch (e) {
      last = (e as Error).message;
    }
    h?.close();
  }
  throw new MaintenanceHaltedError(o.name, `the host did not come back over SSH within ${o.timeoutMs / 1000} s.`, {
    details: [`last attempt: ${last}`],
    hint: 'Look at the host (console); the other nodes were not touched and keep quorum. Continue with `vaultops resume RUN_ID` once it is back.',
  });
}

/** The rest of the stabilization time, after a rejoin that had already run `stableForMs` of it. */
export async function stabilize(waits: NodeWaits, stableForMs: number, emit: (m: string) => void): Promise<void> {
  const pauseMs = waits.stabilizationMs - Math.min(stableForMs, waits.stabilizationMs);
  emit(
    `healthy voter, caught up; waiting the rest of the stabilization time (${pauseMs} of ${waits.stabilizationMs} ms)`,
  );
  await sleep(pauseMs);
}
