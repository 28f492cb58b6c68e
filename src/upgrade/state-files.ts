import { join } from 'node:path';

/**
 * Where an upgrade of one cluster keeps its state under the state dir. `vaultops upgrade` and the
 * upgrade playbooks' actions both take the paths from here, so either can resume what the other
 * started.
 */
export function upgradeStateFiles(
  stateDir: string,
  clusterName: string,
): { dir: string; rolling: string; immutable: string } {
  const dir = join(stateDir, 'upgrades', clusterName);
  return { dir, rolling: join(dir, 'in-progress.json'), immutable: join(dir, 'immutable.json') };
}
