import { dirname, join } from 'node:path';
import { GateError, InputError, VaultopsError } from '../core/errors.js';
import { shq, type Host } from './host.js';

/**
 * Starting and stopping the server process on a host. Stop is always a clean stop followed by a
 * wait until the process is gone (the lab manager sends SIGTERM; systemd sends the unit's
 * KillSignal, SIGINT in both vendors' units): HashiCorp's upgrade guide (vault-ha-upgrade) asks for
 * SIGINT/SIGTERM so the active node releases the HA lock at once; a kill would make the cluster
 * wait for the lock to time out.
 */
export interface ServiceManager {
  readonly kind: 'systemd' | 'lab';
  status(): Promise<{ running: boolean; pid?: number | undefined }>;
  start(): Promise<void>;
  /** A clean stop, then wait until the process is gone (throws when it is still there after timeoutMs). */
  stop(timeoutMs?: number): Promise<void>;
  /** What `stop` does, for progress lines: "SIGTERM", or "systemctl stop vault (KillSignal SIGINT)". */
  describeStop(): Promise<string>;
  /** The last lines of the server's log, for halts. */
  logTail(lines?: number): Promise<string[]>;
}

export interface ServiceSpec {
  manager?: 'systemd' | 'lab' | undefined;
  name?: string | undefined;
  binary?: string | undefined;
  config?: string | undefined;
  log_file?: string | undefined;
}

export function serviceManager(host: Host, spec: ServiceSpec | undefined, defaultUnit: string): ServiceManager {
  const manager = spec?.manager ?? 'systemd';
  if (manager === 'systemd') return new SystemdService(host, spec?.name ?? defaultUnit, spec?.log_file);
  if (!spec?.config)
    throw new InputError(
      `Node ${host.name}: the lab service manager needs service.config (its node directory holds service.sh).`,
    );
  return new LabService(
    host,
    join(dirname(spec.config), 'service.sh'),
    spec.log_file ?? join(dirname(spec.config), 'server.log'),
  );
}

/** The lab manager: <node dir>/service.sh written by `lab up --ssh` (src/lab/ssh-hosts.ts). */
export class LabService implements ServiceManager {
  readonly kind = 'lab' as const;
  constructor(
    readonly host: Host,
    readonly script: string,
    readonly logFile: string,
  ) {}

  async status(): Promise<{ running: boolean; pid?: number }> {
    const r = await this.host.exec(`${shq(this.script)} status`);
    const pid = /running (\d+)/.exec(r.stdout)?.[1];
    return r.code === 0 && pid ? { running: true, pid: Number(pid) } : { running: false };
  }

  async start(): Promise<void> {
    const r = await this.host.exec(`${shq(this.script)} start`, { timeoutMs: 30_000 });
    if (r.code !== 0)
      throw new VaultopsError(`Could not start the server on ${this.host.name}: ${(r.stderr || r.stdout).trim()}`, {
        details: await this.logTail(),
      });
  }

  async stop(timeoutMs = 60_000): Promise<void> {
    const r = await this.host.exec(`${shq(this.script)} stop ${Math.ceil(timeoutMs / 1000)}`, {
      timeoutMs: timeoutMs + 15_000,
    });
    if (r.code !== 0)
      throw new VaultopsError(
        `The server on ${this.host.name} did not stop after SIGTERM within ${Math.round(timeoutMs / 1000)} s: ${r.stdout.trim()}`,
        { details: await this.logTail() },
      );
  }

  async logTail(lines = 20): Promise<string[]> {
    const r = await this.host.exec(`tail -n ${lines} -- ${shq(this.logFile)}`);
    return r.stdout.split('\n').filter(Boolean);
  }

  describeStop(): Promise<string> {
    return Promise.resolve('SIGTERM');
  }
}

/**
 * systemd over SSH. `systemctl stop` sends the unit's KillSignal (SIGTERM unless the unit says
 * otherwise; the vendors' units say SIGINT) and waits up to TimeoutStopSec; we also wait until the
 * old MainPID no longer exists, so a binary swap never races a process still shutting down.
 */
export class SystemdService implements ServiceManager {
  readonly kind = 'systemd' as const;
  constructor(
    readonly host: Host,
    readonly unit: string,
    readonly logFile?: string | undefined,
  ) {}

