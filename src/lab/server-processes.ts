import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VaultopsError } from '../core/errors.js';
import { FLAVORS } from './binaries.js';
import { lastLines } from './exec.js';
import { isAlive } from './file-lock.js';
import { clusterFor, writeLab, type LabNode, type LabRecord } from './lab-record.js';
import type { RunAs } from './run-as.js';
import { assertPortsFree } from './slots.js';
import { stopSshds } from './ssh-hosts.js';

/** The server processes of a lab: start, find, stop, and their logs. */
export function runningPids(lab: LabRecord): number[] {
  return lab.nodes
    .map((n) => currentPid(n))
    .filter((p): p is number => p !== undefined && isAlive(p) && isOurServer(p, lab));
}

/** The node's pid file wins over lab.json: the lab service manager (ssh-hosts.ts) restarts servers too. */
export function currentPid(n: LabNode): number | undefined {
  try {
    const p = Number.parseInt(readFileSync(join(n.dir, 'pid'), 'utf8'), 10);
    return Number.isFinite(p) ? p : n.pid;
  } catch {
    return n.pid;
  }
}

/** A recorded pid may have been reused by another program after a reboot: check its command line. */
function isOurServer(pid: number, lab: LabRecord): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(lab.dir);
  } catch {
    return false;
  }
}

export type LabState = 'running' | 'partial' | 'stopped';

export function labState(lab: LabRecord): LabState {
  const n = runningPids(lab).length;
  return n === lab.nodes.length ? 'running' : n === 0 ? 'stopped' : 'partial';
}

export async function startNodes(lab: LabRecord, progress: (m: string) => void): Promise<void> {
  progress(
    `Starting ${lab.nodes.length} ${FLAVORS[lab.flavor].product} ${lab.version} nodes on ${lab.nodes.map((n) => n.ip).join(', ')}...`,
  );
  for (const n of lab.nodes) {
    await assertPortsFree(n, lab.name);
    n.pid = startServer(n.binary ?? lab.binary, n, lab.runAs);
  }
  writeLab(lab);
  const deadline = Date.now() + 30_000;
  const cluster = clusterFor(lab);
  try {
    for (const n of lab.nodes) {
      const client = cluster.client(n.name);
      for (;;) {
        if (n.pid === undefined || !isAlive(n.pid)) throw nodeDied(lab, n, 'exited right after it was started');
        try {
          await client.health();
          break;
        } catch (e) {
          if (Date.now() > deadline)
            throw nodeDied(lab, n, `did not answer on ${n.apiAddr} within 30 s (${(e as Error).message})`);
          await sleep(150);
        }
      }
    }
  } finally {
    cluster.close();
  }
}

export function startServer(binary: string, n: LabNode, runAs?: RunAs): number {
  mkdirSync(n.dir, { recursive: true });
  const fd = openSync(n.log, 'a', 0o600);
  try {
    // A clean environment: the server must not inherit VAULT_TOKEN or other secrets of this shell.
    const child = spawn(binary, ['server', `-config=${n.config}`], {
      cwd: n.dir,
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: n.dir },
      ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
    });
    child.unref();
    if (child.pid === undefined) throw new VaultopsError(`Could not start ${binary}.`);
    writeFileSync(join(n.dir, 'pid'), `${child.pid}\n`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

export function nodeLogTail(n: LabNode, lines = 15): string[] {
  try {
    return lastLines(readFileSync(n.log, 'utf8'), lines);
  } catch {
    return [];
  }
}

export function nodeDied(lab: LabRecord, n: LabNode, what: string): VaultopsError {
  return new VaultopsError(`Node ${n.name} of lab ${lab.name} ${what}.`, {
    details: [`last lines of ${n.log}:`, ...nodeLogTail(n).map((l) => `  ${l}`)],
    hint: 'Read the log above; `vaultops lab destroy` removes the lab so it can be made anew.',
  });
}

/** SIGTERM every recorded server, wait for it to be gone (SIGKILL after 20 s). */
export async function stopNodes(lab: LabRecord, progress: (m: string) => void): Promise<number> {
  // New nodes of an immutable upgrade in progress (add-nodes.ts) are the lab's processes too.
  const everyone: LabRecord = { ...lab, nodes: [...lab.nodes, ...(lab.newNodes ?? [])] };
  const pids = runningPids(everyone);
  if (pids.length)
    progress(`Stopping ${pids.length} server process${pids.length === 1 ? '' : 'es'} of lab ${lab.name}...`);
  for (const pid of pids) signal(pid, 'SIGTERM');
  const deadline = Date.now() + 20_000;
  while (pids.some(isAlive) && Date.now() < deadline) await sleep(100);
  for (const pid of pids) if (isAlive(pid)) signal(pid, 'SIGKILL');
  while (pids.some(isAlive)) await sleep(50);
  for (const n of everyone.nodes) n.pid = undefined;
  await stopSshds(everyone);
  if (existsSync(lab.dir)) writeLab(lab);
  return pids.length;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
