import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { GateError, InputError, InterruptedError, VaultopsError } from '../core/errors.js';
import type { ClusterSpec, NodeSpec } from '../inventory/schema.js';
import type { Host } from '../ssh/host.js';
import type { ServiceManager } from '../ssh/services.js';
import { sameHost, type ClusterClient, type ClusterNode } from '../vault/cluster.js';
import type { RaftServer } from '../vault/api-types.js';
import { swapBinary, verifyLocalBinary, verifyStaged, type BinarySource } from './binary-install.js';
import {
  closeMembers,
  halt,
  memberFor,
  stageOnAll,
  type Member,
  type NodeUpgradeContext,
  type UpgradeEvent,
} from './members.js';
import { settledGate, startAndRejoin, waitFor, waitForNewLeader } from './node-waits.js';
import { verifyUpgrade } from './end-state.js';
import { compareVersions } from '../core/version.js';
import { writeFileAtomicSync } from '../core/atomic-write.js';

/**
 * An immutable upgrade (seed 004, HashiCorp's "add new nodes, then remove old ones"): new nodes on
 * the new version join, autopilot promotes them to healthy voters, then the old nodes leave one at a
 * time (remove-peer, then a clean stop: `systemctl stop`, the unit's KillSignal), the old leader last, so leadership only ever moves to a node on
 * the new version. The cluster never has fewer voters than it started with.
 *
 * The run is idempotent: every phase looks at the live Raft configuration first, so running it again
 * after a halt continues where it stopped. A state file (no secrets) records that a run is under way,
 * with which binary, so the strict first gate (every old node healthy) is not asked of a cluster
 * that is half-way through.
 */
export interface ImmutableUpgradeOptions {
  /** The cluster's client over the inventory's current `nodes`. */
  cluster: ClusterClient;
  clusterName: string;
  spec: ClusterSpec;
  openHost(node: NodeSpec): Promise<Host>;
  binary: BinarySource;
  unsealKeys?: string[] | undefined;
  /** Takes the pre-upgrade snapshot before the first new node joins; absent when the caller took it (the playbook's own step). */
  snapshot?: (() => Promise<string>) | undefined;
  waitTimeoutMs?: number | undefined;
  onEvent?: ((e: UpgradeEvent) => void) | undefined;
  signal?: AbortSignal | undefined;
  /** Where the run records that it is under way (no secrets). */
  stateFile?: string | undefined;
}

export interface ImmutablePhaseOptions extends ImmutableUpgradeOptions {
  /** Only these phases (the playbook runs them as separate steps); default all. */
  only?: { join?: boolean; retire?: readonly string[] | 'all'; verify?: boolean } | undefined;
}

export interface ImmutableUpgradeResult {
  target: string;
  fromVersions: Record<string, string>;
  joined: string[];
  removed: string[];
  /** The nodes of the cluster now (the inventory's new `nodes`). */
  nodes: string[];
  leader?: string | undefined;
  snapshot?: string | undefined;
  versionHistory: string[];
  wallMs: number;
}

interface StateRecord {
  sha256: string;
  target: string;
  startedAt: string;
  old: string[];
  new: string[];
  fromVersions: Record<string, string>;
  snapshot?: string | undefined;
  step?: string | undefined;
}

const DEFAULT_TIMEOUT = 120_000;

function readState(file: string | undefined): StateRecord | undefined {
  if (!file || !existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as StateRecord;
  } catch {
    return undefined;
  }
}

function writeState(file: string | undefined, rec: StateRecord): void {
  if (!file) return;
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileAtomicSync(file, `${JSON.stringify(rec, null, 2)}\n`, 0o600);
}

export function clusterNodeOf(n: NodeSpec): ClusterNode {
  return { name: n.name, apiAddr: n.api_addr, clusterAddr: n.cluster_addr, zone: n.zone };
}

/** Old and new nodes in one client (same token and connection pool). */
export function combinedCluster(cluster: ClusterClient, spec: ClusterSpec): ClusterClient {
  return cluster.withNodes([...spec.nodes, ...(spec.new_nodes ?? [])].map(clusterNodeOf));
}

