import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError, VaultopsError } from '../core/errors.js';
import { FLAVORS } from './binaries.js';
import { ensureLabCa, issueNodeCert } from './certs.js';
import { isAlive } from './file-lock.js';
import { clusterFor, readLab, writeInventory, writeLab, type LabNode, type LabRecord } from './lab-record.js';
import { renderConfig } from './server-config.js';
import { labState, nodeLogTail, startServer, stopNodes } from './server-processes.js';
import { API_PORT, CLUSTER_PORT } from './slots.js';
import { prepareSshHosts, startSshds, stopSshds } from './ssh-hosts.js';
import { sleep } from '../core/sleep.js';
import { addMachines, retireMachines, writeMachineConfigs } from './machine-lab.js';

/**
 * `vaultops lab add-nodes`: the hosts of an immutable upgrade, in the lab. A lab of machines gets new
 * machines (machine-lab.ts addMachines). Otherwise: new server processes on
 * the slot's next loopback addresses (127.0.0.(10k+4..)), with their own data dirs, TLS
 * certificates from the lab CA, configs whose retry_join names every current node, their own sshd
 * when the lab has --ssh, and the new version's binary. They are started sealed and uninitialised
 * (a new host as a provisioning tool leaves it): joining and unsealing is the upgrade's job. They
 * are recorded in lab.json (`newNodes`) and written into the inventory as `new_nodes:`.
 */
export interface AddNodesOptions {
  name: string;
  count: number;
  version: string;
  binary: string;
  /** Asked for machines (`--hosts`): the lab must be a lab of machines. A lab of machines always gets machines. */
  hosts?: boolean | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  onProgress?: ((m: string) => void) | undefined;
}

export async function labAddNodes(o: AddNodesOptions): Promise<{ lab: LabRecord; added: LabNode[] }> {
  const env = o.env ?? process.env;
  const progress = o.onProgress ?? (() => undefined);
  const lab = readLab(o.name, env);
  if (!lab)
    throw new InputError(`No lab named ${o.name}.`, { hint: `Start one first: \`vaultops lab up --name ${o.name}\`.` });
  if (labState(lab) !== 'running')
    throw new InputError(`Lab ${o.name} is not running; new nodes join a running cluster.`, {
      hint: `\`vaultops lab up --name ${o.name}\` first.`,
    });
  if (lab.seal)
    throw new InputError(
      `Lab ${o.name} auto-unseals with lab ${lab.seal.provider}'s transit engine; add-nodes supports Shamir labs only.`,
    );
  if (lab.newNodes?.length) {
    throw new InputError(
      `Lab ${o.name} already has new nodes (${lab.newNodes.map((n) => n.name).join(', ')}) waiting for an upgrade.`,
      { hint: `Run \`vaultops upgrade --strategy immutable -i ${lab.inventory ?? 'INV'} ...\`, or destroy the lab.` },
    );
  }
  if (!Number.isInteger(o.count) || o.count < 1 || o.count > 9)
    throw new InputError(`--count ${o.count} is not a number of nodes.`, {
      hint: 'Use a whole number from 1 to 9: --count 3 replaces a 3-node cluster.',
    });
  if (o.hosts && !lab.machines)
    throw new InputError(`Lab ${o.name} runs its nodes as processes on loopback addresses, not on machines.`, {
      hint: `Drop --hosts (new nodes are then processes too), or start a lab of machines: \`vaultops lab up --hosts\`.`,
    });
  if (lab.machines) {
    if (lab.loadBalancer)
      throw new InputError(
        `Lab ${o.name} has a load balancer in front of its machines; add-nodes does not reconfigure it for new ones.`,
        { hint: 'Use a lab without --lb for an immutable upgrade.' },
      );
    const added = await addMachines(lab, {
      count: o.count,
      version: o.version,
      binary: o.binary,
      progress,
      env,
    });
    return { lab, added };
  }
  const firstIndex = Math.max(...lab.nodes.map((n) => Number(/^n(\d+)$/.exec(n.name)?.[1] ?? '0'))) + 1;
  if (firstIndex + o.count - 1 > 9) {
    throw new InputError(
      `Lab ${o.name}'s slot has addresses 127.0.0.${lab.slot * 10 + 1}-${lab.slot * 10 + 9}; nodes n${firstIndex}..n${firstIndex + o.count - 1} do not fit.`,
      { hint: 'Use a smaller --count, or a new lab.' },
    );
  }
  const scheme = lab.tls ? 'https' : 'http';
  const added: LabNode[] = [];
  for (let i = firstIndex; i < firstIndex + o.count; i++) {
    const ip = `127.0.0.${lab.slot * 10 + i}`;
    const dir = join(lab.dir, `n${i}`);
    if (existsSync(join(dir, 'data', 'raft')))
      throw new InputError(`${dir} already holds Raft data (an earlier node n${i}); a new node must start empty.`, {
        hint: 'Destroy the lab and start again.',
      });
    added.push({
      name: `n${i}`,
      ip,
      apiAddr: `${scheme}://${ip}:${API_PORT}`,
      clusterAddr: `https://${ip}:${CLUSTER_PORT}`,
      dir,
      config: join(dir, 'server.hcl'),
      log: join(dir, 'server.log'),
      binary: o.binary,
    });
  }
  progress(
    `Adding ${added.map((n) => `${n.name} (${n.ip})`).join(', ')} on ${FLAVORS[lab.flavor].product} ${o.version}...`,
  );
  if (lab.tls) {
    const ca = await ensureLabCa(join(lab.dir, 'tls'), lab.name);
    for (const n of added) await issueNodeCert(join(lab.dir, 'tls'), ca, n);
  }
  // retry_join names every node, old and new: the new node finds the cluster through any of them.
  const joined: LabRecord = { ...lab, version: o.version, nodes: [...lab.nodes, ...added] };
  for (const n of added) {
    mkdirSync(join(n.dir, 'data'), { recursive: true, mode: 0o700 });
    writeFileSync(n.config, renderConfig(joined, n), { mode: 0o600 });
  }
  const view: LabRecord = { ...lab, binary: o.binary, nodes: added, ssh: lab.ssh };
  if (lab.ssh) {
    // Own sshd, host key, node-local binary (a hard link to the new version) and service script.
    const ssh = await prepareSshHosts({ ...view, ssh: undefined });
    Object.assign(lab.ssh.nodes, ssh.nodes);
  }
  lab.newNodes = added;
  lab.newVersion = o.version;
  writeLab(lab);
  try {
    await startSshds(view, progress);
    for (const n of added) n.pid = startServer(n.binary ?? o.binary, n);
    writeLab(lab);
    await waitAnswering(lab, added);
  } catch (e) {
    await stopNodes({ ...lab, nodes: [] }, () => undefined).catch(() => undefined);
    throw e;
  }
  writeInventory(lab);
  writeLab(lab);
  return { lab, added };
}

