import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InputError, VaultopsError } from '../core/errors.js';
import { FLAVORS } from './binaries.js';
import { ensureLabCa, issueNodeCert } from './certs.js';
import { withFileLock } from './file-lock.js';
import { initialise, waitHealthy } from './initialise.js';
import { labToken, listLabs, readInit, writeInventory, writeLab, type LabNode, type LabRecord } from './lab-record.js';
import {
  bridgeAddress,
  createBridge,
  createMachineLink,
  machineAddress,
  machineLink,
  pickSubnet,
  removeBridge,
  setLinkState,
} from './machine-net.js';
import {
  isMounted,
  machinePaths,
  mountRoot,
  populateRoot,
  prepareUpper,
  serverLayout,
  writeSudoers,
} from './machine-root.js';
import {
  bootMachine,
  checkMachinePrerequisites,
  execInMachine,
  machineInitPid,
  powerOff,
  rebootMachine,
  supervisorPid,
  tearDownMachine,
  unitJournal,
  waitBooted,
  type MachineRef,
} from './machines.js';
import { stateDir } from './paths.js';
import { renderConfig, type ServerPaths } from './server-config.js';
import { API_PORT, CLUSTER_PORT } from './slots.js';
import { keygen } from './ssh-hosts.js';
import { SshHost } from '../ssh/connection.js';
import { sleep } from '../core/sleep.js';
import { recordSlot, slotLockPath, slotsHeldElsewhere } from './slot-registry.js';
import { unsealAll } from './unseal.js';
import {
  labLoadBalancer,
  startLoadBalancer,
  stopLoadBalancer,
  writeLoadBalancerConfig,
  type LoadBalancerRequest,
} from './load-balancer.js';

/** Machine labs reserve their subnet K in the slot registry as SUBNET_SLOT_BASE + K (loopback slots are below). */
const SUBNET_SLOT_BASE = 1000;

/**
 * `lab up --hosts`: a lab whose nodes are systemd machines (machines.ts) reached as production
 * hosts are: sshd on port 22, the `ops` user with the lab's key and passwordless sudo, the server
 * under its vendor's unit. The lab record keeps the machines' network and pinned host keys.
 */
export interface LabMachines {
  /** K of the lab's 10.213.K.0/24. */
  subnet: number;
  /** The lab's private key for ops@<machine>. */
  keyFile: string;
  /** Per node: the pinned host key line ("ssh-ed25519 AAAA..."). */
  nodes: Record<string, { hostKey: string }>;
}

export interface HostsLabOptions {
  name: string;
  dir: string;
  flavor: LabRecord['flavor'];
  version: string;
  binary: string;
  tls: boolean;
  nodes: number;
  inventory?: string | undefined;
  env: NodeJS.ProcessEnv;
  progress: (m: string) => void;
  loadBalancer?: LoadBalancerRequest | undefined;
}

export function nodeIndex(n: { name: string }): number {
  const i = Number(/^n(\d+)$/.exec(n.name)?.[1]);
  if (!Number.isInteger(i) || i < 1) throw new VaultopsError(`Lab node ${n.name} has no number.`);
  return i;
}

export function machineRef(lab: LabRecord, n: LabNode): MachineRef {
  const m = lab.machines;
  if (!m) throw new InputError(`Lab ${lab.name} has no machines (it was made without --hosts).`);
  return { name: `${lab.name}-${n.name}`, dir: n.dir, link: machineLink(lab.name, m.subnet, n.name, nodeIndex(n)) };
}

export function findMachine(lab: LabRecord, nodeName: string): MachineRef {
  const n = [...lab.nodes, ...(lab.newNodes ?? [])].find((x) => x.name === nodeName);
  if (!n)
    throw new InputError(`Lab ${lab.name} has no node ${nodeName}.`, {
      hint: `Its nodes: ${lab.nodes.map((x) => x.name).join(', ')}.`,
    });
  return machineRef(lab, n);
}

export function machineNode(lab: Pick<LabRecord, 'dir' | 'flavor' | 'tls'>, subnet: number, index: number): LabNode {
  const ip = machineAddress(subnet, index);
  const dir = join(lab.dir, 'machines', `n${index}`);
  const layout = serverLayout(lab.flavor);
  return {
    name: `n${index}`,
    ip,
    apiAddr: `${lab.tls ? 'https' : 'http'}://${ip}:${API_PORT}`,
    clusterAddr: `https://${ip}:${CLUSTER_PORT}`,
    dir,
    config: layout.config,
    log: machinePaths(dir).console,
    binary: layout.binary,
  };
}