  /**
   * The unit's state, main PID and KillSignal, in one remote command. Through sudo: asked first at
   * the gates (status), a sudo that wants a password must stop the run before any change.
   */
  async #show(): Promise<{ active: boolean; pid?: number | undefined }> {
    const r = await this.host.exec(`systemctl show -p ActiveState -p MainPID -p KillSignal -- ${shq(this.unit)}`, {
      sudo: true,
    });
    if (
      r.code !== 0 &&
      /password is required|terminal is required|not in the sudoers|may not run sudo/i.test(r.stderr)
    ) {
      throw new GateError(
        `sudo on ${this.host.name} refused \`sudo -n\` (${r.stderr.trim().split('\n')[0]}); no server was touched.`,
        {
          hint: `vaultops runs root commands with \`sudo -n\` (never a password prompt): give the SSH user passwordless sudo on ${this.host.name} (e.g. "ops ALL=(root) NOPASSWD: /usr/bin/systemctl, /usr/bin/install" in /etc/sudoers.d), or log in as root.`,
        },
      );
    }
    if (r.code !== 0) return { active: false };
    // `systemctl show` prints Key=Value lines in its own order, not the order asked.
    const props = new Map(
      r.stdout.split('\n').map((l) => [l.slice(0, Math.max(0, l.indexOf('='))), l.slice(l.indexOf('=') + 1).trim()]),
    );
    this.#stopDescription ??= stopDescription(this.unit, props.get('KillSignal'));
    const pid = Number.parseInt(props.get('MainPID') ?? '', 10);
    return { active: props.get('ActiveState') === 'active', pid: pid > 0 ? pid : undefined };
  }

  async status(): Promise<{ running: boolean; pid?: number }> {
    const s = await this.#show();
    return s.active ? { running: true, ...(s.pid ? { pid: s.pid } : {}) } : { running: false };
  }

  async start(): Promise<void> {
    // reset-failed first: a unit that failed to start a few times (a broken build, rolled back)
    // hits systemd's start rate limit (StartLimitBurst), and a deliberate start would then be
    // refused with 'start-limit-hit' although nothing is wrong any more.
    const r = await this.host.exec(
      `systemctl reset-failed ${shq(this.unit)} 2>/dev/null; systemctl start ${shq(this.unit)}`,
      {
        sudo: true,
        timeoutMs: 120_000,
      },
    );
    if (r.code !== 0)
      throw new VaultopsError(`systemctl start ${this.unit} on ${this.host.name} failed: ${r.stderr.trim()}`, {
        details: await this.logTail(),
      });
  }

  async stop(timeoutMs = 60_000): Promise<void> {
    const { pid } = await this.#show();
    const r = await this.host.exec(`systemctl stop ${shq(this.unit)}`, { sudo: true, timeoutMs: timeoutMs + 15_000 });
    if (r.code !== 0)
      throw new VaultopsError(`systemctl stop ${this.unit} on ${this.host.name} failed: ${r.stderr.trim()}`, {
        details: await this.logTail(),
      });
    if (pid === undefined) return;
    const w = await this.host.exec(
      `i=0; while [ -d /proc/${pid} ] && ! grep -q '^State:.*Z' /proc/${pid}/status 2>/dev/null; do i=$((i+1)); [ $i -gt ${Math.ceil(timeoutMs / 100)} ] && exit 4; sleep 0.1; done`,
      { timeoutMs: timeoutMs + 15_000 },
    );
    if (w.code !== 0)
      throw new VaultopsError(
        `PID ${pid} of ${this.unit} on ${this.host.name} is still there ${Math.round(timeoutMs / 1000)} s after the stop.`,
        { details: await this.logTail() },
      );
  }

  async logTail(lines = 20): Promise<string[]> {
    const cmd = this.logFile
      ? `tail -n ${lines} -- ${shq(this.logFile)}`
      : `journalctl -u ${shq(this.unit)} -n ${lines} --no-pager -o short-iso`;
    const r = await this.host.exec(cmd, { sudo: !this.logFile });
    return r.stdout.split('\n').filter(Boolean);
  }

  #stopDescription: string | undefined;

  /** Asked once (or learnt from `status`): the unit's KillSignal as systemd reports it. */
  async describeStop(): Promise<string> {
    if (!this.#stopDescription) await this.#show();
    return (this.#stopDescription ??= stopDescription(this.unit, undefined));
  }
}

/** "systemctl stop UNIT (KillSignal SIGINT)": systemd prints a number on older versions, a name on newer. */
function stopDescription(unit: string, raw: string | undefined): string {
  const name = raw && /^SIG[A-Z0-9]+$/.test(raw) ? raw : SIGNAL_NAMES[Number(raw)];
  return `systemctl stop ${unit} (${name ? `KillSignal ${name}` : "the unit's KillSignal"})`;
}

/** Linux signal numbers a unit's KillSignal may hold. */
const SIGNAL_NAMES: Record<number, string> = { 1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 9: 'SIGKILL', 15: 'SIGTERM' };