function raftServerOf(servers: readonly RaftServer[], node: ClusterNode): RaftServer | undefined {
  return (
    servers.find((s) => s.node_id === node.name) ??
    servers.find((s) => sameHost(s.address, node.clusterAddr ?? node.apiAddr))
  );
}

/** The Raft configuration, asked of whichever node is active among old and new. */
async function raftServers(all: ClusterClient): Promise<RaftServer[]> {
  const leader = await all.findLeader();
  return (await leader.client.raftConfiguration()).config.servers;
}

export interface ImmutablePreflight {
  target: string;
  fromVersions: Record<string, string>;
  resumed: boolean;
  /** Hosts of old and new nodes, opened and verified; close with closeMembers. */
  oldMembers: Member[];
  newMembers: Member[];
  all: ClusterClient;
  state: StateRecord;
}

/**
 * Everything before the first change: the binary's sha256; new nodes are listed, reachable over SSH
 * with verified host keys, and not members of another cluster; on a fresh run every old node is
 * reachable, unsealed, a voter, autopilot healthy, failure tolerance >= 1; the binary staged and
 * verified on every new host, and newer than every old node.
 */
export async function preflightImmutable(o: ImmutableUpgradeOptions): Promise<ImmutablePreflight> {
  const emit = o.onEvent ?? (() => undefined);
  const unit = o.spec.flavor === 'openbao' ? 'openbao' : 'vault';
  await verifyLocalBinary(o.binary);
  if (!o.binary.url) emit({ kind: 'gate', message: `${o.binary.path}: sha256 matches.` });
  const newSpecs = o.spec.new_nodes ?? [];
  if (!newSpecs.length) {
    throw new InputError(
      `Cluster ${o.clusterName} lists no new_nodes: an immutable upgrade replaces the nodes with new ones.`,
      {
        hint: 'List the new hosts under new_nodes: in the inventory (same fields as nodes:); in the lab, `vaultops lab add-nodes --name LAB --count 3 --version NEW` writes them.',
      },
    );
  }
  for (const n of [...o.spec.nodes, ...newSpecs]) {
    if (!n.ssh)
      throw new InputError(
        `Node ${n.name} has no ssh settings: an immutable upgrade stops old nodes and installs new ones over SSH.`,
        { hint: 'Add ssh: {host, user, key_file, host_key} to the node in the inventory.' },
      );
    if (!n.service?.binary)
      throw new InputError(`Node ${n.name} has no service.binary: where the server binary lives on the host.`, {
        hint: 'Add service: {binary: /usr/local/bin/vault} to the node.',
      });
  }
  if (!o.cluster.hasToken)
    throw new InputError(
      `Cluster ${o.clusterName} has no token; the upgrade reads Raft and autopilot state and removes peers.`,
      { hint: 'Set token: in the inventory, or export VAULT_TOKEN / BAO_TOKEN.' },
    );

  const all = combinedCluster(o.cluster, o.spec);
  let state = readState(o.stateFile);
  if (
    state &&
    (state.sha256 !== o.binary.sha256.toLowerCase() || state.new.join() !== newSpecs.map((n) => n.name).join())
  ) {
    emit({
      kind: 'gate',
      message: `an earlier immutable upgrade with another binary or other new nodes was recorded (${state.startedAt}); its record is dropped`,
    });
    state = undefined;
  }
  const servers = await raftServers(all).catch(() => undefined);
  const newInRaft = servers ? newSpecs.filter((n) => raftServerOf(servers, clusterNodeOf(n))) : [];
  const resumed = state !== undefined && newInRaft.length > 0;

  if (!resumed) {
    // A fresh run: the cluster as it is must be healthy and able to lose a node.
    const before = await settledGate(() => o.cluster.status());
    if (before.health !== 'healthy') {
      throw new GateError(`Cluster ${o.clusterName} is not healthy; no node was touched and no new node joined.`, {
        details: before.problems,
        hint: 'Fix the problems above (`vaultops status -i INV`), then run the upgrade again.',
      });
    }
    if (newInRaft.length) {
      throw new GateError(
        `New node${newInRaft.length > 1 ? 's' : ''} ${newInRaft.map((n) => n.name).join(', ')} ${newInRaft.length > 1 ? 'are' : 'is'} already in the Raft configuration, but no run of this upgrade is recorded.`,
        {
          hint: 'Someone joined them by hand, or the state file was lost. Check `operator raft list-peers`; remove them (remove-peer) or finish by hand.',
        },
      );
    }
    emit({
      kind: 'gate',
      message: `all ${before.nodes.length} old nodes reachable, unsealed, voters; autopilot healthy; failure tolerance ${before.autopilot?.failureTolerance}.`,
    });
  } else {
    // Resuming: the cluster must have an active node; each later step checks quorum before it changes anything.
    const leader = await all.findLeader();
    emit({
      kind: 'gate',
      message: `resuming the immutable upgrade started ${state!.startedAt}: ${leader.node.name} is the active node; ${newInRaft.map((n) => n.name).join(', ')} already joined`,
    });
  }

  const oldMembers: Member[] = [];
  const newMembers: Member[] = [];
  try {
    // Old nodes still in the cluster must be reachable (they are stopped over SSH); new ones always.
    // On a resumed run an old node that already left may be gone for good (host decommissioned): skipped.
    for (const spec of o.spec.nodes) {
      const stillMember = !resumed || !servers || raftServerOf(servers, clusterNodeOf(spec)) !== undefined;
      try {
        oldMembers.push(memberFor(all, spec, await o.openHost(spec), unit));
      } catch (e) {
        if (stillMember) throw e;
        emit({
          kind: 'skip',
          node: spec.name,
          reason: `already removed from the cluster; its host does not answer (${(e as Error).message})`,
        });
      }
    }
    for (const spec of newSpecs) newMembers.push(memberFor(all, spec, await o.openHost(spec), unit));
    emit({
      kind: 'gate',
      message: `SSH to ${[...oldMembers, ...newMembers].map((m) => m.spec.name).join(', ')}: host keys verified.`,
    });
    if (!resumed) {
      for (const m of oldMembers) {
        if (!(await m.service.status()).running)
          throw new GateError(
            `Node ${m.spec.name}: the ${m.service.kind} service manager says the server is not running, although its API answers.`,
            { hint: "The inventory's service settings may not describe this host; fix them first." },
          );
      }
    }

    // Stage on every new host at once, verified there; ask the staged binary its version.
    const target = await stageOnAll(newMembers, o.binary, emit);

    // Old versions: from the nodes (fresh run) or the record (some old nodes may be gone).
    const fromVersions: Record<string, string> = { ...(state?.fromVersions ?? {}) };
    if (!resumed) {
      for (const p of await o.cluster.probeAll()) fromVersions[p.node.name] = p.health?.body.version ?? 'unknown';
      for (const [name, v] of Object.entries(fromVersions)) {
        if (compareVersions(target, v) <= 0) {
          throw new GateError(
            `The new binary is ${target}, not newer than ${name}'s ${v}: an immutable upgrade needs a newer version on the new nodes.`,
            {
              hint:
                compareVersions(target, v) < 0
                  ? 'A downgrade is not an upgrade: restore the pre-upgrade snapshot onto a cluster of the old version instead.'
                  : 'The cluster is already on this version; nothing to replace.',
            },
          );
        }
      }
      emit({
        kind: 'gate',
        message: `target ${target} is newer than ${Object.entries(fromVersions)
          .map(([n, v]) => `${n} (${v})`)
          .join(', ')}.`,
      });
    }

    // New nodes: a running one must already be the new version, and not a member of some other cluster.
    for (const m of newMembers) {
      const h = await all
        .client(m.spec.name)
        .health()
        .catch(() => undefined);
      if (!h) continue;
      if (h.body.version && h.body.version !== target)
        throw new GateError(`New node ${m.spec.name} already runs ${h.body.version}, not ${target}.`, {
          hint: `Stop it (its service), or install ${target} on it; nothing was changed.`,
        });
      const member = servers ? raftServerOf(servers, clusterNodeOf(m.spec)) : undefined;
      // Sealed and "initialised" is a node whose retry_join reached the leader and waits for the shares;
      // unsealed and not a member is a node serving some other cluster.
      if (h.body.initialized && !h.body.sealed && !member) {
        throw new GateError(
          `New node ${m.spec.name} is unsealed but not a member of ${o.clusterName}: it serves another cluster's data.`,
          { hint: 'Wipe its data directory (it must start empty), then run the upgrade again.' },
        );
      }
    }

    state = state ?? {
      sha256: o.binary.sha256.toLowerCase(),
      target,
      startedAt: new Date().toISOString(),
      old: o.spec.nodes.map((n) => n.name),
      new: newSpecs.map((n) => n.name),
      fromVersions,
    };
    return { target, fromVersions, resumed, oldMembers, newMembers, all, state };
  } catch (e) {
    closeMembers([...oldMembers, ...newMembers]);
    throw e;
  }
}