/** Creates and boots a new lab of machines, then init, unseal, join, healthy. On failure nothing is left. */
export async function upHostsLab(o: HostsLabOptions): Promise<LabRecord> {
  await checkMachinePrerequisites();
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  let lab: LabRecord | undefined;
  try {
    lab = await withFileLock(slotLockPath(), o.progress, async () => {
      // Labs of other state dirs (every test file has its own) are seen only through the
      // machine-wide registry: the subnet is reserved there under this lock, before any bridge
      // exists that would show it, so two labs started at once never share a network.
      const taken = new Set([
        ...listLabs(o.env)
          .filter((l) => l.name !== o.name && l.machines)
          .map((l) => l.machines!.subnet),
        ...[...slotsHeldElsewhere(o.dir)].filter((s) => s > SUBNET_SLOT_BASE).map((s) => s - SUBNET_SLOT_BASE),
      ]);
      const subnet = await pickSubnet(taken);
      recordSlot(SUBNET_SLOT_BASE + subnet, o.dir);
      const record: LabRecord = {
        name: o.name,
        flavor: o.flavor,
        version: o.version,
        binary: o.binary,
        slot: 0,
        tls: o.tls,
        dir: o.dir,
        initFile: join(o.dir, 'init.json'),
        nodes: [],
        createdAt: new Date().toISOString(),
        machines: { subnet, keyFile: join(o.dir, 'ssh', 'id_ed25519'), nodes: {} },
        loadBalancer: o.loadBalancer ? labLoadBalancer(o.dir, bridgeAddress(subnet), API_PORT) : undefined,
      };
      for (let i = 1; i <= o.nodes; i++) record.nodes.push(machineNode(record, subnet, i));
      // Written before the first thing is made on this machine, so a failure can find it all.
      writeLab(record);
      return record;
    });
    await prepareMachines(lab, lab.nodes, o.progress, o.env);
    await bootAll(lab, lab.nodes, o.progress);
    await initialise(lab, o.progress);
    lab.inventory = resolve(o.inventory ?? join('inventories', `${o.name}.yml`));
    writeInventory(lab);
    writeLab(lab);
    if (lab.loadBalancer && o.loadBalancer) {
      writeLoadBalancerConfig(lab.loadBalancer, o.loadBalancer.render(lab.inventory));
      await startLoadBalancer(lab.loadBalancer, o.progress);
    }
    return lab;
  } catch (e) {
    if (lab) await tearDownHostsLab(lab, () => undefined).catch(() => undefined);
    if (!existsSync(join(o.dir, 'init.json'))) removeLabDir(o.dir);
    throw e;
  }
}

/** Where the server's files are inside a machine, as the vendors' packages put them. */
export function machineServerPaths(flavor: LabRecord['flavor']): ServerPaths {
  const layout = serverLayout(flavor);
  return {
    data: layout.dataDir,
    caCert: join(layout.tlsDir, 'ca.crt'),
    cert: join(layout.tlsDir, 'tls.crt'),
    key: join(layout.tlsDir, 'tls.key'),
  };
}

/** The server a machine gets: the binary placed in it, and the record its config is rendered from (retry_join names that record's nodes). */
export interface MachineServer {
  binary: string;
  config: LabRecord;
}