async function waitAnswering(lab: LabRecord, nodes: LabNode[]): Promise<void> {
  const cluster = clusterFor({ ...lab, nodes });
  const deadline = Date.now() + 30_000;
  try {
    for (const n of nodes) {
      for (;;) {
        if (n.pid === undefined || !isAlive(n.pid)) throw died(n, 'exited right after it was started');
        if (
          await cluster
            .client(n.name)
            .health()
            .catch(() => undefined)
        )
          break;
        if (Date.now() > deadline) throw died(n, `did not answer on ${n.apiAddr} within 30 s`);
        await sleep(150);
      }
    }
  } finally {
    cluster.close();
  }
}

function died(n: LabNode, what: string): VaultopsError {
  return new VaultopsError(`New node ${n.name} ${what}.`, {
    details: [`last lines of ${n.log}:`, ...nodeLogTail(n).map((l) => `  ${l}`)],
  });
}

/**
 * After an upgrade of a lab (cluster spec `lab:`): lab.json says what the cluster is now. Rolling:
 * the version. Immutable: the new nodes become the lab's nodes (their configs' retry_join now name
 * only each other), the old nodes' sshds stop (machines: the old machines are powered off and
 * removed), and the lab's inventory is written again.
 */
export async function recordLabUpgrade(
  labDir: string,
  target: string,
  replacedBy?: readonly string[],
): Promise<LabRecord | undefined> {
  const file = join(labDir, 'lab.json');
  if (!existsSync(file)) return undefined;
  const lab = JSON.parse(readFileSync(file, 'utf8')) as LabRecord;
  lab.version = target;
  if (replacedBy) {
    const incoming = (lab.newNodes ?? []).filter((n) => replacedBy.includes(n.name));
    if (incoming.length !== replacedBy.length)
      throw new VaultopsError(`Lab ${lab.name} does not record new nodes ${replacedBy.join(', ')}.`);
    const old = lab.nodes;
    lab.nodes = incoming;
    lab.newNodes = undefined;
    lab.newVersion = undefined;
    if (lab.machines) {
      // The old machines are powered off and removed; the new ones' configs join only each other.
      if (lab.newBinary) lab.binary = lab.newBinary;
      lab.newBinary = undefined;
      await retireMachines(lab, old);
      writeMachineConfigs(lab);
      writeLab(lab);
      writeInventory(lab);
      return lab;
    }
    if (incoming[0]?.binary && !lab.ssh) lab.binary = incoming[0].binary;
    if (lab.ssh) {
      await stopSshds({ ...lab, nodes: old });
      for (const n of old) delete lab.ssh.nodes[n.name];
    }
    for (const n of lab.nodes) writeFileSync(n.config, renderConfig(lab, n), { mode: 0o600 });
  }
  writeLab(lab);
  writeInventory(lab);
  return lab;
}
