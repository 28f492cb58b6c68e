import { describe, expect, it } from 'vitest';
import type { ExecOptions, ExecResult, Host } from '../../src/ssh/host.js';
import { SystemdService } from '../../src/ssh/services.js';

/** A host that answers `systemctl` the way a machine's systemd does, and records what it ran. */
const ran = (code: number, stdout: string): ExecResult => ({ code, stdout, stderr: '', timedOut: false });

function host(answers: Record<string, ExecResult>): Host & { ran: string[] } {
  const commands: string[] = [];
  return {
    name: 'n1',
    ran: commands,
    exec(command: string, _o?: ExecOptions): Promise<ExecResult> {
      commands.push(command);
      const hit = Object.entries(answers).find(([k]) => command.includes(k));
      return Promise.resolve(hit ? hit[1] : ran(0, ''));
    },
    upload: () => Promise.reject(new Error('not used')),
    fetch: () => Promise.reject(new Error('not used')),
    sha256: () => Promise.resolve(undefined),
    readFile: () => Promise.resolve(''),
    close: () => undefined,
  };
}

describe('SystemdService', () => {
  it("names the unit's KillSignal in what a stop does, from the number older systemd prints", async () => {
    const h = host({ KillSignal: ran(0, 'KillSignal=2\nMainPID=812\nActiveState=active\n') });
    const s = new SystemdService(h, 'openbao');
    expect(await s.describeStop()).toBe('systemctl stop openbao (KillSignal SIGINT)');
    expect(await s.describeStop()).toBe('systemctl stop openbao (KillSignal SIGINT)');
    expect(h.ran.filter((c) => c.includes('KillSignal'))).toHaveLength(1);
  });

  it('keeps a signal name as systemd prints it, and says "the unit\'s KillSignal" when it cannot tell', async () => {
    expect(await new SystemdService(host({ KillSignal: ran(0, 'KillSignal=SIGTERM\n') }), 'vault').describeStop()).toBe(
      'systemctl stop vault (KillSignal SIGTERM)',
    );
    expect(await new SystemdService(host({ KillSignal: ran(1, '') }), 'vault').describeStop()).toBe(
      "systemctl stop vault (the unit's KillSignal)",
    );
  });

  it('reads state, main PID and KillSignal in one remote command, in whatever order systemd prints them', async () => {
    const h = host({ KillSignal: ran(0, 'MainPID=4711\nKillSignal=SIGINT\nActiveState=active\n') });
    const s = new SystemdService(h, 'openbao');
    expect(await s.status()).toEqual({ running: true, pid: 4711 });
    expect(await s.describeStop()).toBe('systemctl stop openbao (KillSignal SIGINT)');
    expect(h.ran).toHaveLength(1);
    const stopped = new SystemdService(host({ KillSignal: ran(0, 'ActiveState=inactive\nMainPID=0\n') }), 'x');
    expect(await stopped.status()).toEqual({ running: false });
  });

  it('stops the run at the gate when sudo wants a password', async () => {
    const h = host({
      KillSignal: { code: 1, stdout: '', stderr: 'sudo: a password is required\n', timedOut: false },
    });
    await expect(new SystemdService(h, 'openbao').status()).rejects.toThrow(/refused `sudo -n`/);
  });

  it("resets the unit's failed state (and start rate limit) before starting it", async () => {
    const h = host({});
    await new SystemdService(h, 'openbao').start();
    expect(h.ran).toEqual(['systemctl reset-failed openbao 2>/dev/null; systemctl start openbao']);
  });
});