/** Whether autopilot calls the node a healthy voter on `version`. */
async function isHealthyVoter(all: ClusterClient, node: ClusterNode, version: string): Promise<boolean> {
  const h = await all
    .client(node.name)
    .health()
    .catch(() => undefined);
  if (!h || (h.state !== 'standby' && h.state !== 'active' && h.state !== 'perf-standby') || h.body.version !== version)
    return false;
  const leader = await all.findLeader().catch(() => undefined);
  const ap = await leader?.client.autopilotState().catch(() => undefined);
  const s =
    ap &&
    Object.values(ap.servers ?? {}).find(
      (x) => x.id === node.name || sameHost(x.address, node.clusterAddr ?? node.apiAddr),
    );
  return s !== undefined && s.healthy && (s.status === 'voter' || s.status === 'leader');
}

/**
 * One new node: installed (the staged binary swapped in when the host has another one) and started
 * when it is not running, joined through `sys/storage/raft/join` against the active node (a node
 * whose config has retry_join joins by itself), unsealed with the shares (Shamir), then waited on
 * until autopilot has promoted it to a healthy voter and it has caught up.
 */
async function joinNewNode(
  o: ImmutableUpgradeOptions,
  p: ImmutablePreflight,
  m: Member,
  emit: (e: UpgradeEvent) => void,
): Promise<void> {
  const timeout = o.waitTimeoutMs ?? DEFAULT_TIMEOUT;
  const name = m.spec.name;
  const client = p.all.client(name);
  const caPem = o.spec.tls?.ca_cert ? readFileSync(o.spec.tls.ca_cert, 'utf8') : undefined;
  const service = m.service;
  const joining: ServiceManager = {
    kind: service.kind,
    status: () => service.status(),
    stop: (t) => service.stop(t),
    logTail: (n) => service.logTail(n),
    describeStop: () => service.describeStop(),
    start: async () => {
      if (!(await service.status()).running) {
        await verifyStaged(m.host, m.binaryPath, o.binary.sha256);
        if ((await m.host.sha256(m.binaryPath)) !== o.binary.sha256.toLowerCase()) {
          await swapBinary(m.host, m.binaryPath);
          emit({ kind: 'node', node: name, message: `installed the new binary at ${m.binaryPath}` });
        }
        await service.start();
        emit({ kind: 'node', node: name, message: `started through the ${service.kind} service manager` });
      }
      const up = await waitFor(
        timeout,
        o.signal,
        async () =>
          (await client.sealStatus().catch(() => undefined)) ??
          ((await service.status()).running ? undefined : ('died' as const)),
      );
      if (!up || up === 'died')
        throw await halt(
          m,
          `${name} ${up === 'died' ? 'exited right after it was started' : `did not answer on its API within ${timeout / 1000} s`}.`,
          'Read the log above. No old node was touched.',
        );
      if (up.initialized) return; // joined already (a resumed run, or retry_join got there first)
      const leader = await p.all.findLeader();
      emit({
        kind: 'node',
        node: name,
        message: `joining through sys/storage/raft/join with leader ${leader.node.apiAddr}`,
      });
      const body = JSON.stringify({
        leader_api_addr: leader.node.apiAddr,
        ...(caPem ? { leader_ca_cert: caPem } : {}),
      });
      const r = await client.raw('POST', '/sys/storage/raft/join', body);
      const text = r.body.toString('utf8');
      // A node with retry_join in its config may be joining already; the unseal below completes either way.
      if (r.status !== 200 && r.status !== 204 && !/already|in progress/i.test(text)) {
        throw await halt(
          m,
          `${name}: sys/storage/raft/join answered HTTP ${r.status}: ${text.trim().slice(0, 300)}`,
          "Check that the new node reaches the active node's API and cluster port, and trusts its CA.",
        );
      }
    },
  };
  const ctx: NodeUpgradeContext = {
    cluster: p.all,
    clusterName: o.clusterName,
    binary: o.binary,
    unsealKeys: o.unsealKeys,
    signal: o.signal,
  };
  const t = await startAndRejoin(ctx, { ...m, service: joining }, p.target, timeout, emit);
  emit({
    kind: 'node',
    node: name,
    message: `healthy voter on ${p.target}, caught up (start ${t.startMs} ms, unseal ${t.unsealMs} ms, promotion ${t.catchUpMs} ms)`,
  });
}