/** Keys, certificates, network, root trees: everything a machine needs before its first boot. */
export async function prepareMachines(
  lab: LabRecord,
  nodes: LabNode[],
  progress: (m: string) => void,
  env: NodeJS.ProcessEnv,
  server: MachineServer = { binary: lab.binary, config: lab },
): Promise<void> {
  const m = lab.machines!;
  const sshDir = join(lab.dir, 'ssh');
  mkdirSync(sshDir, { recursive: true, mode: 0o700 });
  if (!existsSync(m.keyFile)) await keygen(m.keyFile, `vaultops-lab-${lab.name}`);
  let ca: { caCert: string; caKey: string } | undefined;
  if (lab.tls) {
    progress('Making a lab CA and node certificates...');
    ca = await ensureLabCa(join(lab.dir, 'tls'), lab.name);
    lab.caCert = ca.caCert;
  }
  progress(
    `Preparing ${nodes.length} machine${nodes.length === 1 ? '' : 's'} (overlay root, network 10.213.${m.subnet}.0/24, sshd, ops, ${serverLayout(lab.flavor).unit}.service)...`,
  );
  await createBridge(m.subnet);
  for (const n of nodes) {
    const ref = machineRef(lab, n);
    mkdirSync(n.dir, { recursive: true, mode: 0o700 });
    const hostKey = join(n.dir, 'ssh_host_ed25519_key');
    if (!existsSync(hostKey)) await keygen(hostKey, `${lab.name}-${n.name}`);
    m.nodes[n.name] = { hostKey: readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ') };
    // The bridge address is where a lab load balancer listens (load-balancer.ts): clients that reach a
    // node through it verify the node's certificate against that name, as behind a production one.
    const cert = ca ? await issueNodeCert(join(lab.dir, 'tls'), ca, n, [`IP:${bridgeAddress(m.subnet)}`]) : undefined;
    await createMachineLink(m.subnet, ref.link);
    const p = machinePaths(n.dir);
    // The lab's state (init.json: unseal keys, root token) is on this machine's disk, which is every
    // machine's lower layer: it must not be there inside a machine.
    if (!isMounted(p.root)) prepareUpper(p, lab.flavor, server.binary, [stateDir(env)]);
    await mountRoot(p);
    const config = renderConfig(server.config, n, machineServerPaths(lab.flavor));
    await populateRoot(p, {
      flavor: lab.flavor,
      hostname: n.name,
      ip: n.ip,
      config,
      caCert: ca?.caCert,
      cert: cert ? join(lab.dir, 'tls', `${n.name}.pem`) : undefined,
      key: cert ? join(lab.dir, 'tls', `${n.name}.key`) : undefined,
      authorizedKey: readFileSync(`${m.keyFile}.pub`, 'utf8'),
      hostKey,
    });
    writeLab(lab);
  }
}

async function bootAll(
  lab: LabRecord,
  nodes: LabNode[],
  progress: (m: string) => void,
  version = lab.version,
): Promise<void> {
  progress(
    `Booting ${nodes.length} ${FLAVORS[lab.flavor].product} ${version} machine${nodes.length === 1 ? '' : 's'} on ${nodes.map((n) => n.ip).join(', ')}...`,
  );
  for (const n of nodes) {
    const ref = machineRef(lab, n);
    if (supervisorPid(ref) === undefined) n.pid = bootMachine(ref);
  }
  writeLab(lab);
  for (const n of nodes) await waitBooted(machineRef(lab, n), serverLayout(lab.flavor).unit, API_PORT);
  for (const n of nodes) await waitSshLogin(lab, n);
}

/**
 * A machine is up when ops can log in over SSH with the lab's key, the host key as the inventory pins
 * it, and run `sudo -n`: what every runbook does first. ssh.service being active is not enough
 * (sshd may still be starting to listen), so this is tried the way a client would, for a while.
 */
async function waitSshLogin(lab: LabRecord, n: LabNode, timeoutMs = 60_000): Promise<void> {
  const m = lab.machines!;
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    let host: SshHost | undefined;
    try {
      host = await SshHost.connect({
        host: n.ip,
        port: 22,
        user: 'ops',
        keyFile: m.keyFile,
        hostKey: m.nodes[n.name]!.hostKey,
        sudo: true,
        label: n.name,
        readyTimeoutMs: 10_000,
      });
      const r = await host.exec('true', { timeoutMs: 10_000 });
      if (r.code === 0) return;
      last = `sudo -n true exited ${r.code}: ${r.stderr.trim()}`;
    } catch (e) {
      last = (e as Error).message;
    } finally {
      host?.close();
    }
    if (Date.now() > deadline)
      throw new VaultopsError(`Machine ${n.name} (${n.ip}) booted, but ops cannot log in over SSH: ${last}`, {
        details: await unitJournal(machineRef(lab, n), 'ssh', 20).catch(() => []),
        hint: "`vaultops lab destroy` removes the lab; the lines above are the end of the machine's sshd journal.",
      });
    await sleep(500);
  }
}

/** `lab up` of a stopped lab of machines: the same root trees (data kept), booted again, unsealed. */
export async function restartHostsLab(lab: LabRecord, progress: (m: string) => void): Promise<LabRecord> {
  await checkMachinePrerequisites();
  try {
    await prepareNetworkAndRoots(lab);
    await bootAll(lab, lab.nodes, progress);
    // New machines of an immutable upgrade under way: booted as they were left (sealed until the upgrade unseals them).
    if (lab.newNodes?.length) await bootAll(lab, lab.newNodes, progress, lab.newVersion);
    await unsealAll(lab, readInit(lab), progress);
    await waitHealthy(lab, labToken(lab), progress);
    if (lab.loadBalancer) await startLoadBalancer(lab.loadBalancer, progress);
  } catch (e) {
    await tearDownHostsLab(lab, () => undefined).catch(() => undefined);
    throw e;
  }
  if (lab.inventory) writeInventory(lab);
  writeLab(lab);
  return lab;
}

