import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { GateError, InputError, InterruptedError, VaultopsError } from '../core/errors.js';
import type { ClusterSpec, NodeSpec } from '../inventory/schema.js';
import type { Host } from '../ssh/host.js';
import type { ServiceManager } from '../ssh/services.js';
import {
  rollbackBinary,
  stagedCopyVersion,
  swapBinary,
  verifyLocalBinary,
  verifyStaged,
  type BinarySource,
} from './binary-install.js';
import {
  clusterInstall,
  installedVersion,
  installPackage,
  packageManager,
  packageName,
  prefetchPackage,
  resolvePackageVersion,
} from './package-install.js';
import {
  closeMembers,
  halt,
  memberFor,
  sourceId,
  checkStagingRoomOnAll,
  stageOn,
  stageOnAll,
  UpgradeHaltedError,
  type Member,
  type NodeUpgradeContext,
  type UpgradeEvent,
} from './members.js';
import { autopilotStabilization, settledGate, startAndRejoin, waitForNewLeader } from './node-waits.js';
import { verifyUpgrade, versionHistory } from './end-state.js';
import { compareVersions } from '../core/version.js';
import { sleep } from '../core/sleep.js';
import { writeFileAtomicSync } from '../core/atomic-write.js';

/**
 * A rolling in-place upgrade in HashiCorp's order (
 * developer.hashicorp.com/vault/docs/upgrading/vault-ha-upgrade): standbys one at a time, the
 * active node last, stopped cleanly (`systemctl stop`: the unit's KillSignal, SIGINT in the vendors'
 * units) so that an already-upgraded standby takes over; never a step-down, never a failover from a
 * newer node to an older one.
 *
 * Re-running after a halt is the resume: nodes already on the target version are skipped.
 */
export interface RollingUpgradeOptions extends NodeUpgradeContext {
  spec: ClusterSpec;
  /** Opens the host of a node (SSH); host key and reachability are checked here, before any change. */
  openHost(node: NodeSpec): Promise<Host>;
  /**
   * Takes the pre-upgrade snapshot; returns where it is. It runs while the binary is staged (both only
   * read the cluster), and is cut short through `signal` when the staging or a gate fails.
   */
  snapshot(signal?: AbortSignal): Promise<string>;
  /** How long each wait may take (default 120 s). */
  waitTimeoutMs?: number | undefined;
  /** Override autopilot's server_stabilization_time (ms) for the pause after each node. */
  stabilizationMs?: number | undefined;
  onEvent?: ((e: UpgradeEvent) => void) | undefined;
}

export interface NodeTiming {
  node: string;
  role: 'standby' | 'leader';
  /** Stop (the service manager's clean stop) until the process was gone. */
  stopMs: number;
  /** Leader only: stop until another node was active. */
  failoverMs?: number | undefined;
  /** Start until the API answered. */
  startMs: number;
  unsealMs: number;
  /** Unsealed until healthy voter, caught up, autopilot healthy. */
  catchUpMs: number;
  /**
   * The part of the stabilization time that had already run when the node was ready: it runs from
   * when the node was seen caught up on the new version, at most one autopilot refresh (2 s) before
   * autopilot first reported it a healthy voter there (`stableSince`).
   */
  stableBeforeReadyMs: number;
  /** The pause after the node was caught up: the rest of the stabilization time. */
  stabilizationMs: number;
  /** The stabilization time itself (autopilot's server_stabilization_time, or the override). */
  stabilizationTimeMs: number;
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
  /** Where the time outside the nodes went (ms); staging and the snapshot may overlap. */
  phases: RunPhases;
  wallMs: number;
}

export interface RunPhases {
  /** Start until the cluster and SSH gates had passed (staging not included). */
  gatesMs: number;
  /** The binary staged and verified on every host, its version asked. */
  stagingMs: number;
  /** The pre-upgrade snapshot, taken and verified. */
  snapshotMs: number;
  /** Start until the first node went down. */
  untilFirstNodeMs: number;
  /** Between nodes: the leader asked, the gate before the node, the staged file checked again. */
  betweenNodesMs: number;
  /** Of which: waiting for a node's own staging (in the background) to finish. */
  stagingWaitMs: number;
  /** The end-state check after the last node. */
  verifyMs: number;
}

export interface PreflightOptions extends Pick<
  RollingUpgradeOptions,
  | 'cluster'
  | 'clusterName'
  | 'spec'
  | 'openHost'
  | 'binary'
  | 'onEvent'
  | 'progressFile'
  | 'unsealKeys'
  | 'signal'
  | 'waitTimeoutMs'
> {
  /** Only these nodes need to reach their hosts (an action on one node); default all. */
  nodes?: readonly string[] | undefined;
  /** Started once the cluster and SSH gates passed, and run while the binary is staged. */
  snapshot?: ((signal: AbortSignal) => Promise<string>) | undefined;
  /**
   * Stage only on the first node to go down before returning; the others are staged in the
   * background, one at a time in the order they will go down (`Preflight.staging`). Every host's
   * room for the binary is still checked before returning. Default: every host before returning.
   */
  stageInBackground?: boolean | undefined;
}