/**
 * The cluster may lose one member now: an active node; every joined new node a healthy voter on the
 * target; autopilot healthy with failure tolerance >= 1.
 */
async function gateBeforeRemoval(o: ImmutableUpgradeOptions, p: ImmutablePreflight, what: string): Promise<void> {
  const { problems } = await settledGate(async () => {
    const leader = await p.all.findLeader();
    const ap = await leader.client.autopilotState();
    const found: string[] = [];
    for (const m of p.newMembers)
      if (!(await isHealthyVoter(p.all, m.node, p.target)))
        found.push(`new node ${m.spec.name} is not a healthy voter on ${p.target}`);
    if (!ap.healthy) found.push('autopilot reports the cluster unhealthy');
    if (ap.failure_tolerance < 1) found.push(`failure tolerance is ${ap.failure_tolerance}`);
    return { problems: found };
  });
  if (problems.length)
    throw new GateError(`Not ${what}: cluster ${o.clusterName} cannot lose a member now.`, {
      details: problems,
      hint: 'Nothing was changed on that node. Fix the cluster, then run the upgrade again: it continues from here.',
    });
}

async function removePeer(
  o: ImmutableUpgradeOptions,
  p: ImmutablePreflight,
  m: Member,
  emit: (e: UpgradeEvent) => void,
): Promise<void> {
  const timeout = o.waitTimeoutMs ?? DEFAULT_TIMEOUT;
  const servers = await raftServers(p.all);
  const server = raftServerOf(servers, m.node);
  if (!server) return;
  const leader = await p.all.findLeader();
  if (leader.node.name === m.spec.name)
    throw new VaultopsError(`Refusing to remove ${m.spec.name} while it is the active node.`);
  await leader.client.write('sys/storage/raft/remove-peer', { server_id: server.node_id });
  const gone = await waitFor(timeout, o.signal, async () =>
    (await raftServers(p.all).catch(() => undefined))?.some((s) => s.node_id === server.node_id) === false
      ? true
      : undefined,
  );
  if (!gone)
    throw await halt(
      m,
      `${m.spec.name} is still in the Raft configuration ${timeout / 1000} s after remove-peer.`,
      'Check `operator raft list-peers`; run the upgrade again.',
    );
  emit({
    kind: 'node',
    node: m.spec.name,
    message: `removed from the Raft configuration (remove-peer ${server.node_id} on ${leader.node.name})`,
  });
}

