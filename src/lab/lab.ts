import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { stateDir } from './paths.js';
import { FLAVORS, type Flavor } from './binaries.js';
import { ensureLabCa, issueNodeCert } from './certs.js';
import { withFileLock } from './file-lock.js';
import { initialise, waitHealthy } from './initialise.js';
import {
  clusterFor,
  labDir,
  labsDir,
  labToken,
  readInit,
  readLab,
  writeInventory,
  writeLab,
  type LabRecord,
} from './lab-record.js';
import { ensureServiceUser, firstBlockedAncestor, handOver, openForSearch, privateCopy } from './run-as.js';
import { writeConfigs } from './server-config.js';
import { labState, startNodes, stopNodes } from './server-processes.js';
import { allocateSlot, API_PORT, assertPortsFree, CLUSTER_PORT } from './slots.js';
import { recordSlot, slotLockPath } from './slot-registry.js';
import { prepareSshHosts, startSshds } from './ssh-hosts.js';
import {
  checkSameSeal,
  prepareTransitSeal,
  revokeSealToken,
  type ProviderLabs,
  type SealRequest,
} from './transit-seal.js';
import { unsealAll } from './unseal.js';
import type { LoadBalancerRequest } from './load-balancer.js';
import { removeLabDir, restartHostsLab, tearDownHostsLab, upHostsLab } from './machine-lab.js';

// The lab's pieces, one file per job; importers keep using this module.
export { API_PORT, CLUSTER_PORT } from './slots.js';
export {
  clusterFor,
  labDir,
  labsDir,
  labToken,
  listLabs,
  readInit,
  readLab,
  writeInventory,
  writeLab,
  type LabNode,
  type LabRecord,
} from './lab-record.js';
export { renderConfig } from './server-config.js';
export {
  currentPid,
  labState,
  nodeLogTail,
  runningPids,
  startServer,
  stopNodes,
  type LabState,
} from './server-processes.js';
export { waitHealthy } from './initialise.js';
export { unsealAll } from './unseal.js';
export {
  rebootHostsNode,
  setMachineLink,
  setOpsSudo,
  runInMachine,
  machinePid,
  type LabMachines,
} from './machine-lab.js';

export interface LabUpOptions {
  name: string;
  flavor: Flavor;
  version: string;
  binary: string;
  tls: boolean;
  nodes?: number;
  /** Where to write the inventory (default inventories/<name>.yml in the current directory). */
  inventory?: string | undefined;
  onProgress?: ((message: string) => void) | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  /** Also start a real sshd per node and write the SSH details into the inventory. */
  ssh?: boolean | undefined;
  /** Appended to every node's server config (telemetry, declarative audit devices). */
  extraConfig?: string | undefined;
  /** Auto-unseal by the transit engine of another running lab. */
  seal?: SealRequest | undefined;
  /** Run the servers as this system account (created if missing; needs root). */
  runAs?: string | undefined;
  /** One systemd machine per node (machine-lab.ts) instead of server processes on loopback addresses. */
  hosts?: boolean | undefined;
  /** Raft node IDs of nodes n1..nN when they must differ from the names (a drill's scratch cluster). */
  raftIds?: readonly string[] | undefined;
  /** With hosts: a real HAProxy on this machine in front of the nodes, configured by the given renderer. */
  loadBalancer?: LoadBalancerRequest | undefined;
}

/**
 * Starts (or creates and starts) a lab: 3 real server processes on their own loopback
 * addresses, TLS from a lab CA, initialised 5/3, unsealed, joined, and waited on until autopilot
 * reports healthy with failure tolerance 1. On failure nothing is left running.
 */
