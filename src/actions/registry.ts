import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ActionDefinition } from './types.js';

/**
 * Actions are found, not listed: every module in src/actions/<group>/ whose default export is an
 * action definition. Adding an action is adding a file. A module without one (shared argument
 * schemas and state-file paths, e.g. upgrade/args-and-state-files.ts) is a helper and is skipped.
 */
export type AnyAction = ActionDefinition<any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let cache: Map<string, AnyAction> | undefined;

export async function loadActions(): Promise<Map<string, AnyAction>> {
  if (cache) return cache;
  const root = new URL('./', import.meta.url);
  const found = new Map<string, AnyAction>();
  for (const group of readdirSync(fileURLToPath(root), { withFileTypes: true })) {
    if (!group.isDirectory()) continue;
    const dir = new URL(`${group.name}/`, root);
    const files = readdirSync(fileURLToPath(dir)).filter((f) => /\.(js|ts)$/.test(f) && !/\.(d|test)\.ts$/.test(f));
    const mods = await Promise.all(files.map((f) => import(new URL(f, dir).href) as Promise<{ default?: AnyAction }>));
    for (const mod of mods) {
      const def = mod.default;
      if (def && typeof def.name === 'string' && typeof def.run === 'function') found.set(def.name, def);
    }
  }
  cache = found;
  return found;
}
