import { existsSync, readFileSync } from 'node:fs';
import { machineTmpDir } from './paths.js';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../core/atomic-write.js';

/**
 * Which loopback slot each lab on this machine owns, across state dirs (tests give every lab its
 * own VAULTOPS_STATE_DIR). Without it a stopped lab's free ports look free to a lab made in another
 * state dir, which takes them, and the stopped lab can never start again. Read and written only
 * under the slot lock (lab.ts); an entry whose lab.json is gone is free again.
 */
const REGISTRY = join(machineTmpDir(), 'vaultops-lab-slots.json');

function read(): Record<string, string> {
  try {
    return JSON.parse(readFileSync(REGISTRY, 'utf8')) as Record<string, string>;
  } catch {
    return {};
  }
}

/** Slots held by other labs (their directory still has a lab.json). */
export function slotsHeldElsewhere(labDirPath: string): Set<number> {
  const held = new Set<number>();
  for (const [slot, dir] of Object.entries(read())) if (dir !== labDirPath && existsSync(join(dir, 'lab.json'))) held.add(Number(slot));
  return held;
}

export function recordSlot(slot: number, labDirPath: string): void {
  const live = Object.fromEntries(Object.entries(read()).filter(([s, dir]) => Number(s) !== slot && dir !== labDirPath && existsSync(join(dir, 'lab.json'))));
  live[String(slot)] = labDirPath;
  try {
    writeFileAtomicSync(REGISTRY, `${JSON.stringify(live)}\n`);
  } catch {
    /* a read-only tmp: fall back to the port checks alone */
  }
}
