import { parseGoDuration } from '../core/duration.js';
import { sleep } from '../core/sleep.js';
import { sameHost, type ClusterClient, type ClusterNode } from '../vault/cluster.js';
import type { VaultClient } from '../vault/client.js';
import type { AutopilotServer, AutopilotState } from '../vault/api-types.js';
import { halt, type Member, type NodeUpgradeContext, type UpgradeEvent } from './members.js';

/**
 * The waits of an upgrade, shared by the rolling and the immutable upgrade: polling with a deadline,
 * a restarted or new node back as a healthy, caught-up voter, a new active node after the old one
 * stopped, and the stabilization time to pause after each node.
 */

/**
 * How often a wait looks again. A check that turned true right after a look is seen this much later,
 * once per wait, several waits per node: 100 ms keeps that under half a second for a whole node
 * while a poll of the readiness check (six small API calls) stays light for the servers.
 */
const POLL_MS = 100;

/** How long a gate looks again when autopilot alone disagrees, before it refuses. */
export const AUTOPILOT_SETTLE_MS = 15_000;

const AUTOPILOT_ONLY = /^autopilot reports the cluster unhealthy|^failure tolerance is /;

/**
 * A gate's check, looked at again for up to `settleMs` when autopilot's verdict is its only problem.
 * Autopilot's health moves: a heartbeat late on a busy leader flips it for a moment while every node
 * answers, is unsealed and votes. Any other problem (a node unreachable or sealed) is returned at once.
 */
export async function settledGate<T extends { problems: readonly string[] }>(
  check: () => Promise<T>,
  settleMs = AUTOPILOT_SETTLE_MS,
): Promise<T> {
  const until = Date.now() + settleMs;
  let r = await check();
  while (r.problems.length > 0 && r.problems.every((p) => AUTOPILOT_ONLY.test(p)) && Date.now() <= until) {
    await sleep(1000);
    r = await check();
  }
  return r;
}

/** Polls `check` until it returns a value, or the deadline passes (undefined). */
export async function waitFor<T>(
  timeoutMs: number,
  signal: AbortSignal | undefined,
  check: () => Promise<T | undefined>,
): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) return undefined;
    // Ctrl-C does not cut a poll short: a node must reach a safe state first; the caller checks `signal` between nodes.
    void signal;
    await sleep(POLL_MS);
  }
}

/** Start, wait for the API, unseal (Shamir), wait until healthy voter on `version` and caught up. */
export async function startAndRejoin(
  o: Pick<NodeUpgradeContext, 'cluster' | 'unsealKeys' | 'signal'>,
  m: Pick<Member, 'spec' | 'node' | 'service'>,
  version: string | undefined,
  timeout: number,
  emit: (e: UpgradeEvent) => void,
): Promise<{ startMs: number; unsealMs: number; catchUpMs: number; stableForMs: number }> {
  const name = m.spec.name;
  const client = o.cluster.client(name);
  const t0 = Date.now();
  try {
    await m.service.start();
  } catch (e) {
    // A unit that fails to start (Type=notify: the server exited before it was ready, e.g. on a bad
    // config line) makes `systemctl start` fail: a halt like any other node that does not come back,
    // with the journal's last lines, so --rollback-on-failure can put the previous binary back.
    throw await halt(
      m,
      `${name} did not start on ${version ?? 'its previous binary'}: ${(e as Error).message.split('\n')[0]}`,
      'Read the log above. The node is down; the cluster still has quorum.',
    );
  }
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
  if (died || !answered || answered === 'died')
    throw await halt(
      m,
      `${name} ${died ? 'exited right after it was started' : `did not answer on its API within ${timeout / 1000} s`} on ${version ?? 'its previous binary'}.`,
      'Read the log above. The node is down; the cluster still has quorum.',
    );
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
  if (unsealed === 'nokeys')
    throw await halt(
      m,
      `${name} is sealed (Shamir) and the inventory gives no unseal keys.`,
      'Set unseal.keys in the inventory, then unseal the node and run again.',
    );
  if (unsealed !== 'unsealed')
    throw await halt(
      m,
      `${name} ${unsealed === 'died' ? 'exited' : 'did not unseal'} after the restart.`,
      'Read the log above; the cluster still has quorum.',
    );
  const unsealMs = Date.now() - t1;
  emit({
    kind: 'node',
    node: name,
    message: `started and unsealed (${startMs + unsealMs} ms); waiting until it is a healthy voter${version ? ` on ${version}` : ''} and caught up`,
  });

  const t2 = Date.now();
  let last = 'not checked yet';
  // When this run first saw the node caught up by its own account (on the version, its applied
  // index at the leader's commit index), and when autopilot first reported it a healthy voter on
  // the version. Seen on this machine's clock, so never earlier than it really was; a look that
  // does not see it starts over.
  let caughtUpAt: number | undefined;
  let healthyAt: number | undefined;
  const ready = await waitFor(timeout, o.signal, async () => {
    const seen: { caughtUp?: number; healthy?: number } = {};
    last = await readiness(o.cluster, m, version, seen);
    caughtUpAt = seen.caughtUp === undefined ? undefined : (caughtUpAt ?? seen.caughtUp);
    healthyAt = seen.healthy === undefined ? undefined : (healthyAt ?? seen.healthy);
    if (last === 'ready') return true;
    if (/does not answer/.test(last) && !(await m.service.status()).running) return 'died' as const;
    return undefined;
  });
  if (ready === 'died')
    throw await halt(
      m,
      `${name} stopped while it was rejoining the cluster${version ? ` on ${version}` : ''}.`,
      'The other nodes were not touched and keep quorum. Run the same upgrade again: it restarts this node first, then continues.',
    );
  if (!ready)
    throw await halt(
      m,
      `${name} did not become a healthy, caught-up voter${version ? ` on ${version}` : ''} within ${timeout / 1000} s: ${last}.`,
      'Read the log above. Nothing else was touched; run the upgrade again after fixing it.',
    );
  const now = Date.now();
  return { startMs, unsealMs, catchUpMs: now - t2, stableForMs: now - stableSince(caughtUpAt, healthyAt, now) };
}