async function waitTolerance(
  o: ImmutableUpgradeOptions,
  p: ImmutablePreflight,
  m: Member,
  after: string,
): Promise<void> {
  const timeout = o.waitTimeoutMs ?? DEFAULT_TIMEOUT;
  let last = '';
  const ok = await waitFor(timeout, o.signal, async () => {
    const leader = await p.all.findLeader().catch((e: Error) => e);
    if (leader instanceof Error) return ((last = leader.message), undefined);
    const ap = await leader.client.autopilotState().catch((e: Error) => e);
    if (ap instanceof Error) return ((last = ap.message), undefined);
    if (!ap.healthy) return ((last = 'autopilot reports the cluster unhealthy'), undefined);
    if (ap.failure_tolerance < 1) return ((last = `failure tolerance ${ap.failure_tolerance}`), undefined);
    return true;
  });
  if (!ok)
    throw await halt(
      m,
      `after ${after}, the cluster did not get back to healthy with failure tolerance >= 1 within ${timeout / 1000} s: ${last}.`,
      'Check `vaultops status` with the new nodes; run the upgrade again to continue.',
    );
}

/** An old standby: remove-peer first (the cluster stops counting it), then stop its server cleanly. */
async function retireStandby(
  o: ImmutableUpgradeOptions,
  p: ImmutablePreflight,
  m: Member,
  emit: (e: UpgradeEvent) => void,
): Promise<void> {
  const timeout = o.waitTimeoutMs ?? DEFAULT_TIMEOUT;
  await gateBeforeRemoval(o, p, `removing ${m.spec.name}`);
  writeState(o.stateFile, { ...p.state, step: `retire ${m.spec.name}` });
  await removePeer(o, p, m, emit);
  await m.service.stop(timeout);
  emit({ kind: 'node', node: m.spec.name, message: `stopped (${await m.service.describeStop()}, process gone)` });
  await waitTolerance(o, p, m, `removing ${m.spec.name}`);
}

