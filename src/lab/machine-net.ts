import { existsSync } from 'node:fs';
import { VaultopsError } from '../core/errors.js';
import { run } from './exec.js';

/**
 * The network of a lab of machines: one bridge per lab holding 10.213.K.1/24 on this machine, and
 * per machine a network namespace wired to the bridge by a veth pair. The /24 is private to this
 * machine: no forwarding, no NAT, no route off it, so a server listening in a namespace is
 * reachable from here and from the other machines of its lab only.
 */
const PREFIX = '10.213';
const MAX_SUBNET = 250;

export interface MachineLink {
  /** /run/netns/<netns> */
  netns: string;
  /** The veth end on this machine, enslaved to the bridge; `ip link set VETH down` cuts the machine off. */
  veth: string;
  ip: string;
}

export function bridgeName(subnet: number): string {
  return `vaultops${subnet}`;
}

export function bridgeAddress(subnet: number): string {
  return `${PREFIX}.${subnet}.1`;
}

/** Node i (1-based) of a lab: 10.213.K.(10+i). */
export function machineAddress(subnet: number, index: number): string {
  return `${PREFIX}.${subnet}.${10 + index}`;
}

export function machineLink(labName: string, subnet: number, nodeName: string, index: number): MachineLink {
  return {
    // Namespaces are machine-wide, lab names only per state dir: the subnet (reserved machine-wide)
    // keeps two labs of one name apart, so removing one never takes the other's network.
    netns: `vaultops-${labName}-${nodeName}.${subnet}`,
    veth: `vo${subnet}${nodeName}`,
    ip: machineAddress(subnet, index),
  };
}

async function ip(args: string[], what: string): Promise<string> {
  const r = await run('ip', args, { timeoutMs: 15_000 });
  if (r.code !== 0)
    throw new VaultopsError(`Could not ${what}: ip ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.code}`}.`);
  return r.stdout;
}

/** Subnets already in use on this machine (an address or a route in 10.213.K.0/24). */
export async function subnetsInUse(): Promise<Set<number>> {
  const used = new Set<number>();
  const addrs = await run('ip', ['-4', '-o', 'addr', 'show'], { timeoutMs: 15_000 });
  const routes = await run('ip', ['-4', 'route', 'show'], { timeoutMs: 15_000 });
  for (const m of `${addrs.stdout}\n${routes.stdout}`.matchAll(/\b10\.213\.(\d+)\./g)) used.add(Number(m[1]));
  const links = await run('ip', ['-o', 'link', 'show'], { timeoutMs: 15_000 });
  for (const m of links.stdout.matchAll(/\bvaultops(\d+)\b/g)) used.add(Number(m[1]));
  return used;
}

export async function pickSubnet(taken: Set<number>): Promise<number> {
  const used = await subnetsInUse();
  for (let k = 1; k <= MAX_SUBNET; k++) if (!taken.has(k) && !used.has(k)) return k;
  throw new VaultopsError(`Every 10.213.K.0/24 network for lab machines (K = 1..${MAX_SUBNET}) is in use.`, {
    hint: 'Destroy labs you no longer need: `vaultops lab destroy --name NAME`.',
  });
}

async function linkExists(name: string): Promise<boolean> {
  return (await run('ip', ['link', 'show', 'dev', name], { timeoutMs: 15_000 })).code === 0;
}

export function netnsExists(netns: string): boolean {
  return existsSync(`/run/netns/${netns}`);
}

export async function createBridge(subnet: number): Promise<void> {
  const br = bridgeName(subnet);
  if (!(await linkExists(br))) await ip(['link', 'add', br, 'type', 'bridge'], `create the lab bridge ${br}`);
  const addrs = await ip(['-4', '-o', 'addr', 'show', 'dev', br], `read the addresses of ${br}`);
  if (!addrs.includes(`${bridgeAddress(subnet)}/`))
    await ip(['addr', 'add', `${bridgeAddress(subnet)}/24`, 'dev', br], `give ${br} its address`);
  await ip(['link', 'set', br, 'up'], `bring ${br} up`);
}

/** A namespace with lo up and eth0 = the machine's end of a veth pair whose other end is on the bridge. */
export async function createMachineLink(subnet: number, link: MachineLink): Promise<void> {
  if (!netnsExists(link.netns)) await ip(['netns', 'add', link.netns], `create the network namespace ${link.netns}`);
  const inNs = await run('ip', ['-n', link.netns, 'link', 'show', 'dev', 'eth0'], { timeoutMs: 15_000 });
  if (inNs.code !== 0) {
    if (await linkExists(link.veth)) await ip(['link', 'del', link.veth], `remove a stale ${link.veth}`);
    const peer = `${link.veth}p`;
    await ip(['link', 'add', link.veth, 'type', 'veth', 'peer', 'name', peer], `create the veth pair ${link.veth}`);
    await ip(['link', 'set', peer, 'netns', link.netns], `move ${peer} into ${link.netns}`);
    await ip(['-n', link.netns, 'link', 'set', peer, 'name', 'eth0'], `rename ${peer} to eth0`);
    await ip(['-n', link.netns, 'addr', 'add', `${link.ip}/24`, 'dev', 'eth0'], `give ${link.netns} its address`);
  }
  await ip(['-n', link.netns, 'link', 'set', 'lo', 'up'], `bring lo up in ${link.netns}`);
  await ip(['-n', link.netns, 'link', 'set', 'eth0', 'up'], `bring eth0 up in ${link.netns}`);
  await ip(['link', 'set', link.veth, 'master', bridgeName(subnet)], `attach ${link.veth} to the bridge`);
  await ip(['link', 'set', link.veth, 'up'], `bring ${link.veth} up`);
}

/** Cuts (down) or restores (up) a machine's only link, as a pulled cable would. */
export async function setLinkState(link: MachineLink, state: 'up' | 'down'): Promise<void> {
  await ip(['link', 'set', link.veth, state], `set ${link.veth} ${state}`);
}

/** Idempotent: removes what exists of the namespace (its veth end goes with it) and the host end. */
export async function removeMachineLink(link: MachineLink): Promise<void> {
  if (netnsExists(link.netns)) await ip(['netns', 'del', link.netns], `remove the network namespace ${link.netns}`);
  // The host end goes with the namespace's end, a moment later: gone by now is as good as removed.
  const r = await run('ip', ['link', 'del', link.veth], { timeoutMs: 15_000 });
  if (r.code !== 0 && !/Cannot find device|No such device/.test(r.stderr))
    throw new VaultopsError(`Could not remove ${link.veth}: ${r.stderr.trim()}.`);
}

export async function removeBridge(subnet: number): Promise<void> {
  if (await linkExists(bridgeName(subnet)))
    await ip(['link', 'del', bridgeName(subnet)], `remove the lab bridge ${bridgeName(subnet)}`);
}
