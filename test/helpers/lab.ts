import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBinary, type Flavor } from '../../src/lab/binaries.js';
import { labDestroy, labUp, type LabRecord } from '../../src/lab/lab.js';

export interface TestLab {
  lab: LabRecord;
  /** Inventory written for this lab. */
  inventory: string;
  /** VAULTOPS_STATE_DIR of this lab; pass it to CLI children with `env`. */
  stateDir: string;
  env: NodeJS.ProcessEnv;
  init: { unseal_keys_b64: string[]; root_token: string };
  /** Every secret this lab holds, for tests that search outputs for leaks. */
  secrets: string[];
  destroy(): Promise<void>;
}

/**
 * A real lab cluster for one test file, in its own state dir, so files running side by side never
 * share one. Binaries come from the machine's cache (built once per machine).
 */
export async function startTestLab(options: { name: string; flavor: Flavor; version: string; tls?: boolean; nodes?: number; ssh?: boolean }): Promise<TestLab> {
  const stateDir = mkdtempSync(join(tmpdir(), `vaultops-test-${options.name}-`));
  const env = { ...process.env, VAULTOPS_STATE_DIR: stateDir };
  const bin = await ensureBinary({ flavor: options.flavor, version: options.version, env });
  const inventory = join(stateDir, `${options.name}.yml`);
  const { lab } = await labUp({
    name: options.name,
    flavor: options.flavor,
    version: options.version,
    binary: bin.path,
    tls: options.tls ?? true,
    nodes: options.nodes,
    ssh: options.ssh,
    inventory,
    env,
  });
  const init = JSON.parse(readFileSync(lab.initFile, 'utf8')) as TestLab['init'];
  return {
    lab,
    inventory,
    stateDir,
    env,
    init,
    secrets: [...init.unseal_keys_b64, init.root_token],
    async destroy() {
      await labDestroy(options.name, () => undefined, env);
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}
