import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { GateError, InputError, InterruptedError, VaultopsError } from '../core/errors.js';
import type { ClusterSpec, NodeSpec } from '../inventory/schema.js';
import type { Host } from '../ssh/host.js';
import { serviceManager, type ServiceManager } from '../ssh/services.js';
import { sameHost, type ClusterClient, type ClusterNode } from '../vault/cluster.js';
import type { VaultClient } from '../vault/client.js';
import type { AutopilotServer, AutopilotState } from '../vault/types.js';
import { remoteBinaryVersion, rollbackBinary, stageBinary, STAGED_SUFFIX, swapBinary, verifyLocalBinary, verifyStaged, type BinarySource } from './binary-install.js';
import { compareVersions, parseGoDuration } from './versions.js';

/**
 * A rolling in-place upgrade in HashiCorp's order (shared/reference/vault-ops-api.md §8.2,
 * developer.hashicorp.com/vault/docs/upgrading/vault-ha-upgrade): standbys one at a time, the
 * active node last, stopped with SIGTERM so that an already-upgraded standby takes over; never a
 * step-down, never a failover from a newer node to an older one.
 *
 * Re-running after a halt is the resume: nodes already on the target version are skipped.
 */
export interface RollingUpgradeOptions {
  /** The cluster's client, with a token that can read raft/autopilot and take a snapshot. */
  cluster: ClusterClient;
  clusterName: string;
  spec: ClusterSpec;
  /** Opens the host of a node (SSH); host key and reachability are checked here, before any change. */
  openHost(node: NodeSpec): Promise<Host>;
  binary: BinarySource;
  /** Unseal shares (Shamir), already resolved. Not needed with auto-unseal. */
  unsealKeys?: string[] | undefined;
  /** Takes the pre-upgrade snapshot; returns where it is. */
  snapshot(): Promise<string>;
  /** What to do when a node does not come back: stop there (default), or put its old binary back first. */
  onNodeFailure?: 'halt' | 'rollback' | undefined;
  /** How long each wait may take (default 120 s). */
  waitTimeoutMs?: number | undefined;
  /** Override autopilot's server_stabilization_time (ms) for the pause after each node. */
  stabilizationMs?: number | undefined;
  onEvent?: ((e: UpgradeEvent) => void) | undefined;
  signal?: AbortSignal | undefined;
  /**
   * Where the node being upgraded is recorded (no secrets): written before a node goes down, cleared
   * once the next node passed its gate or the run verified. A run that finds it resumes: when that
   * node is down or sealed (the run halted or was killed mid-node), it is brought back first.
   */
  progressFile?: string | undefined;
}

export type UpgradeEvent =
  | { kind: 'gate'; message: string }
  | { kind: 'stage'; node: string; message: string }
  | { kind: 'snapshot'; message: string }
  | { kind: 'plan'; message: string; order: string[] }
  | { kind: 'skip'; node: string; reason: string }
  | { kind: 'node'; node: string; message: string }
  | { kind: 'verify'; message: string };

export interface NodeTiming {
  node: string;
  role: 'standby' | 'leader';
  /** SIGTERM until the process was gone. */
  stopMs: number;
  /** Leader only: SIGTERM until another node was active. */
  failoverMs?: number | undefined;
  /** Start until the API answered. */
  startMs: number;
  unsealMs: number;
  /** Unsealed until healthy voter, caught up, autopilot healthy. */
  catchUpMs: number;
  stabilizationMs: number;
  totalMs: number;
}

export interface RollingUpgradeResult {
  target: string;
  fromVersions: Record<string, string>;
  upgraded: string[];
  skipped: Array<{ node: string; reason: string }>;
  snapshot?: string | undefined;
  versionHistory: string[];
  timings: NodeTiming[];
  wallMs: number;
}

/** A wait or step failed on a node: the run stops before the next node. Carries the node's log tail. */
export class UpgradeHaltedError extends VaultopsError {
  readonly node: string;
  constructor(node: string, message: string, details: readonly string[], hint: string) {
    super(message, { details, hint });
    this.node = node;
  }
}

/** What one node's upgrade needs; `rollingUpgrade` passes its options, an action builds it from its context. */
export type NodeUpgradeContext = Pick<RollingUpgradeOptions, 'cluster' | 'clusterName' | 'binary' | 'unsealKeys' | 'signal' | 'onNodeFailure' | 'progressFile'>;