/**
 * How often autopilot refreshes its view of the servers (raft-autopilot's update interval, 2 s in
 * Vault and OpenBao). A node that caught up is reported healthy by autopilot up to this much later.
 */
export const AUTOPILOT_REFRESH_MS = 2_000;

/**
 * Since when the node counts as stable, for the stabilization time: from when it was seen caught up
 * by its own account, but never more than one autopilot refresh before autopilot itself first
 * reported it healthy. So the refresh's lag does not add to the pause, while a node that autopilot
 * kept calling unhealthy for longer (late heartbeats) gets the whole stabilization time after
 * autopilot's verdict, as before. Without either look: now (the whole pause).
 */
export function stableSince(caughtUpAt: number | undefined, healthyAt: number | undefined, now: number): number {
  if (healthyAt === undefined) return now;
  return Math.min(healthyAt, Math.max(caughtUpAt ?? healthyAt, healthyAt - AUTOPILOT_REFRESH_MS));
}

/**
 * 'ready' or why not. Notes in `seen` when the node is caught up by its own account (`caughtUp`)
 * and when autopilot reports it a healthy voter on the version (`healthy`).
 */
async function readiness(
  cluster: ClusterClient,
  m: Pick<Member, 'spec' | 'node'>,
  version: string | undefined,
  seen: { caughtUp?: number; healthy?: number },
): Promise<string> {
  const name = m.spec.name;
  const h = await cluster
    .client(name)
    .health()
    .catch(() => undefined);
  if (!h) return `${name} does not answer`;
  if (h.state !== 'standby' && h.state !== 'active' && h.state !== 'perf-standby') return `${name} is ${h.state}`;
  if (version && h.body.version !== version) return `${name} reports ${h.body.version}`;
  let leader: { node: ClusterNode; client: VaultClient };
  try {
    leader = await cluster.findLeader();
  } catch (e) {
    return (e as Error).message;
  }
  const [ap, leaderStatus, ownStatus] = await Promise.all([
    leader.client.autopilotState().catch((e: Error) => e),
    leader.client.leader().catch(() => undefined),
    cluster
      .client(name)
      .leader()
      .catch(() => undefined),
  ]);
  const committed = leaderStatus?.raft_committed_index;
  const applied = ownStatus?.raft_applied_index;
  const behind = committed !== undefined && applied !== undefined && applied + 10 < committed;
  if (committed !== undefined && applied !== undefined && !behind) seen.caughtUp = Date.now();
  if (ap instanceof Error) return `autopilot state: ${ap.message}`;
  const server = findServer(ap, m.node);
  if (!server) return `${name} is not in autopilot's view`;
  if (!server.healthy) return `autopilot says ${name} is not healthy`;
  if (server.status !== 'voter' && server.status !== 'leader') return `${name} is a ${server.status}`;
  // Autopilot learns a server's version from its heartbeats: the restarted process has reported in.
  if (version && server.version && server.version !== version)
    return `autopilot still sees ${name} on ${server.version}`;
  seen.healthy = Date.now();
  if (!ap.healthy) return 'autopilot reports the cluster unhealthy';
  if (ap.failure_tolerance < 1) return `failure tolerance is ${ap.failure_tolerance}`;
  if (behind) return `${name} has applied index ${applied}, the leader has committed ${committed}`;
  return 'ready';
}

export function findServer(ap: AutopilotState, node: ClusterNode): AutopilotServer | undefined {
  const servers = Object.values(ap.servers ?? {});
  return (
    servers.find((s) => s.id === node.name || s.name === node.name) ??
    servers.find((s) => sameHost(s.address, node.clusterAddr ?? node.apiAddr))
  );
}

/**
 * After the active node `stopped` was stopped: the name of the node that became active instead, or
 * undefined when none did within `timeoutMs`.
 */
export async function waitForNewLeader(
  cluster: ClusterClient,
  stopped: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<string | undefined> {
  return waitFor(timeoutMs, signal, async () => {
    const probes = await cluster.probeAll();
    return probes.find((p) => p.node.name !== stopped && p.health?.state === 'active')?.node.name;
  });
}

export async function autopilotStabilization(client: VaultClient): Promise<number> {
  try {
    const res = await client.read<{ data?: { server_stabilization_time?: string } }>(
      'sys/storage/raft/autopilot/configuration',
    );
    return parseGoDuration(res.data?.server_stabilization_time) ?? 10_000;
  } catch {
    return 10_000; // Vault's default
  }
}