/** The binary being staged on the later nodes while earlier ones are upgraded. */
export interface BackgroundStaging {
  /** The staging order (node names), the first node included. */
  order: string[];
  /** Settles when this member's binary is staged and verified on its host; rejects with why not. */
  of(m: Member): Promise<void>;
  /** When this member's staging settled (epoch ms); undefined while it runs. */
  settledAt(m: Member): number | undefined;
  /** Stops staging on the members not yet started (the run stopped). */
  cancel(): void;
}

/** The snapshot taken while the binary was staged; the caller awaits `done` before the first change. */
export interface SnapshotInFlight {
  done: Promise<string>;
  isSettled(): boolean;
  /** Cuts it short (nothing to upgrade, or a gate failed); `done` rejects then, unless it had finished. */
  abort(): void;
  /** When it finished, counted from its start (ms); undefined while it runs. */
  tookMs(): number | undefined;
}

export interface Preflight {
  target: string;
  fromVersions: Record<string, string>;
  skipped: Array<{ node: string; reason: string }>;
  /** Opened hosts; the caller closes them (`closeMembers`). */
  members: Member[];
  /** How long the gates and the staging took (ms). */
  timing: { gatesMs: number; stagingMs: number };
  /** With `snapshot`: it started after the gates and may still be running. */
  snapshot?: SnapshotInFlight | undefined;
  /** With `stageInBackground`: the staging of the nodes after the first. */
  staging?: BackgroundStaging | undefined;
}

/**
 * Everything that is checked before the first change: the file's sha256; every node reachable,
 * unsealed, a voter; autopilot healthy; failure tolerance >= 1; SSH with verified host keys; the
 * binary staged and verified on every host; the staged binary runs there and is newer than every
 * node (nodes already on it are skipped). Throws GateError/InputError; nothing running changed.
 */
