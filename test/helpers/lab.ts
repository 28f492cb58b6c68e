import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBinary, type Flavor } from '../../src/lab/binaries.js';
import { labDestroy, labUp, type LabRecord } from '../../src/lab/lab.js';
import { connectCluster } from '../../src/cli/cluster-from-inventory.js';
import { labLoadBalancerRequest } from '../../src/cli/lab.js';
import { waitFor } from './cli.js';

export interface TestLab {
  lab: LabRecord;
  /** Inventory written for this lab. */
  inventory: string;
  /** VAULTOPS_STATE_DIR of this lab; pass it to CLI children with `env`. */
  stateDir: string;
  env: NodeJS.ProcessEnv;
  /** init.json; a transit-sealed lab has no unseal keys but recovery keys. */
  init: { unseal_keys_b64: string[]; root_token: string; recovery_keys_b64: string[]; recovery_keys_hex: string[] };
  /** Every secret this lab holds, for tests that search outputs for leaks. */
  secrets: string[];
  destroy(): Promise<void>;
}

/** Set by test/helpers/global-setup.ts for the workers; startTestLab writes it into the lab's state dir. */
export const TEST_RUN_ENV = 'VAULTOPS_TEST_RUN';
export const TEST_RUN_MARK = '.vaultops-test-run';

/**
 * A real lab cluster for one test file, in its own state dir, so files running side by side never
 * share one. Binaries come from the machine's cache (built once per machine).
 * With `seal: 'transit'` the lab auto-unseals with `sealProvider`'s transit engine and shares its
 * state dir (a provider is found by name there); destroy it before its provider.
 */
export async function startTestLab(options: {
  name: string;
  flavor: Flavor;
  version: string;
  tls?: boolean;
  nodes?: number;
  ssh?: boolean;
  hosts?: boolean;
  seal?: 'transit';
  sealProvider?: TestLab;
  /** With hosts: a real HAProxy in front of the machines (`lab up --hosts --lb haproxy`). */
  lb?: 'haproxy';
}): Promise<TestLab> {
  if ((options.seal === 'transit') !== (options.sealProvider !== undefined))
    throw new Error('startTestLab: seal "transit" and sealProvider go together');
  const ownsStateDir = options.sealProvider === undefined;
  const stateDir = options.sealProvider?.stateDir ?? mkdtempSync(join(tmpdir(), `vaultops-test-${options.name}-`));
  const env = options.sealProvider?.env ?? { ...process.env, VAULTOPS_STATE_DIR: stateDir };
  const run = process.env[TEST_RUN_ENV];
  if (ownsStateDir && run) writeFileSync(join(stateDir, TEST_RUN_MARK), run);
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
    hosts: options.hosts,
    loadBalancer: options.lb ? labLoadBalancerRequest() : undefined,
    seal: options.sealProvider ? { type: 'transit', provider: options.sealProvider.lab.name } : undefined,
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
    secrets: [
      ...init.unseal_keys_b64,
      ...(init.recovery_keys_b64 ?? []),
      ...(init.recovery_keys_hex ?? []),
      init.root_token,
    ],
    async destroy() {
      await labDestroy(options.name, () => undefined, env);
      if (ownsStateDir) rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** The transit seal token of a transit-sealed lab, read from a node's config (the only place it is kept). */
export function transitSealToken(lab: LabRecord, node = 0): string {
  const config = readFileSync(lab.nodes[node]!.config, 'utf8');
  const token = /^seal "transit" \{[^}]*^\s*token = "([^"]+)"/m.exec(config)?.[1];
  if (!token) throw new Error(`no transit seal token in ${lab.nodes[node]!.config}`);
  return token;
}

/**
 * Seals the active node (Vault does not forward sys/seal from a standby) and waits until another
 * node leads and the old one reports itself sealed. Returns the sealed node's name.
 */
export async function sealActiveNode(inventory: string): Promise<string> {
  const { client } = await connectCluster(inventory, undefined);
  try {
    const leader = await client.findLeader();
    const sealed = leader.node.name;
    await leader.client.seal();
    await waitFor(
      'a new leader, and the old one reporting itself sealed',
      async () => {
        const probes = await client.probeAll();
        const old = probes.find((p) => p.node.name === sealed)?.health?.state;
        const active = probes.filter((p) => p.health?.state === 'active');
        return old === 'sealed' && active.length === 1 && active[0]!.node.name !== sealed ? true : undefined;
      },
      60_000,
    );
    return sealed;
  } finally {
    client.close();
  }
}
