import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The files of src/actions/<group>/ that may hold an action: scripts/build.js keeps the same test. */
export const isActionFile = (f: string): boolean => /\.(js|ts)$/.test(f) && !/\.(d|test)\.ts$/.test(f);

/**
 * Imports every module of src/actions/<group>/. This is the sources' version (tests, tsc output):
 * the bundle replaces this file with a fixed list of imports made at build time.
 */
export async function importActionModules(): Promise<unknown[]> {
  const root = new URL('./', import.meta.url);
  const mods: Promise<unknown>[] = [];
  for (const group of readdirSync(fileURLToPath(root), { withFileTypes: true })) {
    if (!group.isDirectory()) continue;
    const dir = new URL(`${group.name}/`, root);
    for (const f of readdirSync(fileURLToPath(dir)).filter(isActionFile)) mods.push(import(new URL(f, dir).href));
  }
  return Promise.all(mods);
}
