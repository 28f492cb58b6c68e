import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PrerequisiteError, VaultopsError } from '../core/errors.js';
import { sleep } from '../core/sleep.js';
import { lastLines, run } from './exec.js';
import type { LabRecord } from './lab-record.js';

/**
 * `lab up --hosts --lb haproxy`: a real HAProxy on this machine in front of the lab's machines,
 * listening on the lab bridge's address (10.213.K.1:8200, never 0.0.0.0). Its configuration is
 * handed in (written by `vaultops lb config`'s renderer, composed in cli/ and the tests): the lab
 * only runs it.
 */
export interface LabLoadBalancer {
  kind: 'haproxy';
  /** https://10.213.K.1:8200: what the inventory's load_balancer.address says. */
  address: string;
  mode: 'active' | 'read';
  config: string;
  pidFile: string;
}

export interface LoadBalancerRequest {
  kind: 'haproxy';
  /** The configuration for the lab's inventory (file path), as `vaultops lb config` writes it. */
  render: (inventoryFile: string) => string;
}

export function labLoadBalancer(dir: string, host: string, port: number): LabLoadBalancer {
  return {
    kind: 'haproxy',
    address: `https://${host}:${port}`,
    mode: 'active',
    config: join(dir, 'lb', 'haproxy.cfg'),
    pidFile: join(dir, 'lb', 'haproxy.pid'),
  };
}

export function writeLoadBalancerConfig(lb: LabLoadBalancer, text: string): void {
  mkdirSync(join(lb.config, '..'), { recursive: true, mode: 0o700 });
  writeFileSync(lb.config, text, { mode: 0o600 });
}

/** The pid of the lab's HAProxy when it runs (its pid file names a live haproxy of this config). */
export function loadBalancerPid(lb: LabLoadBalancer): number | undefined {
  if (!existsSync(lb.pidFile)) return undefined;
  const pid = Number.parseInt(readFileSync(lb.pidFile, 'utf8').trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    // Never signal a process that merely reuses the pid: it must be haproxy with our config.
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return cmdline.some((a) => a.endsWith('haproxy')) && cmdline.includes(lb.config) ? pid : undefined;
  } catch {
    return undefined;
  }
}

export async function startLoadBalancer(lb: LabLoadBalancer, progress: (m: string) => void): Promise<void> {
  if (loadBalancerPid(lb) !== undefined) return;
  const bin = ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy'].find((p) => existsSync(p)) ?? 'haproxy';
  progress(`Starting HAProxy on ${lb.address} in front of the lab (${lb.config})...`);
  let r;
  try {
    r = await run(bin, ['-c', '-q', '-f', lb.config], { timeoutMs: 30_000 });
  } catch {
    throw new PrerequisiteError('`lab up --lb haproxy` needs HAProxy, and it is not installed here.', {
      hint: 'Install it (Debian: apt-get install haproxy), or start the lab without --lb.',
    });
  }
  if (r.code !== 0)
    throw new VaultopsError(`HAProxy refused the lab's configuration ${lb.config}.`, {
      details: lastLines(r.stderr, 8),
    });
  rmSync(lb.pidFile, { force: true });
  // -D: HAProxy daemonises once it listens, so a bind error is reported here, not later.
  r = await run(bin, ['-D', '-p', lb.pidFile, '-f', lb.config], { timeoutMs: 30_000 });
  if (r.code !== 0)
    throw new VaultopsError(`HAProxy did not start on ${lb.address}.`, { details: lastLines(r.stderr, 8) });
  for (let i = 0; i < 50 && loadBalancerPid(lb) === undefined; i++) await sleep(100);
  if (loadBalancerPid(lb) === undefined)
    throw new VaultopsError(`HAProxy started but wrote no pid to ${lb.pidFile}.`, { details: lastLines(r.stderr, 8) });
}

/** SIGTERM to the lab's HAProxy and a wait until it is gone. */
export async function stopLoadBalancer(lb: LabLoadBalancer, progress: (m: string) => void): Promise<boolean> {
  const pid = loadBalancerPid(lb);
  if (pid === undefined) return false;
  progress(`Stopping the lab's HAProxy (${lb.address})...`);
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && loadBalancerPid(lb) !== undefined; i++) await sleep(100);
  if (loadBalancerPid(lb) !== undefined) process.kill(pid, 'SIGKILL');
  rmSync(lb.pidFile, { force: true });
  return true;
}

export function isLoadBalancerRunning(lab: Pick<LabRecord, 'loadBalancer'>): boolean {
  return lab.loadBalancer !== undefined && loadBalancerPid(lab.loadBalancer) !== undefined;
}