export interface Member {
  spec: NodeSpec;
  node: ClusterNode;
  host: Host;
  service: ServiceManager;
  binaryPath: string;
}

const POLL_MS = 200;

export interface PreflightOptions extends Pick<RollingUpgradeOptions, 'cluster' | 'clusterName' | 'spec' | 'openHost' | 'binary' | 'onEvent' | 'progressFile' | 'unsealKeys' | 'signal' | 'waitTimeoutMs'> {
  /** Only these nodes need to reach their hosts (an action on one node); default all. */
  nodes?: readonly string[] | undefined;
}

export interface Preflight {
  target: string;
  fromVersions: Record<string, string>;
  skipped: Array<{ node: string; reason: string }>;
  /** Opened hosts; the caller closes them (`closeMembers`). */
  members: Member[];
}

/**
 * Everything that is checked before the first change: the file's sha256; every node reachable,
 * unsealed, a voter; autopilot healthy; failure tolerance >= 1; SSH with verified host keys; the
 * binary staged and verified on every host; the staged binary runs there and is newer than every
 * node (nodes already on it are skipped). Throws GateError/InputError; nothing running changed.
 */
export async function preflightUpgrade(o: PreflightOptions): Promise<Preflight> {
  const emit = o.onEvent ?? (() => undefined);
  const flavorUnit = o.spec.flavor === 'openbao' ? 'openbao' : 'vault';

  // 1. The file itself, before anything remote.
  await verifyLocalBinary(o.binary);
  emit({ kind: 'gate', message: `${o.binary.path}: sha256 matches.` });

  for (const n of o.spec.nodes) {
    if (!n.ssh) throw new InputError(`Node ${n.name} has no ssh settings: a rolling upgrade must reach every host.`, { hint: 'Add ssh: {host, user, key_file, host_key} to the node in the inventory.' });
    if (!n.service?.binary) throw new InputError(`Node ${n.name} has no service.binary: where the server binary lives on the host.`, { hint: 'Add service: {binary: /usr/local/bin/vault} to the node.' });
  }
  if (!o.cluster.hasToken) throw new InputError(`Cluster ${o.clusterName} has no token; the upgrade reads Raft and autopilot state.`, { hint: 'Set token: in the inventory, or export VAULT_TOKEN / BAO_TOKEN.' });

  // 1b. A run that stopped inside a node: bring that node back before judging the cluster.
  await resumeInProgress(o, flavorUnit, emit);

  // 2. Cluster gates: every node reachable, unsealed, a voter; autopilot healthy; tolerance >= 1.
  const before = await o.cluster.status();
  if (before.health !== 'healthy') {
    throw new GateError(`Cluster ${o.clusterName} is not healthy; no node was touched.`, { details: before.problems, hint: 'Fix the problems above (`vaultops status -i INV`), then run the upgrade again.' });
  }
  emit({ kind: 'gate', message: `all ${before.nodes.length} nodes reachable, unsealed, voters; autopilot healthy; failure tolerance ${before.autopilot?.failureTolerance}.` });

  const members: Member[] = [];
  try {
    // 3. Hosts: reachable over SSH with the right host key, before anything changes.
    for (const spec of o.spec.nodes.filter((n) => !o.nodes || o.nodes.includes(n.name))) {
      let host: Host;
      try {
        host = await o.openHost(spec);
      } catch (e) {
        // A host that cannot be reached over SSH is a failed gate: nothing was changed yet.
        if (e instanceof InputError || !(e instanceof Error)) throw e;
        const hint = e instanceof VaultopsError ? e.hint : undefined;
        throw new GateError(`Node ${spec.name} cannot be reached over SSH; no node was touched.`, { details: [e.message], hint: hint ?? 'Start sshd on the host (or fix the ssh settings in the inventory), then run the upgrade again.' });
      }
      members.push(memberFor(o.cluster, spec, host, flavorUnit));
    }
    emit({ kind: 'gate', message: `SSH to ${members.map((m) => m.spec.name).join(', ')}: host keys verified.` });
    for (const m of members) {
      const st = await m.service.status();
      if (!st.running) throw new GateError(`Node ${m.spec.name}: the ${m.service.kind} service manager says the server is not running, although its API answers.`, { hint: 'The inventory\'s service settings may not describe this host; fix them first.' });
    }

    // 4. Stage on every host, verified there, then ask the staged binary its version.
    // All hosts at once: each upload is its own SSH connection, and sha256sum runs on each host.
    await Promise.all(
      members.map(async (m) => {
        const r = await stageBinary(m.host, m.binaryPath, o.binary);
        emit({ kind: 'stage', node: m.spec.name, message: r.uploaded ? `staged ${m.binaryPath}${STAGED_SUFFIX} (sha256 verified on the host)` : 'already staged (sha256 verified on the host)' });
      }),
    );
    const target = await remoteBinaryVersion(members[0]!.host, `${members[0]!.binaryPath}${STAGED_SUFFIX}`);

    // 5. Version gate: never downgrade; skip nodes already there.
    const fromVersions: Record<string, string> = {};
    const skipped: Array<{ node: string; reason: string }> = [];
    for (const ns of before.nodes) {
      fromVersions[ns.name] = ns.version ?? 'unknown';
      const cmp = compareVersions(target, ns.version ?? '0.0.0');
      if (cmp < 0) throw new GateError(`The new binary is ${target}, older than ${ns.name}'s ${ns.version}: a downgrade is not an upgrade (Vault's storage is not backward compatible).`, { hint: 'Restore the pre-upgrade snapshot onto a cluster of the old version instead.' });
      if (cmp === 0) skipped.push({ node: ns.name, reason: `already on ${target}` });
    }
    for (const s of skipped) emit({ kind: 'skip', node: s.node, reason: s.reason });
    emit({ kind: 'gate', message: `target ${target} is newer than ${Object.entries(fromVersions).filter(([n]) => !skipped.some((s) => s.node === n)).map(([n, v]) => `${n} (${v})`).join(', ') || 'no node'}.` });
    return { target, fromVersions, skipped, members };
  } catch (e) {
    closeMembers(members);
    throw e;
  }
}