async function prepareNetworkAndRoots(lab: LabRecord): Promise<void> {
  const m = lab.machines!;
  await createBridge(m.subnet);
  for (const n of [...lab.nodes, ...(lab.newNodes ?? [])]) {
    await createMachineLink(m.subnet, machineRef(lab, n).link);
    await mountRoot(machinePaths(n.dir));
  }
}

/** Powers every machine off and removes their mounts, namespaces, veths and the bridge. Data is kept. */
export async function tearDownHostsLab(lab: LabRecord, progress: (m: string) => void): Promise<number> {
  if (lab.loadBalancer) await stopLoadBalancer(lab.loadBalancer, progress);
  const all = [...lab.nodes, ...(lab.newNodes ?? []), ...(lab.retiredNodes ?? [])];
  const running = all.filter((n) => supervisorPid(machineRef(lab, n)) !== undefined);
  if (running.length)
    progress(`Powering off ${running.length} machine${running.length === 1 ? '' : 's'} of lab ${lab.name}...`);
  // In parallel: each poweroff waits for its units to stop (SIGINT to the server, up to 30 s).
  await Promise.all(all.map((n) => powerOff(machineRef(lab, n))));
  // Every machine is torn down even when one fails; the first failure is reported after.
  const failures: unknown[] = [];
  for (const n of all) {
    await tearDownMachine(machineRef(lab, n)).catch((e: unknown) => failures.push(e));
    n.pid = undefined;
  }
  await removeBridge(lab.machines!.subnet).catch((e: unknown) => failures.push(e));
  // Machines an immutable upgrade retired whose removal did not finish then: finished here.
  if (!failures.length && lab.retiredNodes) {
    for (const n of lab.retiredNodes) forgetMachine(lab, n);
    lab.retiredNodes = undefined;
  }
  if (existsSync(lab.dir)) writeLab(lab);
  if (failures.length) throw failures[0];
  return running.length;
}

/** Never recurse into a mounted root tree (an overlay of this machine's `/`). */
export function removeLabDir(dir: string): void {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  if (mounts.some((p) => isMounted(p)))
    throw new VaultopsError(`Lab directory ${dir} still has mounts (${mounts.join(', ')}); not removing it.`, {
      hint: `Unmount them (umount ${mounts[0]}) and run \`vaultops lab destroy\` again.`,
    });
  rmSync(dir, { recursive: true, force: true });
}

/** `vaultops lab reboot --node NAME`: a real reboot; the server comes back sealed (Shamir) as on a host. */
export async function rebootHostsNode(lab: LabRecord, nodeName: string, progress: (m: string) => void): Promise<void> {
  const ref = findMachine(lab, nodeName);
  progress(`Rebooting machine ${ref.name} (systemctl reboot)...`);
  await rebootMachine(ref);
  await waitBooted(ref, serverLayout(lab.flavor).unit, API_PORT);
}

/** Cuts or restores a machine's network (its veth on this machine), as a pulled cable would. */
export async function setMachineLink(lab: LabRecord, nodeName: string, state: 'up' | 'down'): Promise<void> {
  await setLinkState(findMachine(lab, nodeName).link, state);
}

/** ops's sudo with or without a password (the fault of a host whose sudo asks for one). */
export async function setOpsSudo(lab: LabRecord, nodeName: string, passwordless: boolean): Promise<void> {
  const ref = findMachine(lab, nodeName);
  writeSudoers(machinePaths(ref.dir), passwordless);
}

/** A command as root inside a running machine (tests and benchmarks). */
export async function runInMachine(
  lab: LabRecord,
  nodeName: string,
  command: string[],
  timeoutMs?: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return execInMachine(findMachine(lab, nodeName), command, timeoutMs);
}

export function machinePid(lab: LabRecord, nodeName: string): number | undefined {
  return machineInitPid(findMachine(lab, nodeName));
}

/**
 * `lab add-nodes` on a lab of machines: new machines on the lab's bridge, made as `lab up --hosts`
 * makes them (own namespace and address, sshd with a pinned host key, ops with sudo, the vendor's
 * unit), with the new version's binary and configs whose retry_join names every node, old and new.
 * They boot with the server running, sealed and uninitialised, as a provisioning tool leaves a new
 * host: joining and unsealing is the immutable upgrade's job. Recorded in lab.json (`newNodes`)
 * before the first is made, so a failure, or `lab down|destroy`, finds them; on failure they are
 * removed again and the lab is as it was.
 */