export async function labUp(
  opts: LabUpOptions,
): Promise<{ lab: LabRecord; created: boolean; alreadyRunning: boolean }> {
  const env = opts.env ?? process.env;
  const progress = opts.onProgress ?? (() => undefined);
  const dir = labDir(opts.name, env);
  const existing = readLab(opts.name, env);
  if (existing) {
    const state = labState(existing);
    if (state === 'running') return { lab: existing, created: false, alreadyRunning: true };
    if (existing.flavor !== opts.flavor || existing.version !== opts.version) {
      throw new InputError(
        `Lab ${opts.name} holds ${FLAVORS[existing.flavor].product} ${existing.version} data, not ${FLAVORS[opts.flavor].product} ${opts.version}.`,
        {
          hint: `Run \`vaultops lab destroy --name ${opts.name}\` first, or pick another --name.`,
        },
      );
    }
    if (existing.machines) {
      if (state === 'partial') await tearDownHostsLab(existing, progress);
      return { lab: await restartHostsLab(existing, progress), created: false, alreadyRunning: false };
    }
    checkSameSeal(existing, opts.seal);
    if (state === 'partial') await stopNodes(existing, progress);
    return { lab: await restart(existing, opts.binary, progress, env), created: false, alreadyRunning: false };
  }
  if (opts.loadBalancer && (!opts.hosts || !opts.tls))
    throw new InputError('--lb puts a load balancer in front of a lab of machines over TLS.', {
      hint: 'Use it with --hosts (and without --no-tls): vaultops lab up --hosts --lb haproxy.',
    });
  if (opts.hosts) {
    if (opts.seal || opts.runAs || opts.ssh || opts.extraConfig)
      throw new InputError(
        '--hosts makes production-shaped machines of its own; it does not combine with --ssh, --seal or --production-like.',
      );
    const lab = await upHostsLab({
      name: opts.name,
      dir,
      flavor: opts.flavor,
      version: opts.version,
      binary: opts.binary,
      tls: opts.tls,
      nodes: opts.nodes ?? 3,
      inventory: opts.inventory,
      env,
      progress,
      loadBalancer: opts.loadBalancer,
    });
    return { lab, created: true, alreadyRunning: false };
  }

  const nodeCount = opts.nodes ?? 3;
  // Before anything exists: a provider that is not running is refused here (exit 2).
  const seal = opts.seal ? await prepareTransitSeal(opts.name, opts.seal, providerLabs(env), progress) : undefined;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let lab: LabRecord | undefined;
  try {
    lab = await withFileLock(slotLockPath(), progress, async () => {
      const slot = await allocateSlot(opts.name, env, dir);
      const record: LabRecord = {
        name: opts.name,
        flavor: opts.flavor,
        version: opts.version,
        binary: opts.binary,
        slot,
        tls: opts.tls,
        dir,
        initFile: join(dir, 'init.json'),
        nodes: [],
        createdAt: new Date().toISOString(),
        extraConfig: opts.extraConfig,
        seal: seal?.record,
      };
      const scheme = opts.tls ? 'https' : 'http';
      for (let i = 1; i <= nodeCount; i++) {
        const ip = `127.0.0.${slot * 10 + i}`;
        const ndir = join(dir, `n${i}`);
        record.nodes.push({
          name: `n${i}`,
          ip,
          apiAddr: `${scheme}://${ip}:${API_PORT}`,
          clusterAddr: `https://${ip}:${CLUSTER_PORT}`,
          dir: ndir,
          config: join(ndir, 'server.hcl'),
          log: join(ndir, 'server.log'),
          ...(opts.raftIds?.[i - 1] && opts.raftIds[i - 1] !== `n${i}` ? { raftId: opts.raftIds[i - 1] } : {}),
        });
      }
      if (opts.tls) {
        progress('Making a lab CA and node certificates...');
        const ca = await ensureLabCa(join(dir, 'tls'), opts.name);
        record.caCert = ca.caCert;
        for (const n of record.nodes) await issueNodeCert(join(dir, 'tls'), ca, n);
      }
      for (const n of record.nodes) mkdirSync(join(n.dir, 'data'), { recursive: true, mode: 0o700 });
      writeConfigs(record, seal);
      if (opts.runAs) {
        const ours = [stateDir(env), labsDir(env)];
        const blocked = firstBlockedAncestor(dir, ours);
        if (blocked) {
          // The server account could not reach its own files: say why and run as the caller.
          progress(
            `warning: servers run as ${process.env['USER'] ?? 'the caller'}, not ${opts.runAs}: ${blocked} is not searchable by other users (set VAULTOPS_STATE_DIR under a directory such as /var/lib/vaultops, or chmod o+x ${blocked})`,
          );
        } else {
          record.runAs = await ensureServiceUser(opts.runAs);
          openForSearch(ours);
          // The cached binary may sit under a private home: each lab gets its own copy it can run.
          if (firstBlockedAncestor(record.binary, []) !== undefined)
            record.binary = privateCopy(record.binary, join(dir, 'bin'));
          progress(`Servers will run as ${record.runAs.user} (uid ${record.runAs.uid}), not root...`);
        }
      }
      if (opts.ssh) await prepareSshHosts(record);
      if (record.runAs) {
        handOver(
          dir,
          record.nodes.map((n) => n.dir),
          record.nodes.flatMap((n) => [join(dir, 'tls', `${n.name}.key`), join(dir, 'tls', `${n.name}.pem`)]),
          record.runAs,
        );
      }
      writeLab(record);
      await startNodes(record, progress);
      await startSshds(record, progress);
      return record;
    });
    await initialise(lab, progress);
    lab.inventory = resolve(opts.inventory ?? join('inventories', `${opts.name}.yml`));
    writeInventory(lab);
    writeLab(lab);
    return { lab, created: true, alreadyRunning: false };
  } catch (e) {
    const rec = lab ?? readLab(opts.name, env);
    if (rec) await stopNodes(rec, () => undefined).catch(() => undefined);
    // A lab that never got initialised holds nothing worth keeping; remove it so `lab up` can start over.
    if (!existsSync(join(dir, 'init.json'))) {
      await revokeSealToken(seal?.record, seal?.record.tokenAccessor, providerLabs(env));
      rmSync(dir, { recursive: true, force: true });
    }
    throw e;
  }
}

