import { importActionModules } from './action-modules.js';
import type { ActionDefinition } from './types.js';

/**
 * Actions are found, not listed: every module in src/actions/<group>/ whose default export is an
 * action definition. Adding an action is adding a file. A module without one (shared argument
 * schemas and state-file paths, e.g. upgrade/args-and-state-files.ts) is a helper and is skipped.
 * Which modules there are comes from action-modules.ts: a directory scan when run from the sources,
 * a list written at build time in the bundle (scripts/build.js), where there is no directory to scan.
 */
export type AnyAction = ActionDefinition<any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let cache: Map<string, AnyAction> | undefined;

export async function loadActions(): Promise<Map<string, AnyAction>> {
  if (cache) return cache;
  const found = new Map<string, AnyAction>();
  for (const mod of await importActionModules()) {
    const def = (mod as { default?: AnyAction }).default;
    if (def && typeof def.name === 'string' && typeof def.run === 'function') found.set(def.name, def);
  }
  cache = found;
  return found;
}