export async function preflightUpgrade(o: PreflightOptions): Promise<Preflight> {
  const started = Date.now();
  const emit = o.onEvent ?? (() => undefined);
  const flavorUnit = o.spec.flavor === 'openbao' ? 'openbao' : 'vault';

  // 1. The file itself, before anything remote (a package is checked by the host's package manager).
  const source = o.binary;
  const install = clusterInstall(o.spec.nodes);
  if ('kind' in source) {
    if (install !== 'package')
      throw new InputError('A package version was given, but the nodes are not installed from packages.', {
        hint: 'Set service.install: package on the nodes that got the server from an apt/yum repository, or upgrade with --binary/--version.',
      });
  } else {
    if (install === 'package')
      throw new InputError(
        `The nodes of ${o.clusterName} are installed from packages (service.install: package): a copied binary would be overwritten by the next package update.`,
        { hint: 'Give --version X: each node then runs its package manager for that version.' },
      );
  }
  // Hashing a 200-360 MB file takes a while; it runs beside the read-only gates below and is awaited
  // before anything on a host changes (the resume of an earlier run, the staging).
  const localFile = 'kind' in source ? undefined : verifyLocalBinary(source);
  localFile?.catch(() => undefined);
  const localFileChecked = async () => {
    if (!localFile || 'kind' in source) return;
    await localFile;
    if (!source.url) emit({ kind: 'gate', message: `${source.path}: sha256 matches.` });
  };
  /** Staging that ran beside the local hash: when both fail, the local file's error is the one reported. */
  const besideLocalHash = async <T>(staging: Promise<T>): Promise<T> => {
    const [staged, local] = await Promise.allSettled([staging, localFileChecked()]);
    if (local.status === 'rejected') throw local.reason;
    if (staged.status === 'rejected') throw staged.reason;
    return staged.value;
  };

  for (const n of o.spec.nodes) {
    if (!n.ssh)
      throw new InputError(`Node ${n.name} has no ssh settings: a rolling upgrade must reach every host.`, {
        hint: 'Add ssh: {host, user, key_file, host_key} to the node in the inventory.',
      });
    if (!n.service?.binary)
      throw new InputError(`Node ${n.name} has no service.binary: where the server binary lives on the host.`, {
        hint: 'Add service: {binary: /usr/local/bin/vault} to the node.',
      });
  }
  if (!o.cluster.hasToken)
    throw new InputError(`Cluster ${o.clusterName} has no token; the upgrade reads Raft and autopilot state.`, {
      hint: 'Set token: in the inventory, or export VAULT_TOKEN / BAO_TOKEN.',
    });

  // 1b. A run that stopped inside a node: bring that node back before judging the cluster.
  if (readProgress(o.progressFile)) await localFileChecked();
  await resumeInProgress(o, flavorUnit, emit);

  // 3 starts beside 2: opening the SSH connections (host keys checked) only reads the hosts.
  const specs = o.spec.nodes.filter((n) => !o.nodes || o.nodes.includes(n.name));
  const opening = Promise.allSettled(specs.map((spec) => o.openHost(spec)));
  // Not awaited when a cluster gate fails: that failure is reported at once, the hosts are closed as
  // their connections come up.
  const closeOpened = () => void opening.then((all) => all.forEach((r) => r.status === 'fulfilled' && r.value.close()));

  // 2. Cluster gates: every node reachable, unsealed, a voter; autopilot healthy; tolerance >= 1.
  const before = await settledGate(() => o.cluster.status()).catch((e: unknown) => {
    closeOpened();
    throw e;
  });
  if (before.health !== 'healthy') {
    closeOpened();
    throw new GateError(`Cluster ${o.clusterName} is not healthy; no node was touched.`, {
      details: before.problems,
      hint: 'Fix the problems above (`vaultops status -i INV`), then run the upgrade again.',
    });
  }
  emit({
    kind: 'gate',
    message: `all ${before.nodes.length} nodes reachable, unsealed, voters; autopilot healthy; failure tolerance ${before.autopilot?.failureTolerance}.`,
  });

  const members: Member[] = [];
  let snapshot: SnapshotInFlight | undefined;
  let staging: BackgroundStaging | undefined;
  try {
    // 3. Hosts: reachable over SSH with the right host key, before anything changes. All at once;
    // a failure is reported for the first node in inventory order.
    const opened = await opening;
    opened.forEach((r, i) => {
      if (r.status === 'fulfilled') members.push(memberFor(o.cluster, specs[i]!, r.value, flavorUnit));
    });
    const unreachable = opened.findIndex((r) => r.status === 'rejected');
    if (unreachable >= 0) {
      const e = (opened[unreachable] as PromiseRejectedResult).reason as unknown;
      // A host that cannot be reached over SSH is a failed gate: nothing was changed yet.
      if (e instanceof InputError || !(e instanceof Error)) throw e;
      const hint = e instanceof VaultopsError ? e.hint : undefined;
      throw new GateError(`Node ${specs[unreachable]!.name} cannot be reached over SSH; no node was touched.`, {
        details: [e.message],
        hint: hint ?? 'Start sshd on the host (or fix the ssh settings in the inventory), then run the upgrade again.',
      });
    }
    emit({ kind: 'gate', message: `SSH to ${members.map((m) => m.spec.name).join(', ')}: host keys verified.` });
    // With the binary staged ahead (`upgrade --stage-only`), the first node's copy is hashed and asked
    // its version while the service and room checks run: both only read the host.
    const order = stagingOrder(members, before.nodes);
    const firstFound =
      o.stageInBackground && !('kind' in source)
        ? stagedCopyVersion(order[0]!.host, order[0]!.binaryPath, source.sha256)
        : undefined;
    // The service check (which also learns how each stop is described) and the room check only
    // read the hosts: they run at once, and their failures are reported in this order.
    const [services, room] = await Promise.allSettled([
      Promise.all(members.map((m) => m.service.status())),
      'kind' in source
        ? undefined
        : checkStagingRoomOnAll(members, source.url ? undefined : localSize(source.path), emit),
    ]);
    if (services.status === 'rejected') throw services.reason;
    const running = services.value;
    const notRunning = members.find((_, i) => !running[i]!.running);
    if (notRunning)
      throw new GateError(
        `Node ${notRunning.spec.name}: the ${notRunning.service.kind} service manager says the server is not running, although its API answers.`,
        { hint: "The inventory's service settings may not describe this host; fix them first." },
      );
    // Room for the binary on every host, before anything is staged anywhere: a later node's staging
    // then fails only for what happens on its host during the run.
    if (room.status === 'rejected') throw room.reason;

    const gatesMs = Date.now() - started;
    // The snapshot only reads the cluster, as the staging only writes next to the live binaries: the
    // two run at once, and the first node waits for both.
    if (o.snapshot) snapshot = startSnapshot(o.snapshot, o.signal);
    // 4. Stage on every host, verified there, then ask the staged binary its version. The staging
    // does not wait for the local hash (1-2 s for 200-360 MB): each host checks what arrived against
    // the expected sha256 and removes a file that differs, so a wrong local file is never staged;
    // its error is the one reported.
    // Packages: the exact version is looked up in each host's repositories and downloaded there.
    let target: string;
    if ('kind' in source) {
      await Promise.all(
        members.map(async (m) => {
          const manager = await packageManager(m.host);
          const name = packageName(m.spec, flavorUnit);
          const previous = await installedVersion(m.host, manager, name);
          if (!previous)
            throw new GateError(
              `${m.spec.name}: package ${name} is not installed, but the inventory says service.install: package; no node was touched.`,
              { hint: 'Set service.package to the package that holds the server, or service.install: binary.' },
            );
          const exact = await resolvePackageVersion(m.host, manager, name, source.version);
          await prefetchPackage(m.host, manager, name, exact);
          m.pkg = { manager, name, exact, previous };
          emit({
            kind: 'stage',
            node: m.spec.name,
            message: `package ${name} ${exact} downloaded into the package cache (installed now: ${previous})`,
          });
        }),
      );
      target = source.version;
    } else if (o.stageInBackground) {
      target = (await besideLocalHash(stageOn(order[0]!, source, emit, true, firstFound)))!;
      const later = order.slice(1).filter((m) => before.nodes.find((n) => n.name === m.spec.name)?.version !== target);
      staging = stageOneAtATime(order[0]!, later, source, emit);
    } else target = await besideLocalHash(stageOnAll(members, source, emit));
    const stagingMs = Date.now() - started - gatesMs;

    // 5. Version gate: never downgrade; skip nodes already there.
    const fromVersions: Record<string, string> = {};
    const skipped: Array<{ node: string; reason: string }> = [];
    for (const ns of before.nodes) {
      fromVersions[ns.name] = ns.version ?? 'unknown';
      const cmp = compareVersions(target, ns.version ?? '0.0.0');
      if (cmp < 0)
        throw new GateError(
          `The new binary is ${target}, older than ${ns.name}'s ${ns.version}: a downgrade is not an upgrade (Vault's storage is not backward compatible).`,
          { hint: 'Restore the pre-upgrade snapshot onto a cluster of the old version instead.' },
        );
      if (cmp === 0) skipped.push({ node: ns.name, reason: `already on ${target}` });
    }
    for (const s of skipped) emit({ kind: 'skip', node: s.node, reason: s.reason });
    emit({
      kind: 'gate',
      message: `target ${target} is newer than ${
        Object.entries(fromVersions)
          .filter(([n]) => !skipped.some((s) => s.node === n))
          .map(([n, v]) => `${n} (${v})`)
          .join(', ') || 'no node'
      }.`,
    });
    return { target, fromVersions, skipped, members, timing: { gatesMs, stagingMs }, snapshot, staging };
  } catch (e) {
    staging?.cancel();
    closeMembers(members);
    if (snapshot) {
      snapshot.abort();
      await snapshot.done.catch(() => undefined);
    }
    throw e;
  }
}