interface ProgressRecord {
  node: string;
  sha256: string;
  target: string;
  startedAt: string;
}

function writeProgress(file: string | undefined, rec: ProgressRecord): void {
  if (!file) return;
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(`${file}.tmp`, `${JSON.stringify(rec, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

function clearProgress(file: string | undefined): void {
  if (file) rmSync(file, { force: true });
}

function readProgress(file: string | undefined): ProgressRecord | undefined {
  if (!file || !existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as ProgressRecord;
  } catch {
    return undefined;
  }
}

/**
 * The node a previous run was upgrading when it stopped (halt, crash, Ctrl-C, a SIGKILLed server):
 * if it is down or sealed, finish its swap when the staged file is still there, start it, unseal
 * it and wait until it is a healthy voter again. Only that node is touched, and only when the
 * rest of the cluster has an active node.
 */
async function resumeInProgress(o: PreflightOptions, defaultUnit: string, emit: (e: UpgradeEvent) => void): Promise<void> {
  const rec = readProgress(o.progressFile);
  if (!rec) return;
  const spec = o.spec.nodes.find((n) => n.name === rec.node);
  if (!spec || rec.sha256 !== o.binary.sha256.toLowerCase()) {
    emit({ kind: 'gate', message: `an earlier run was upgrading ${rec.node} to ${rec.target} with another binary; its record is dropped` });
    clearProgress(o.progressFile);
    return;
  }
  const health = await o.cluster.client(spec.name).health().catch(() => undefined);
  if (health && (health.state === 'standby' || health.state === 'active' || health.state === 'perf-standby')) return;
  await o.cluster.findLeader(); // throws when the rest of the cluster has no active node: nothing is touched then
  emit({ kind: 'node', node: spec.name, message: `resuming: an earlier run stopped while upgrading this node to ${rec.target} (it is ${health?.state ?? 'down'}); bringing it back first` });
  const host = await o.openHost(spec);
  try {
    const m = memberFor(o.cluster, spec, host, defaultUnit);
    if ((await host.sha256(m.binaryPath)) !== rec.sha256) {
      if ((await m.service.status()).running) await m.service.stop(o.waitTimeoutMs ?? 120_000);
      await verifyStaged(host, m.binaryPath, rec.sha256);
      await swapBinary(host, m.binaryPath);
    }
    const ctx: NodeUpgradeContext = { cluster: o.cluster, clusterName: o.clusterName, binary: o.binary, unsealKeys: o.unsealKeys, signal: o.signal, progressFile: o.progressFile };
    if ((await m.service.status()).running && health?.state !== 'sealed') await m.service.stop(o.waitTimeoutMs ?? 120_000);
    if (!(await m.service.status()).running) {
      await startAndRejoin(ctx, m, rec.target, o.waitTimeoutMs ?? 120_000, emit);
    } else {
      // Running but sealed: unseal and wait, without a restart.
      const alreadyStarted: ServiceManager = { kind: m.service.kind, status: () => m.service.status(), stop: (t) => m.service.stop(t), logTail: (n) => m.service.logTail(n), start: async () => undefined };
      await startAndRejoin(ctx, { ...m, service: alreadyStarted }, rec.target, o.waitTimeoutMs ?? 120_000, emit);
    }
    emit({ kind: 'node', node: spec.name, message: `back as a healthy voter on ${rec.target}` });
  } finally {
    host.close();
  }
}

export function closeMembers(members: readonly Member[]): void {
  for (const m of members) m.host.close();
}

/** The end state: one leader, every node on the target, `sys/version-history` lists it. */
export async function verifyUpgrade(cluster: ClusterClient, clusterName: string, target: string): Promise<{ leader: string; versionHistory: string[] }> {
  const after = await cluster.status();
  const active = after.nodes.filter((n) => n.leader);
  const behind = after.nodes.filter((n) => n.version !== target);
  if (active.length !== 1 || behind.length || after.health !== 'healthy') {
    throw new VaultopsError(`After the upgrade cluster ${clusterName} is not as expected.`, {
      details: [`active nodes: ${active.map((n) => n.name).join(', ') || 'none'}`, ...behind.map((n) => `${n.name} reports ${n.version ?? 'no version'}`), ...after.problems],
    });
  }
  const history = await versionHistory(cluster);
  if (!history.includes(target)) throw new VaultopsError(`sys/version-history does not list ${target} (it has ${history.join(', ')}).`);
  return { leader: active[0]!.name, versionHistory: history };
}

export async function rollingUpgrade(o: RollingUpgradeOptions): Promise<RollingUpgradeResult> {
  const started = Date.now();
  const emit = o.onEvent ?? (() => undefined);
  const timeout = o.waitTimeoutMs ?? 120_000;
  const { target, fromVersions, skipped, members } = await preflightUpgrade(o);
  try {
    if (skipped.length === members.length) {
      return { target, fromVersions, upgraded: [], skipped, versionHistory: await versionHistory(o.cluster), timings: [], wallMs: Date.now() - started };
    }

    // 6. A verified snapshot before the first change.
    const snapshot = await o.snapshot();
    emit({ kind: 'snapshot', message: `pre-upgrade snapshot: ${snapshot}` });

    const leaderNow = await o.cluster.findLeader();
    const stabilizationMs = o.stabilizationMs ?? (await autopilotStabilization(leaderNow.client));
    const pending = members.filter((m) => !skipped.some((s) => s.node === m.spec.name));
    const order = [...pending.filter((m) => m.spec.name !== leaderNow.node.name), ...pending.filter((m) => m.spec.name === leaderNow.node.name)];
    emit({ kind: 'plan', message: `order: ${order.map((m) => (m.spec.name === leaderNow.node.name ? `${m.spec.name} (leader, last)` : m.spec.name)).join(' -> ')}; stabilization ${stabilizationMs} ms after each`, order: order.map((m) => m.spec.name) });

    // 7. One node at a time; the leader is whoever is active when its turn comes (asked, not assumed).
    const timings: NodeTiming[] = [];
    const upgraded: string[] = [];
    while (pending.length) {
      if (o.signal?.aborted) throw new InterruptedError(`Upgrade interrupted between nodes; ${upgraded.length ? `${upgraded.join(', ')} upgraded` : 'no node changed'}, ${pending.map((m) => m.spec.name).join(', ')} not yet.`, { hint: 'Run the same upgrade again to continue: nodes already on the target are skipped.' });
      const leader = await o.cluster.findLeader();
      const next = pending.find((m) => m.spec.name !== leader.node.name) ?? pending[0]!;
      const isLeader = next.spec.name === leader.node.name;
      await gateBeforeNode(o, next);
      clearProgress(o.progressFile);
      const t = await upgradeMember(o, next, isLeader, target, stabilizationMs, timeout, emit);
      timings.push(t);
      upgraded.push(next.spec.name);
      pending.splice(pending.indexOf(next), 1);
    }

    // 8. Verify: one leader, every node on the target, version history records it.
    const v = await verifyUpgrade(o.cluster, o.clusterName, target);
    clearProgress(o.progressFile);
    emit({ kind: 'verify', message: `one leader (${v.leader}), all nodes on ${target}, sys/version-history: ${v.versionHistory.join(', ')}.` });
    return { target, fromVersions, upgraded, skipped, snapshot, versionHistory: v.versionHistory, timings, wallMs: Date.now() - started };
  } finally {
    closeMembers(members);
  }
}


export function memberFor(cluster: ClusterClient, spec: NodeSpec, host: Host, defaultUnit: string): Member {
  const node = cluster.nodes.find((x) => x.name === spec.name);
  if (!node) throw new InputError(`Cluster ${cluster.name} has no node ${spec.name}.`);
  if (!spec.service?.binary) throw new InputError(`Node ${spec.name} has no service.binary: where the server binary lives on the host.`, { hint: 'Add service: {binary: /usr/local/bin/vault} to the node.' });
  return { spec, node, host, service: serviceManager(host, spec.service, defaultUnit), binaryPath: spec.service.binary };
}

/** Before a node goes down: the cluster is healthy and can lose one node. */
export async function gateBeforeNode(o: NodeUpgradeContext, m: Member): Promise<void> {
  const st = await o.cluster.status();
  if (st.health !== 'healthy' || (st.autopilot?.failureTolerance ?? 0) < 1) {
    throw new GateError(`Not taking ${m.spec.name} down: cluster ${o.clusterName} is not healthy with failure tolerance >= 1.`, {
      details: st.problems.length ? st.problems : [`failure tolerance ${st.autopilot?.failureTolerance ?? 'unknown'}`],
      hint: 'Nothing was changed on this node. Fix the cluster, then run the upgrade again (upgraded nodes are skipped).',
    });
  }
}

export async function upgradeMember(o: NodeUpgradeContext, m: Member, isLeader: boolean, target: string, stabilizationMs: number, timeout: number, emit: (e: UpgradeEvent) => void): Promise<NodeTiming> {
  const name = m.spec.name;
  await verifyStaged(m.host, m.binaryPath, o.binary.sha256);
  writeProgress(o.progressFile, { node: name, sha256: o.binary.sha256.toLowerCase(), target, startedAt: new Date().toISOString() });
  const t0 = Date.now();
  emit({ kind: 'node', node: name, message: `${isLeader ? 'leader' : 'standby'}: SIGTERM, waiting for the process to exit` });
  await m.service.stop(timeout);
  const stopMs = Date.now() - t0;
  let failoverMs: number | undefined;
  if (isLeader) {
    // A clean SIGTERM releases the HA lock; an upgraded standby takes over (no step-down, ever).
    const newLeader = await waitFor(timeout, o.signal, async () => {
      const probes = await o.cluster.probeAll();
      return probes.find((p) => p.node.name !== name && p.health?.state === 'active')?.node.name;
    });
    if (!newLeader) throw await halt(m, `No other node became active within ${timeout / 1000} s after ${name} (the leader) stopped.`, 'Start the old leader again by hand if the cluster has no active node; quorum needs two of three.');
    failoverMs = Date.now() - t0;
    emit({ kind: 'node', node: name, message: `stopped; ${newLeader} (already on ${target}) is the active node now` });
  } else {
    emit({ kind: 'node', node: name, message: `stopped in ${stopMs} ms` });
  }
  await swapBinary(m.host, m.binaryPath);
  emit({ kind: 'node', node: name, message: `binary swapped (previous kept as ${m.binaryPath}.vaultops-prev)` });
  try {
    const phases = await startAndRejoin(o, m, target, timeout, emit);
    emit({ kind: 'node', node: name, message: `healthy voter on ${target}, caught up; waiting the stabilization time (${stabilizationMs} ms)` });
    const s0 = Date.now();
    await sleep(stabilizationMs, o.signal);
    const stabilization = Date.now() - s0;
    // The cluster must still be healthy after the pause before the next node goes down.
    return { node: name, role: isLeader ? 'leader' : 'standby', stopMs, failoverMs, ...phases, stabilizationMs: stabilization, totalMs: Date.now() - t0 };
  } catch (e) {
    if (!(e instanceof UpgradeHaltedError) || o.onNodeFailure !== 'rollback') throw e;
    emit({ kind: 'node', node: name, message: `did not come back on ${target}: rolling back to the previous binary` });
    await m.service.stop(timeout).catch(() => undefined);
    await rollbackBinary(m.host, m.binaryPath);
    try {
      await startAndRejoin(o, m, undefined, timeout, emit);
    } catch (e2) {
      throw new UpgradeHaltedError(name, `${e.message} The rollback did not bring ${name} back either: ${(e2 as Error).message}`, [...e.details], e.hint ?? '');
    }
    throw new UpgradeHaltedError(name, `${e.message} ${name} was rolled back to its previous binary and is a healthy voter again.`, e.details, 'Find out why the new binary failed (log above); the rest of the cluster was not touched. Run the upgrade again when fixed.');
  }
}

/** Start, wait for the API, unseal (Shamir), wait until healthy voter on `version` and caught up. */
export async function startAndRejoin(o: NodeUpgradeContext, m: Member, version: string | undefined, timeout: number, emit: (e: UpgradeEvent) => void): Promise<{ startMs: number; unsealMs: number; catchUpMs: number }> {
  const name = m.spec.name;
  const client = o.cluster.client(name);
  const t0 = Date.now();
  await m.service.start();
  let died = false;
  const answered = await waitFor(timeout, o.signal, async () => {
    const h = await client.health().catch(() => undefined);
    if (h) return h;
    if (!(await m.service.status()).running) {
      died = true;
      return 'died' as const;
    }
    return undefined;
  });
  if (died || !answered || answered === 'died') throw await halt(m, `${name} ${died ? 'exited right after it was started' : `did not answer on its API within ${timeout / 1000} s`} on ${version ?? 'its previous binary'}.`, 'Read the log above. The node is down; the cluster still has quorum.');
  const startMs = Date.now() - t0;

  const t1 = Date.now();
  const unsealed = await waitFor(timeout, o.signal, async () => {
    const s = await client.sealStatus().catch(() => undefined);
    if (!s) return (await m.service.status()).running ? undefined : ('died' as const);
    if (!s.sealed) return 'unsealed' as const;
    if (s.type === 'shamir') {
      if (!o.unsealKeys?.length) return 'nokeys' as const;
      for (const key of o.unsealKeys.slice(s.progress, Math.max(s.t, 1))) {
        const r = await client.unseal(key).catch(() => undefined);
        if (r && !r.sealed) return 'unsealed' as const;
      }
    }
    return undefined; // auto-unseal: it unseals itself
  });
  if (unsealed === 'nokeys') throw await halt(m, `${name} is sealed (Shamir) and the inventory gives no unseal keys.`, 'Set unseal.keys in the inventory, then unseal the node and run again.');
  if (unsealed !== 'unsealed') throw await halt(m, `${name} ${unsealed === 'died' ? 'exited' : 'did not unseal'} after the restart.`, 'Read the log above; the cluster still has quorum.');
  const unsealMs = Date.now() - t1;
  emit({ kind: 'node', node: name, message: `started and unsealed (${startMs + unsealMs} ms); waiting until it is a healthy voter${version ? ` on ${version}` : ''} and caught up` });

  const t2 = Date.now();
  let last = 'not checked yet';
  const ready = await waitFor(timeout, o.signal, async () => {
    last = await readiness(o.cluster, m, version);
    if (last === 'ready') return true;
    if (/does not answer/.test(last) && !(await m.service.status()).running) return 'died' as const;
    return undefined;
  });
  if (ready === 'died') throw await halt(m, `${name} stopped while it was rejoining the cluster${version ? ` on ${version}` : ''}.`, 'The other nodes were not touched and keep quorum. Run the same upgrade again: it restarts this node first, then continues.');
  if (!ready) throw await halt(m, `${name} did not become a healthy, caught-up voter${version ? ` on ${version}` : ''} within ${timeout / 1000} s: ${last}.`, 'Read the log above. Nothing else was touched; run the upgrade again after fixing it.');
  return { startMs, unsealMs, catchUpMs: Date.now() - t2 };
}

/** 'ready' or why not. */
async function readiness(cluster: ClusterClient, m: Member, version: string | undefined): Promise<string> {
  const name = m.spec.name;
  const h = await cluster.client(name).health().catch(() => undefined);
  if (!h) return `${name} does not answer`;
  if (h.state !== 'standby' && h.state !== 'active' && h.state !== 'perf-standby') return `${name} is ${h.state}`;
  if (version && h.body.version !== version) return `${name} reports ${h.body.version}`;
  let leader: { node: ClusterNode; client: VaultClient };
  try {
    leader = await cluster.findLeader();
  } catch (e) {
    return (e as Error).message;
  }
  const [ap, leaderStatus, ownStatus] = await Promise.all([leader.client.autopilotState().catch((e: Error) => e), leader.client.leader().catch(() => undefined), cluster.client(name).leader().catch(() => undefined)]);
  if (ap instanceof Error) return `autopilot state: ${ap.message}`;
  const server = findServer(ap, m.node);
  if (!server) return `${name} is not in autopilot's view`;
  if (!server.healthy) return `autopilot says ${name} is not healthy`;
  if (server.status !== 'voter' && server.status !== 'leader') return `${name} is a ${server.status}`;
  // Autopilot learns a server's version from its heartbeats: the restarted process has reported in.
  if (version && server.version && server.version !== version) return `autopilot still sees ${name} on ${server.version}`;
  if (!ap.healthy) return 'autopilot reports the cluster unhealthy';
  if (ap.failure_tolerance < 1) return `failure tolerance is ${ap.failure_tolerance}`;
  const committed = leaderStatus?.raft_committed_index;
  const applied = ownStatus?.raft_applied_index;
  if (committed !== undefined && applied !== undefined && applied + 10 < committed) return `${name} has applied index ${applied}, the leader has committed ${committed}`;
  return 'ready';
}

export function findServer(ap: AutopilotState, node: ClusterNode): AutopilotServer | undefined {
  const servers = Object.values(ap.servers ?? {});
  return servers.find((s) => s.id === node.name || s.name === node.name) ?? servers.find((s) => sameHost(s.address, node.clusterAddr ?? node.apiAddr));
}

export async function halt(m: Member, message: string, hint: string): Promise<UpgradeHaltedError> {
  const tail = await m.service.logTail(20).catch(() => [] as string[]);
  return new UpgradeHaltedError(m.spec.name, `Upgrade halted at ${m.spec.name}: ${message}`, tail.length ? [`last lines of ${m.spec.name}'s log:`, ...tail.map((l) => `  ${l}`)] : [], hint);
}

export async function autopilotStabilization(client: VaultClient): Promise<number> {
  try {
    const res = await client.read<{ data?: { server_stabilization_time?: string } }>('sys/storage/raft/autopilot/configuration');
    return parseGoDuration(res.data?.server_stabilization_time) ?? 10_000;
  } catch {
    return 10_000; // Vault's default
  }
}

/** `sys/version-history` (a LIST): versions in the order they were first run. */
export async function versionHistory(cluster: ClusterClient): Promise<string[]> {
  const leader = await cluster.findLeader();
  const res = await leader.client.raw('GET', '/sys/version-history?list=true');
  if (res.status !== 200) return [];
  const body = JSON.parse(res.body.toString('utf8')) as { data?: { keys?: string[]; key_info?: Record<string, { timestamp_installed?: string }> } };
  const keys = body.data?.keys ?? [];
  const info = body.data?.key_info ?? {};
  return [...keys].sort((a, b) => (info[a]?.timestamp_installed ?? '').localeCompare(info[b]?.timestamp_installed ?? ''));
}

/** Polls `check` until it returns a value, or the deadline passes (undefined). */
export async function waitFor<T>(timeoutMs: number, signal: AbortSignal | undefined, check: () => Promise<T | undefined>): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) return undefined;
    await sleep(POLL_MS, signal);
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  // Ctrl-C does not cut a node's wait short: the node must reach a safe state first; the check
  // between nodes stops the run.
  void signal;
  return new Promise((r) => setTimeout(r, ms));
}
