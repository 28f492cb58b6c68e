import { createServer } from 'node:net';
import { VaultopsError } from '../core/errors.js';
import type { LabNode } from './lab-record.js';
import { listLabs } from './lab-record.js';
import { recordSlot, slotsHeldElsewhere } from './slot-registry.js';

/** Loopback address ranges ("slots") for labs whose servers run as processes on this machine. */
export const API_PORT = 8200;
export const CLUSTER_PORT = 8201;
/** Slot k owns 127.0.0.(10k+1) .. 127.0.0.(10k+9); a cluster's first nodes are x1, x2, x3. */
const MAX_SLOT = 24;

export async function allocateSlot(name: string, env: NodeJS.ProcessEnv, dir: string): Promise<number> {
  const taken = new Set([
    ...listLabs(env)
      .filter((l) => l.name !== name)
      .map((l) => l.slot),
    ...slotsHeldElsewhere(dir),
  ]);
  for (let slot = 1; slot <= MAX_SLOT; slot++) {
    if (taken.has(slot)) continue;
    if (await isFree(`127.0.0.${slot * 10 + 1}`, API_PORT)) {
      let all = true;
      for (let i = 1; i <= 9 && all; i++)
        all =
          (await isFree(`127.0.0.${slot * 10 + i}`, API_PORT)) &&
          (await isFree(`127.0.0.${slot * 10 + i}`, CLUSTER_PORT));
      if (all) {
        recordSlot(slot, dir);
        return slot;
      }
    }
  }
  throw new VaultopsError('Every loopback range for labs is in use.', {
    hint: 'Stop a lab with `vaultops lab down --name NAME`, or destroy old ones.',
  });
}

function isFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolveFree) => {
    const srv = createServer();
    srv.once('error', () => resolveFree(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolveFree(true)));
  });
}

export async function assertPortsFree(n: LabNode, labName: string): Promise<void> {
  for (const port of [API_PORT, CLUSTER_PORT]) {
    if (!(await isFree(n.ip, port))) {
      throw new VaultopsError(`Port ${n.ip}:${port} for node ${n.name} of lab ${labName} is already in use.`, {
        hint: `Find the process with \`ss -ltnp 'sport = :${port}'\` and stop it, or use another lab --name.`,
      });
    }
  }
}
