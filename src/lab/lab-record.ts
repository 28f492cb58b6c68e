import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InputError, VaultopsError } from '../core/errors.js';
import { ClusterClient } from '../vault/cluster.js';
import { stateDir } from './paths.js';
import type { Flavor } from './binaries.js';
import { renderInventory } from './inventory-writer.js';
import type { RunAs } from './run-as.js';
import type { LabSsh } from './ssh-hosts.js';
import type { LabSeal } from './transit-seal.js';
import type { LabMachines } from './machine-lab.js';
import type { LabLoadBalancer } from './load-balancer.js';

/** What a lab is on disk: <state>/labs/<name>/lab.json, its init file, and the inventory it wrote. */
export interface LabNode {
  name: string;
  ip: string;
  apiAddr: string;
  clusterAddr: string;
  dir: string;
  config: string;
  log: string;
  pid?: number | undefined;
  /** The node's Raft node_id when it is not its name (a drill's scratch node takes the backup's IDs). */
  raftId?: string | undefined;
  /** The node's own binary path (with --ssh), else lab.binary. */
  binary?: string | undefined;
}

export interface LabRecord {
  name: string;
  flavor: Flavor;
  version: string;
  binary: string;
  slot: number;
  tls: boolean;
  dir: string;
  caCert?: string | undefined;
  initFile: string;
  inventory?: string | undefined;
  nodes: LabNode[];
  createdAt: string;
  /** With --ssh: each node also runs an sshd (src/lab/ssh-hosts.ts). */
  ssh?: LabSsh | undefined;
  /** Extra server configuration appended to every node's config (production-like.ts). */
  extraConfig?: string | undefined;
  /** Servers run as this unprivileged account (production-like labs); else as the caller. */
  runAs?: RunAs | undefined;
  /** A 0600 JSON file {"token": ...} the inventory uses instead of init.json's root token (production-like.ts revokes that). */
  tokenFile?: string | undefined;
  /** Auto-unseal by another lab's transit engine (transit-seal.ts); absent: Shamir keys. */
  seal?: LabSeal | undefined;
  /** Nodes started by `lab add-nodes` for an immutable upgrade, not members yet (add-nodes.ts). */
  newNodes?: LabNode[] | undefined;
  /** The version the new nodes run. */
  newVersion?: string | undefined;
  /** The new nodes' binary on this machine (machines: the file placed in each; lab.binary once they replace the nodes). */
  newBinary?: string | undefined;
  /** Machines an immutable upgrade retired that are not removed yet (machine-lab.ts retireMachines); `lab down` removes them. */
  retiredNodes?: LabNode[] | undefined;
  /** With --hosts: every node is a systemd machine (machine-lab.ts); slot is 0, addresses are 10.213.K.x. */
  machines?: LabMachines | undefined;
  /** With --lb haproxy: a real HAProxy on this machine in front of the nodes (load-balancer.ts). */
  loadBalancer?: LabLoadBalancer | undefined;
}

export function labsDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(stateDir(env), 'labs');
}

export function labDir(name: string, env: NodeJS.ProcessEnv = process.env): string {
  if (!/^[a-z0-9][a-z0-9-]{0,30}$/.test(name))
    throw new InputError(`"${name}" is not a lab name.`, {
      hint: 'Use lower-case letters, digits and "-", up to 31 characters.',
    });
  return join(labsDir(env), name);
}

export function readLab(name: string, env: NodeJS.ProcessEnv = process.env): LabRecord | undefined {
  const file = join(labDir(name, env), 'lab.json');
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as LabRecord;
}

export function listLabs(env: NodeJS.ProcessEnv = process.env): LabRecord[] {
  const dir = labsDir(env);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((n) => {
      try {
        return readLab(n, env);
      } catch {
        return undefined;
      }
    })
    .filter((l): l is LabRecord => l !== undefined);
}

export function writeLab(lab: LabRecord): void {
  const file = join(lab.dir, 'lab.json');
  writeFileSync(`${file}.tmp`, `${JSON.stringify(lab, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

export function clusterFor(lab: LabRecord, token?: string): ClusterClient {
  return new ClusterClient({
    name: lab.name,
    nodes: lab.nodes.map((n) => ({ name: n.name, apiAddr: n.apiAddr, clusterAddr: n.clusterAddr })),
    tls: lab.caCert ? { caCert: lab.caCert } : undefined,
    token,
    timeoutMs: 10_000,
    retries: 0,
  });
}

export function writeInventory(lab: LabRecord): void {
  if (!lab.inventory) return;
  mkdirSync(dirname(lab.inventory), { recursive: true });
  writeFileSync(lab.inventory, renderInventory(lab));
}

/** The token the lab's own tooling uses: the production-like admin token when the root token was revoked. */
export function labToken(lab: LabRecord): string {
  if (lab.tokenFile) {
    try {
      return (JSON.parse(readFileSync(lab.tokenFile, 'utf8')) as { token: string }).token;
    } catch {
      /* fall back to init.json */
    }
  }
  return readInit(lab).root_token;
}

export function readInit(lab: LabRecord): { unseal_keys_b64: string[]; root_token: string } {
  try {
    return JSON.parse(readFileSync(lab.initFile, 'utf8')) as { unseal_keys_b64: string[]; root_token: string };
  } catch (e) {
    throw new VaultopsError(
      `Cannot read the lab's init file ${lab.initFile}: ${(e as NodeJS.ErrnoException).code ?? 'not JSON'}.`,
      {
        hint: `The lab's keys are gone; \`vaultops lab destroy --name ${lab.name}\` and start again.`,
      },
    );
  }
}