/**
 * The old leader, last, when no other old node is left: a clean stop, so it releases leadership at once
 * and a new node (the only voters besides it) takes over; then remove-peer on the new leader.
 */
async function retireLeader(
  o: ImmutableUpgradeOptions,
  p: ImmutablePreflight,
  m: Member,
  emit: (e: UpgradeEvent) => void,
): Promise<void> {
  const timeout = o.waitTimeoutMs ?? DEFAULT_TIMEOUT;
  const servers = await raftServers(p.all);
  const otherOld = p.oldMembers.filter((x) => x !== m && raftServerOf(servers, x.node));
  if (otherOld.length)
    throw new GateError(
      `Not stopping the old leader ${m.spec.name}: ${otherOld.map((x) => x.spec.name).join(', ')} (old version) ${otherOld.length > 1 ? 'are' : 'is'} still a member and could take over.`,
      { hint: 'Run the upgrade again: the old standbys leave first.' },
    );
  if (raftServerOf(servers, m.node)) {
    const leader = await p.all.findLeader();
    if (leader.node.name === m.spec.name) {
      await gateBeforeRemoval(o, p, `stopping the old leader ${m.spec.name}`);
      writeState(o.stateFile, { ...p.state, step: `retire leader ${m.spec.name}` });
      emit({
        kind: 'node',
        node: m.spec.name,
        message: `old leader: ${await m.service.describeStop()} (it releases leadership; a new node takes over)`,
      });
      const t0 = Date.now();
      await m.service.stop(timeout);
      const newLeader = await waitForNewLeader(p.all, m.spec.name, timeout, o.signal);
      if (!newLeader)
        throw await halt(
          m,
          `no new node became active within ${timeout / 1000} s after the old leader ${m.spec.name} stopped.`,
          'Start the old leader again if the cluster has no active node.',
        );
      if (!p.newMembers.some((x) => x.spec.name === newLeader))
        throw new VaultopsError(
          `After the old leader stopped, ${newLeader} (not a new node) became active: this must not happen.`,
        );
      emit({
        kind: 'node',
        node: m.spec.name,
        message: `stopped; ${newLeader} (on ${p.target}) is the active node after ${Date.now() - t0} ms`,
      });
    } else if ((await m.service.status()).running) {
      await m.service.stop(timeout);
    }
    await removePeer(o, p, m, emit);
  }
  if ((await m.service.status()).running) await m.service.stop(timeout);
  await waitTolerance(o, p, m, `removing ${m.spec.name}`);
}

/** Every old node that is still a member or still running, standbys first, the active node last. */
async function retireOrder(p: ImmutablePreflight): Promise<{ standbys: Member[]; leader?: Member | undefined }> {
  const servers = await raftServers(p.all);
  const leader = await p.all.findLeader();
  const left: Member[] = [];
  for (const m of p.oldMembers) if (raftServerOf(servers, m.node) || (await m.service.status()).running) left.push(m);
  return {
    standbys: left.filter((m) => m.spec.name !== leader.node.name),
    leader: left.find((m) => m.spec.name === leader.node.name) ?? undefined,
  };
}