async function restart(
  lab: LabRecord,
  binary: string,
  progress: (m: string) => void,
  env: NodeJS.ProcessEnv,
): Promise<LabRecord> {
  lab.binary = binary;
  // A transit-sealed lab gets a fresh seal token (its provider must be running: refused otherwise).
  const oldSeal = lab.seal;
  const seal = oldSeal
    ? await prepareTransitSeal(lab.name, { type: 'transit', provider: oldSeal.provider }, providerLabs(env), progress)
    : undefined;
  if (seal) lab.seal = seal.record;
  writeConfigs(lab, seal);
  writeLab(lab);
  if (oldSeal?.tokenAccessor !== lab.seal?.tokenAccessor)
    await revokeSealToken(oldSeal, oldSeal?.tokenAccessor, providerLabs(env));
  try {
    // Inside the try: when one node fails to start, the nodes already started are stopped too.
    await withFileLock(slotLockPath(), progress, async () => {
      for (const n of lab.nodes) await assertPortsFree(n, lab.name);
      recordSlot(lab.slot, lab.dir);
      await startNodes(lab, progress);
      await startSshds(lab, progress);
    });
    const init = readInit(lab);
    await unsealAll(lab, init, progress);
    await waitHealthy(lab, labToken(lab), progress);
  } catch (e) {
    await stopNodes(lab, () => undefined).catch(() => undefined);
    throw e;
  }
  if (lab.inventory) writeInventory(lab);
  writeLab(lab);
  return lab;
}

export async function labDown(
  name: string,
  progress: (m: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ lab?: LabRecord; stopped: number }> {
  const lab = readLab(name, env);
  if (!lab) return { stopped: 0 };
  return { lab, stopped: lab.machines ? await tearDownHostsLab(lab, progress) : await stopNodes(lab, progress) };
}

export async function labDestroy(
  name: string,
  progress: (m: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ lab?: LabRecord; stopped: number }> {
  const dir = labDir(name, env);
  const lab = readLab(name, env);
  const stopped = lab ? (lab.machines ? await tearDownHostsLab(lab, progress) : await stopNodes(lab, progress)) : 0;
  await revokeSealToken(lab?.seal, lab?.seal?.tokenAccessor, providerLabs(env));
  if (lab?.inventory && existsSync(lab.inventory)) {
    // Only remove an inventory we wrote (it says so on its first line).
    if (readFileSync(lab.inventory, 'utf8').startsWith('# Written by `vaultops lab up`'))
      rmSync(lab.inventory, { force: true });
  }
  removeLabDir(dir);
  return lab ? { lab, stopped } : { stopped };
}

/** What transit-seal.ts reads of other labs (handed in: it must not import this file). */
function providerLabs(env: NodeJS.ProcessEnv): ProviderLabs<LabRecord> {
  return { read: (name) => readLab(name, env), state: labState, cluster: (l) => clusterFor(l, labToken(l)) };
}