/** Size of the local binary, for the room check on the hosts. */
function localSize(path: string): number {
  try {
    return statSync(path).size;
  } catch (e) {
    throw new InputError(`Cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'}).`);
  }
}

/**
 * The order the nodes will go down in, as known now: standbys in inventory order, the active node
 * last. On a resumed run (the nodes on different versions) a node below the newest version comes
 * first: the first node is staged before the target version is known, and a node already upgraded
 * would be staged for nothing.
 */
function stagingOrder(
  members: readonly Member[],
  nodes: readonly { name: string; version?: string | undefined; leader: boolean }[],
): Member[] {
  const info = (m: Member) => nodes.find((n) => n.name === m.spec.name);
  const newest = nodes.map((n) => n.version ?? '0.0.0').reduce((a, b) => (compareVersions(a, b) >= 0 ? a : b), '0.0.0');
  const order = [...members.filter((m) => !info(m)?.leader), ...members.filter((m) => info(m)?.leader)];
  const behind = order.find((m) => compareVersions(info(m)?.version ?? '0.0.0', newest) < 0);
  return behind ? [behind, ...order.filter((m) => m !== behind)] : order;
}

/**
 * Stages on `later` in the background, one host at a time in their order (the next node to go down
 * gets the whole link first); `first` is already staged.
 */
function stageOneAtATime(
  first: Member,
  later: readonly Member[],
  source: BinarySource,
  emit: (e: UpgradeEvent) => void,
): BackgroundStaging {
  let cancelled = false;
  const settled = new Map<Member, number>([[first, Date.now()]]);
  const done = new Map<Member, Promise<void>>([[first, Promise.resolve()]]);
  let previous: Promise<unknown> = Promise.resolve();
  for (const m of later) {
    const p = previous
      .catch(() => undefined)
      .then(async () => {
        if (cancelled) throw new VaultopsError(`${m.spec.name}: staging not started (the run stopped).`);
        // No upload progress: a progress line drawn during the nodes' phases would only get in the way.
        await stageOn(m, { ...source, onUpload: undefined }, emit);
      })
      .finally(() => settled.set(m, Date.now()));
    p.catch(() => undefined);
    done.set(m, p);
    previous = p;
  }
  return {
    order: [first, ...later].map((m) => m.spec.name),
    of: (m) => done.get(m) ?? Promise.resolve(),
    settledAt: (m) => (done.has(m) ? settled.get(m) : 0),
    cancel: () => {
      cancelled = true;
    },
  };
}