export async function verifyImmutable(
  o: Pick<ImmutableUpgradeOptions, 'cluster' | 'clusterName' | 'spec'>,
  target: string,
): Promise<{ leader: string; versionHistory: string[]; nodes: string[] }> {
  const newOnly = o.cluster.withNodes((o.spec.new_nodes ?? []).map(clusterNodeOf));
  const v = await verifyUpgrade(newOnly, o.clusterName, target);
  const servers = await raftServers(newOnly);
  const ids = servers.map((s) => s.node_id).sort();
  const want = (o.spec.new_nodes ?? []).map((n) => n.name).sort();
  if (ids.join() !== want.join())
    throw new VaultopsError(
      `After the upgrade the Raft configuration lists ${ids.join(', ')}, not only the new nodes ${want.join(', ')}.`,
    );
  return { ...v, nodes: want };
}

export async function immutableUpgrade(o: ImmutablePhaseOptions): Promise<ImmutableUpgradeResult> {
  const started = Date.now();
  const emit = o.onEvent ?? (() => undefined);
  const only = o.only;
  const p = await preflightImmutable(o);
  const joined: string[] = [];
  const removed: string[] = [];
  try {
    const betweenNodes = (done: string) => {
      if (o.signal?.aborted)
        throw new InterruptedError(`Immutable upgrade interrupted ${done}.`, {
          hint: 'Run the same upgrade again to continue from here.',
        });
    };
    if (!only || only.join) {
      if (!p.state.snapshot && o.snapshot) {
        const snapshot = await o.snapshot();
        emit({ kind: 'snapshot', message: `pre-upgrade snapshot: ${snapshot}` });
        p.state.snapshot = snapshot;
      }
      writeState(o.stateFile, { ...p.state, step: 'join' });
      emit({
        kind: 'plan',
        message: `order: join ${p.newMembers.map((m) => m.spec.name).join(', ')} on ${p.target}; then remove old standbys one at a time; the old leader last`,
        order: p.newMembers.map((m) => m.spec.name),
      });
      for (const m of p.newMembers) {
        betweenNodes(`before ${m.spec.name} joined`);
        if (await isHealthyVoter(p.all, m.node, p.target)) {
          emit({ kind: 'skip', node: m.spec.name, reason: `already a healthy voter on ${p.target}` });
          continue;
        }
        await joinNewNode(o, p, m, emit);
        joined.push(m.spec.name);
      }
    }
    if (!only || only.retire) {
      const order = await retireOrder(p);
      const wanted = (m: Member) => !only || only.retire === 'all' || (only.retire ?? []).includes(m.spec.name);
      for (const m of order.standbys.filter(wanted)) {
        betweenNodes(`before ${m.spec.name} was removed`);
        await retireStandby(o, p, m, emit);
        removed.push(m.spec.name);
      }
      if (order.leader && wanted(order.leader)) {
        betweenNodes(`before the old leader ${order.leader.spec.name} was removed`);
        await retireLeader(o, p, order.leader, emit);
        removed.push(order.leader.spec.name);
      }
    }
    let result: ImmutableUpgradeResult = {
      target: p.target,
      fromVersions: p.fromVersions,
      joined,
      removed,
      nodes: p.newMembers.map((m) => m.spec.name),
      snapshot: p.state.snapshot,
      versionHistory: [],
      wallMs: 0,
    };
    if (!only || only.verify) {
      const v = await verifyImmutable(o, p.target);
      if (o.stateFile) rmSync(o.stateFile, { force: true });
      emit({
        kind: 'verify',
        message: `one leader (${v.leader}), all nodes on ${p.target}, list-peers has only ${v.nodes.join(', ')}, sys/version-history: ${v.versionHistory.join(', ')}.`,
      });
      result = { ...result, leader: v.leader, versionHistory: v.versionHistory };
    }
    return { ...result, wallMs: Date.now() - started };
  } finally {
    closeMembers([...p.oldMembers, ...p.newMembers]);
  }
}