export async function addMachines(
  lab: LabRecord,
  o: { count: number; version: string; binary: string; progress: (m: string) => void; env: NodeJS.ProcessEnv },
): Promise<LabNode[]> {
  await checkMachinePrerequisites();
  const m = lab.machines!;
  const taken = [...lab.nodes, ...(lab.retiredNodes ?? [])].map(nodeIndex);
  const first = Math.max(0, ...taken) + 1;
  if (first + o.count - 1 > MAX_MACHINE_INDEX)
    throw new InputError(
      `Lab ${lab.name} has machines up to n${first - 1}; n${first}..n${first + o.count - 1} would pass n${MAX_MACHINE_INDEX}, the last address it gives out.`,
      { hint: 'Use a smaller --count, or a new lab.' },
    );
  const added: LabNode[] = [];
  for (let i = first; i < first + o.count; i++) added.push(machineNode(lab, m.subnet, i));
  for (const n of added)
    if (existsSync(n.dir))
      throw new InputError(
        `${n.dir} already exists (a machine ${n.name} of an earlier try); a new machine starts empty.`,
        {
          hint: `Remove it (nothing is mounted there: \`findmnt -R ${n.dir}\`), or \`vaultops lab destroy --name ${lab.name}\`.`,
        },
      );
  o.progress(
    `Adding machines ${added.map((n) => `${n.name} (${n.ip})`).join(', ')} on ${FLAVORS[lab.flavor].product} ${o.version}...`,
  );
  lab.newNodes = added;
  lab.newVersion = o.version;
  lab.newBinary = o.binary;
  writeLab(lab);
  try {
    // retry_join names every node, old and new: a new node finds the cluster through any of them.
    const config: LabRecord = { ...lab, version: o.version, nodes: [...lab.nodes, ...added] };
    await prepareMachines(lab, added, o.progress, o.env, { binary: o.binary, config });
    await bootAll(lab, added, o.progress, o.version);
  } catch (e) {
    // Whatever of them cannot be removed now stays recorded (as retired): `lab down|destroy` removes it.
    const left: LabNode[] = [];
    for (const n of added) {
      try {
        await tearDownMachine(machineRef(lab, n));
        forgetMachine(lab, n);
      } catch {
        left.push(n);
      }
    }
    if (left.length) lab.retiredNodes = [...(lab.retiredNodes ?? []), ...left];
    lab.newNodes = undefined;
    lab.newVersion = undefined;
    lab.newBinary = undefined;
    writeLab(lab);
    throw e;
  }
  writeInventory(lab);
  writeLab(lab);
  return added;
}

/** Machine nK is 10.213.K.(10+n): the last index whose address is still below the /24's broadcast. */
const MAX_MACHINE_INDEX = 99;

/** A machine gone from this host: its directory (root tree unmounted), certificate and pinned host key. */
function forgetMachine(lab: LabRecord, n: LabNode): void {
  removeLabDir(n.dir);
  for (const f of [`${n.name}.pem`, `${n.name}.key`]) rmSync(join(lab.dir, 'tls', f), { force: true });
  if (lab.machines) delete lab.machines.nodes[n.name];
}

/**
 * After an immutable upgrade: the old machines, which left the cluster and whose servers were
 * stopped, are powered off and removed, as retired hosts are decommissioned. One that cannot be
 * removed now (this process is not root) stays listed as retired: `lab down` and `lab destroy`
 * remove it.
 */
export async function retireMachines(lab: LabRecord, old: LabNode[]): Promise<void> {
  lab.retiredNodes = [...(lab.retiredNodes ?? []), ...old];
  writeLab(lab);
  if (process.getuid?.() !== 0) return;
  for (const n of old) {
    try {
      await tearDownMachine(machineRef(lab, n));
      forgetMachine(lab, n);
      lab.retiredNodes = lab.retiredNodes.filter((x) => x.name !== n.name);
    } catch {
      /* kept as retired: lab down / destroy tries again */
    }
  }
  if (!lab.retiredNodes.length) lab.retiredNodes = undefined;
  writeLab(lab);
}

/**
 * Every node's server config rewritten from the record (retry_join names the lab's nodes as they are
 * now), inside the machine: through its mounted root tree, or in its upper layer when it is down.
 * The servers read it at their next start; retry_join matters only then.
 */
export function writeMachineConfigs(lab: LabRecord): void {
  const layout = serverLayout(lab.flavor);
  for (const n of lab.nodes) {
    const p = machinePaths(n.dir);
    const file = join(isMounted(p.root) ? p.root : p.upper, layout.config);
    // An existing file keeps its owner and mode (root:openbao 0640) when written over.
    writeFileSync(file, renderConfig(lab, n, machineServerPaths(lab.flavor)));
  }
}