function startSnapshot(
  take: (signal: AbortSignal) => Promise<string>,
  outer: AbortSignal | undefined,
): SnapshotInFlight {
  const ac = new AbortController();
  const started = Date.now();
  let took: number | undefined;
  const done = take(outer ? AbortSignal.any([outer, ac.signal]) : ac.signal).finally(
    () => (took = Date.now() - started),
  );
  done.catch(() => undefined);
  return { done, isSettled: () => took !== undefined, abort: () => ac.abort(), tookMs: () => took };
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
  writeFileAtomicSync(file, `${JSON.stringify(rec, null, 2)}\n`, 0o600);
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
async function resumeInProgress(
  o: PreflightOptions,
  defaultUnit: string,
  emit: (e: UpgradeEvent) => void,
): Promise<void> {
  const rec = readProgress(o.progressFile);
  if (!rec) return;
  const spec = o.spec.nodes.find((n) => n.name === rec.node);
  if (!spec || rec.sha256 !== sourceId(o.binary)) {
    emit({
      kind: 'gate',
      message: `an earlier run was upgrading ${rec.node} to ${rec.target} with another binary; its record is dropped`,
    });
    clearProgress(o.progressFile);
    return;
  }
  const health = await o.cluster
    .client(spec.name)
    .health()
    .catch(() => undefined);
  if (health && (health.state === 'standby' || health.state === 'active' || health.state === 'perf-standby')) return;
  await o.cluster.findLeader(); // throws when the rest of the cluster has no active node: nothing is touched then
  emit({
    kind: 'node',
    node: spec.name,
    message: `resuming: an earlier run stopped while upgrading this node to ${rec.target} (it is ${health?.state ?? 'down'}); bringing it back first`,
  });
  const host = await o.openHost(spec);
  try {
    const m = memberFor(o.cluster, spec, host, defaultUnit);
    const source = o.binary;
    if ('kind' in source) {
      const manager = await packageManager(host);
      const name = packageName(spec, defaultUnit);
      const exact = await resolvePackageVersion(host, manager, name, source.version);
      if ((await installedVersion(host, manager, name)) !== exact) {
        if ((await m.service.status()).running) await m.service.stop(o.waitTimeoutMs ?? 120_000);
        await installPackage(host, manager, name, exact);
      }
    } else if ((await host.sha256(m.binaryPath)) !== rec.sha256) {
      if ((await m.service.status()).running) await m.service.stop(o.waitTimeoutMs ?? 120_000);
      await verifyStaged(host, m.binaryPath, rec.sha256);
      await swapBinary(host, m.binaryPath);
    }
    const ctx: NodeUpgradeContext = {
      cluster: o.cluster,
      clusterName: o.clusterName,
      binary: o.binary,
      unsealKeys: o.unsealKeys,
      signal: o.signal,
      progressFile: o.progressFile,
    };
    if ((await m.service.status()).running && health?.state !== 'sealed')
      await m.service.stop(o.waitTimeoutMs ?? 120_000);
    if (!(await m.service.status()).running) {
      await startAndRejoin(ctx, m, rec.target, o.waitTimeoutMs ?? 120_000, emit);
    } else {
      // Running but sealed: unseal and wait, without a restart.
      const alreadyStarted: ServiceManager = {
        kind: m.service.kind,
        status: () => m.service.status(),
        stop: (t) => m.service.stop(t),
        logTail: (n) => m.service.logTail(n),
        describeStop: () => m.service.describeStop(),
        start: async () => undefined,
      };
      await startAndRejoin(ctx, { ...m, service: alreadyStarted }, rec.target, o.waitTimeoutMs ?? 120_000, emit);
    }
    emit({ kind: 'node', node: spec.name, message: `back as a healthy voter on ${rec.target}` });
  } finally {
    host.close();
  }
}

export async function rollingUpgrade(o: RollingUpgradeOptions): Promise<RollingUpgradeResult> {
  const started = Date.now();
  const emit = o.onEvent ?? (() => undefined);
  const timeout = o.waitTimeoutMs ?? 120_000;
  const pre = await preflightUpgrade({ ...o, snapshot: (signal) => o.snapshot(signal), stageInBackground: true });
  const { target, fromVersions, skipped, members, timing, staging } = pre;
  const phases: RunPhases = {
    ...timing,
    snapshotMs: 0,
    untilFirstNodeMs: 0,
    betweenNodesMs: 0,
    stagingWaitMs: 0,
    verifyMs: 0,
  };
  try {
    if (skipped.length === members.length) {
      // Nothing to upgrade: the snapshot started beside the staging is not needed.
      pre.snapshot?.abort();
      await pre.snapshot?.done.catch(() => undefined);
      return {
        target,
        fromVersions,
        upgraded: [],
        skipped,
        versionHistory: await versionHistory(o.cluster),
        timings: [],
        phases,
        wallMs: Date.now() - started,
      };
    }

    // 6. A verified snapshot before the first change (started beside the staging). While it is still
    // running, the staged files are checked again: the wait would otherwise come between their check
    // and the first swap.
    const pending = members.filter((m) => !skipped.some((s) => s.node === m.spec.name));
    // Members whose staged file was checked since the last long wait; the others are checked right
    // before their node goes down, after the gate (which names an unreachable host first).
    const inFlight = pre.snapshot!;
    // Staged before returning: the first node to go down (the others are staged in the background).
    const stagedNow = staging ? pending.filter((m) => staging.settledAt(m) !== undefined) : pending;
    const checking = inFlight.isSettled() ? new Set(stagedNow) : checkStaged(o, stagedNow);
    const [snap, checked] = await Promise.all([
      inFlight.done.then(
        (v) => ({ ok: true as const, v }),
        (e: unknown) => ({ ok: false as const, e }),
      ),
      checking,
    ]);
    if (!snap.ok) throw snap.e;
    let stagedChecked = checked;
    const snapshot = snap.v;
    phases.snapshotMs = inFlight.tookMs() ?? 0;
    emit({ kind: 'snapshot', message: `pre-upgrade snapshot: ${snapshot}` });

    const leaderNow = await o.cluster.findLeader();
    const stabilizationMs = o.stabilizationMs ?? (await autopilotStabilization(leaderNow.client));
    const order = [
      ...pending.filter((m) => m.spec.name !== leaderNow.node.name),
      ...pending.filter((m) => m.spec.name === leaderNow.node.name),
    ];
    const stagingOrder = staging?.order.filter((n) => pending.some((m) => m.spec.name === n));
    emit({
      kind: 'plan',
      message: `order: ${order.map((m) => (m.spec.name === leaderNow.node.name ? `${m.spec.name} (leader, last)` : m.spec.name)).join(' -> ')}; stabilization ${stabilizationMs} ms after each${
        stagingOrder && stagingOrder.length > 1
          ? `; binary staged on ${stagingOrder[0]}, then on ${stagingOrder.slice(1).join(', ')} in the background, one host at a time (each node waits for its own)`
          : ''
      }`,
      order: order.map((m) => m.spec.name),
    });

    // 7. One node at a time; the leader is whoever is active when its turn comes (asked, not assumed).
    const timings: NodeTiming[] = [];
    const upgraded: string[] = [];
    let downAt = 0;
    while (pending.length) {
      if (o.signal?.aborted)
        throw new InterruptedError(
          `Upgrade interrupted between nodes; ${upgraded.length ? `${upgraded.join(', ')} upgraded` : 'no node changed'}, ${pending.map((m) => m.spec.name).join(', ')} not yet.`,
          { hint: 'Run the same upgrade again to continue: nodes already on the target are skipped.' },
        );
      const b0 = Date.now();
      const leader = await o.cluster.findLeader();
      const next = pending.find((m) => m.spec.name !== leader.node.name) ?? pending[0]!;
      const isLeader = next.spec.name === leader.node.name;
      if (staging) {
        // Its own staging, verified on its host, before the node goes down; a failure stops the run
        // here, with the earlier nodes upgraded and this one untouched.
        const w0 = Date.now();
        const failed = await stagingOrUnhealthy(o, staging, next);
        phases.stagingWaitMs += Date.now() - w0;
        if (failed) throw await stagingStopped(o, next, failed, upgraded, pending, target);
        // Staged (and so verified on its host) after the previous node went down: since the last long wait.
        if (downAt > 0 && (staging.settledAt(next) ?? 0) >= downAt) stagedChecked.add(next);
      }
      await gateBeforeNode(o, next);
      clearProgress(o.progressFile);
      const rest = pending.filter((m) => m !== next);
      const t = await upgradeMember(o, next, isLeader, target, stabilizationMs, timeout, emit, {
        // Checked since the last long wait: by the staging, while the snapshot ran, or during the
        // previous node's stabilization pause.
        stagedChecked: stagedChecked.has(next),
        onGoingDown: () => {
          downAt = Date.now();
          phases.betweenNodesMs += Date.now() - b0;
          if (!upgraded.length) phases.untilFirstNodeMs = Date.now() - started;
        },
        // The likely next node's staged file is checked again during this node's stabilization pause
        // (one host: checking every remaining file could outlast a short pause). If leadership moves
        // and another node comes next, its file is checked before it goes down.
        // Staged in the background after this node went down: checked just now, by the staging.
        duringStabilization: async () => {
          const likelyNext = rest.find((m) => m.spec.name !== leader.node.name) ?? rest[0];
          const settled = likelyNext && staging?.settledAt(likelyNext);
          if (likelyNext && settled !== undefined && settled !== 0 && settled >= downAt) {
            // A failed staging is reported before that node, not here.
            stagedChecked = await staging!.of(likelyNext).then(
              () => new Set([likelyNext]),
              () => new Set(),
            );
          } else if (likelyNext && staging && settled === undefined) {
            // Still staging: checked by the staging itself when it ends (see the loop).
            stagedChecked = new Set();
          } else stagedChecked = likelyNext ? await checkStaged(o, [likelyNext]) : new Set();
        },
      });
      timings.push(t);
      upgraded.push(next.spec.name);
      pending.splice(pending.indexOf(next), 1);
    }

    // 8. Verify: one leader, every node on the target, version history records it.
    const v0 = Date.now();
    const v = await verifyUpgrade(o.cluster, o.clusterName, target);
    phases.verifyMs = Date.now() - v0;
    clearProgress(o.progressFile);
    emit({
      kind: 'verify',
      message: `one leader (${v.leader}), all nodes on ${target}, sys/version-history: ${v.versionHistory.join(', ')}.`,
    });
    return {
      target,
      fromVersions,
      upgraded,
      skipped,
      snapshot,
      versionHistory: v.versionHistory,
      timings,
      phases,
      wallMs: Date.now() - started,
    };
  } finally {
    // Closing the hosts also cuts short an upload still running: its stdin ends early, the host
    // sees a sum that differs and removes the temporary file (never renamed to the staged name).
    staging?.cancel();
    closeMembers(members);
  }
}

/**
 * Waits for `m`'s background staging; meanwhile the cluster is asked every second, as the gate
 * before the node would ask it: a host whose link is cut does not leave the run waiting for an
 * upload that SSH keepalives would only end half a minute later. Resolves with the staging's error.
 * A staging that failed is followed by the gate: when the cluster is not healthy (the host rebooted
 * during its upload and its node came back sealed, say), the gate's error says what to do first.
 */
async function stagingOrUnhealthy(
  o: Pick<NodeUpgradeContext, 'cluster' | 'clusterName'>,
  staging: BackgroundStaging,
  m: Member,
): Promise<Error | undefined> {
  const done = staging.of(m).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  const gateIfFailed = async (failed: Error | undefined) => {
    if (failed) await gateBeforeNode(o, m);
    return failed;
  };
  if (staging.settledAt(m) !== undefined) return gateIfFailed(await done);
  let waiting = true;
  const watch = (async () => {
    while (waiting) {
      await sleep(1000);
      if (waiting) await gateBeforeNode(o, m);
    }
    return undefined;
  })();
  try {
    return await gateIfFailed(await Promise.race([done, watch]));
  } finally {
    waiting = false;
  }
}

/**
 * The error that stops the run before `m` because its binary could not be staged: the nodes before
 * it are upgraded, `m` and the ones after it are untouched; the cluster's health is asked, not assumed.
 */
async function stagingStopped(
  o: Pick<NodeUpgradeContext, 'cluster' | 'clusterName'>,
  m: Member,
  cause: Error,
  upgraded: readonly string[],
  pending: readonly Member[],
  target: string,
): Promise<GateError> {
  const st = await o.cluster.status().catch(() => undefined);
  const versions = [...new Set(st?.nodes.map((n) => n.version ?? 'unknown') ?? [])];
  const health =
    st?.health === 'healthy'
      ? `Cluster ${o.clusterName} is healthy${versions.length > 1 ? ` on mixed versions (${versions.join(', ')}), which a rolling upgrade allows for as long as it takes to finish` : ''}.`
      : `Cluster ${o.clusterName} is ${st ? 'not healthy' : 'not answering'}: look at it first (\`vaultops status -i INVENTORY\`).`;
  const rest = pending.map((x) => x.spec.name);
  return new GateError(
    `Upgrade stopped before ${m.spec.name}: the new binary could not be staged there. ${upgraded.length ? `${upgraded.join(', ')} ${upgraded.length === 1 ? 'is' : 'are'} on ${target}` : 'No node was upgraded'}; ${rest.join(', ')} ${rest.length === 1 ? 'was' : 'were'} not touched. ${health}`,
    {
      details: [cause.message, ...(cause instanceof VaultopsError ? cause.details : [])],
      hint: `Fix ${m.spec.name} (${cause instanceof VaultopsError && cause.hint ? cause.hint : 'see above'}), then run the same upgrade again: nodes already on ${target} are skipped.`,
    },
  );
}

/**
 * Checks the staged files of these members at once, ahead of their turn (and asks how their stop is
 * described): the ones that passed. A failure is not reported here: that member is checked again
 * right before its node goes down, after the gate, which says why (an unreachable host, say).
 */
async function checkStaged(o: Pick<NodeUpgradeContext, 'binary'>, members: readonly Member[]): Promise<Set<Member>> {
  const ok = new Set<Member>();
  await Promise.all(
    members.map(async (m) => {
      try {
        await Promise.all([verifyAllStaged(o, [m]), m.service.describeStop()]);
        ok.add(m);
      } catch {
        // checked again before its node goes down
      }
    }),
  );
  return ok;
}

/** Checks the staged files (or, for packages, that they were staged) on these members at once. */
async function verifyAllStaged(o: Pick<NodeUpgradeContext, 'binary'>, members: readonly Member[]): Promise<void> {
  const source = o.binary;
  await Promise.all(
    members.map(async (m) => {
      if ('kind' in source) {
        if (!m.pkg) throw new VaultopsError(`${m.spec.name}: the package was not staged (internal: preflight first).`);
      } else await verifyStaged(m.host, m.binaryPath, source.sha256);
    }),
  );
}

/**
 * Before a node goes down: the cluster is healthy and can lose one node. Autopilot's verdict alone is
 * looked at again for a while, as at the first gate: a heartbeat late while a host hashes or writes
 * the staged binary flips it for a moment.
 */
export async function gateBeforeNode(
  o: Pick<NodeUpgradeContext, 'cluster' | 'clusterName'>,
  m: Pick<Member, 'spec'>,
): Promise<void> {
  const st = await settledGate(() => o.cluster.status());
  if (st.health !== 'healthy' || (st.autopilot?.failureTolerance ?? 0) < 1) {
    // A node the run did not restart is sealed (its host rebooted, or its server restarted on its
    // own): the run does not unseal it. Something outside the runbook acted on that host; an
    // operator looks at it first, unseals it, and runs the upgrade again.
    const sealed = st.nodes.filter((n) => n.state === 'sealed').map((n) => n.name);
    throw new GateError(
      `Not taking ${m.spec.name} down: cluster ${o.clusterName} is not healthy with failure tolerance >= 1.`,
      {
        details: st.problems.length
          ? st.problems
          : [`failure tolerance ${st.autopilot?.failureTolerance ?? 'unknown'}`],
        hint: sealed.length
          ? `Nothing was changed on ${m.spec.name}. ${sealed.join(', ')} ${sealed.length === 1 ? 'is' : 'are'} sealed (a rebooted host comes back sealed): find out why, unseal with the inventory's key shares (\`vaultops run unseal -i INVENTORY\`), then run the upgrade again (upgraded nodes are skipped).`
          : 'Nothing was changed on this node. Fix the cluster, then run the upgrade again (upgraded nodes are skipped).',
      },
    );
  }
}

export async function upgradeMember(
  o: NodeUpgradeContext,
  m: Member,
  isLeader: boolean,
  target: string,
  stabilizationMs: number,
  timeout: number,
  emit: (e: UpgradeEvent) => void,
  options: {
    /**
     * The staged file was checked again since the last long wait (the caller did it during the
     * previous node's stabilization pause); otherwise it is checked here, before the node goes down.
     */
    stagedChecked?: boolean | undefined;
    /** Told the moment the node is about to go down (every check before it passed). */
    onGoingDown?: (() => void) | undefined;
    /** Runs during the stabilization pause (checks for the next node); its failure stops the run after the pause. */
    duringStabilization?: (() => Promise<void>) | undefined;
  } = {},
): Promise<NodeTiming> {
  const name = m.spec.name;
  const source = o.binary;
  if (!options.stagedChecked) await verifyAllStaged(o, [m]);
  writeProgress(o.progressFile, {
    node: name,
    sha256: sourceId(source),
    target,
    startedAt: new Date().toISOString(),
  });
  const stopping = await m.service.describeStop();
  options.onGoingDown?.();
  const t0 = Date.now();
  emit({
    kind: 'node',
    node: name,
    message: `${isLeader ? 'leader' : 'standby'}: ${stopping}, waiting for the process to exit`,
  });
  await m.service.stop(timeout);
  const stopMs = Date.now() - t0;
  let failoverMs: number | undefined;
  if (isLeader) {
    // A clean stop (SIGINT or SIGTERM) releases the HA lock; an upgraded standby takes over (no step-down, ever).
    const newLeader = await waitForNewLeader(o.cluster, name, timeout, o.signal);
    if (!newLeader)
      throw await halt(
        m,
        `No other node became active within ${timeout / 1000} s after ${name} (the leader) stopped.`,
        'Start the old leader again by hand if the cluster has no active node; quorum needs two of three.',
      );
    failoverMs = Date.now() - t0;
    emit({ kind: 'node', node: name, message: `stopped; ${newLeader} (already on ${target}) is the active node now` });
  } else {
    emit({ kind: 'node', node: name, message: `stopped in ${stopMs} ms` });
  }
  if (m.pkg) {
    await installPackage(m.host, m.pkg.manager, m.pkg.name, m.pkg.exact);
    emit({
      kind: 'node',
      node: name,
      message: `package ${m.pkg.name} ${m.pkg.exact} installed (was ${m.pkg.previous})`,
    });
  } else {
    await swapBinary(m.host, m.binaryPath);
    emit({ kind: 'node', node: name, message: `binary swapped (previous kept as ${m.binaryPath}.vaultops-prev)` });
  }
  try {
    const { stableForMs, ...phases } = await startAndRejoin(o, m, target, timeout, emit);
    // The stabilization time runs from when the node was seen caught up on the new version (at
    // most one autopilot refresh before autopilot agreed), so the catch-up already spent part of it.
    const stableBeforeReadyMs = Math.min(stableForMs, stabilizationMs);
    const pauseMs = stabilizationMs - stableBeforeReadyMs;
    emit({
      kind: 'node',
      node: name,
      message: `healthy voter on ${target}, caught up; waiting the rest of the stabilization time (${pauseMs} of ${stabilizationMs} ms)`,
    });
    const s0 = Date.now();
    // Ctrl-C does not cut a node's wait short: the node must reach a safe state first; the check
    // between nodes stops the run.
    const [, during] = await Promise.allSettled([sleep(pauseMs), options.duringStabilization?.()]);
    const stabilization = Date.now() - s0;
    if (during.status === 'rejected') throw during.reason;
    // The cluster must still be healthy after the pause before the next node goes down.
    return {
      node: name,
      role: isLeader ? 'leader' : 'standby',
      stopMs,
      failoverMs,
      ...phases,
      stableBeforeReadyMs,
      stabilizationMs: stabilization,
      stabilizationTimeMs: stabilizationMs,
      totalMs: Date.now() - t0,
    };
  } catch (e) {
    if (!(e instanceof UpgradeHaltedError) || o.onNodeFailure !== 'rollback') throw e;
    emit({
      kind: 'node',
      node: name,
      message: `did not come back on ${target}: rolling back to the previous ${m.pkg ? `package (${m.pkg.previous})` : 'binary'}`,
    });
    await m.service.stop(timeout).catch(() => undefined);
    if (m.pkg) await installPackage(m.host, m.pkg.manager, m.pkg.name, m.pkg.previous, true);
    else await rollbackBinary(m.host, m.binaryPath);
    try {
      await startAndRejoin(o, m, undefined, timeout, emit);
    } catch (e2) {
      throw new UpgradeHaltedError(
        name,
        `${e.message} The rollback did not bring ${name} back either: ${(e2 as Error).message}`,
        [...e.details],
        e.hint ?? '',
      );
    }
    throw new UpgradeHaltedError(
      name,
      `${e.message} ${name} was rolled back to its previous binary and is a healthy voter again.`,
      e.details,
      'Find out why the new binary failed (log above); the rest of the cluster was not touched. Run the upgrade again when fixed.',
    );
  }
}
