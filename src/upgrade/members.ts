import { InputError, VaultopsError } from '../core/errors.js';
import type { NodeSpec } from '../inventory/schema.js';
import type { Host } from '../ssh/host.js';
import { serviceManager, type ServiceManager } from '../ssh/services.js';
import type { ClusterClient, ClusterNode } from '../vault/cluster.js';
import {
  checkStagingRoom,
  remoteBinaryVersion,
  stageBinary,
  STAGED_SUFFIX,
  type BinarySource,
} from './binary-install.js';
import type { PackageManager, PackageSource } from './package-install.js';

/**
 * The nodes an upgrade works on, what one node's upgrade needs, what it reports and how it halts:
 * shared by the rolling (rolling.ts) and the immutable (immutable.ts) upgrade.
 */

export type UpgradeEvent =
  | { kind: 'gate'; message: string }
  | { kind: 'stage'; node: string; message: string }
  | { kind: 'snapshot'; message: string }
  | { kind: 'plan'; message: string; order: string[] }
  | { kind: 'skip'; node: string; reason: string }
  | { kind: 'node'; node: string; message: string }
  | { kind: 'verify'; message: string };

/** A wait or step failed on a node: the run stops before the next node. Carries the node's log tail. */
export class UpgradeHaltedError extends VaultopsError {
  readonly node: string;
  constructor(node: string, message: string, details: readonly string[], hint: string) {
    super(message, { details, hint });
    this.node = node;
  }
}

/** What one node's upgrade needs; `rollingUpgrade` passes its options, an action builds it from its context. */
export interface NodeUpgradeContext {
  /** The cluster's client, with a token that can read raft/autopilot and take a snapshot. */
  cluster: ClusterClient;
  clusterName: string;
  /** The new server: a binary to copy, or (service.install: package) a package version to install. */
  binary: BinarySource | PackageSource;
  /** Unseal shares (Shamir), already resolved. Not needed with auto-unseal. */
  unsealKeys?: string[] | undefined;
  /** What to do when a node does not come back: stop there (default), or put its old binary back first. */
  onNodeFailure?: 'halt' | 'rollback' | undefined;
  signal?: AbortSignal | undefined;
  /**
   * Where the node being upgraded is recorded (no secrets): written before a node goes down, cleared
   * once the next node passed its gate or the run verified. A run that finds it resumes: when that
   * node is down or sealed (the run halted or was killed mid-node), it is brought back first.
   */
  progressFile?: string | undefined;
}

export interface Member {
  spec: NodeSpec;
  node: ClusterNode;
  host: Host;
  service: ServiceManager;
  binaryPath: string;
  /** service.install: package: what the stage step found on the host. */
  pkg?: { manager: PackageManager; name: string; exact: string; previous: string } | undefined;
}

/** What a progress record remembers of the new server: its sha256, or the package version. */
export function sourceId(b: BinarySource | PackageSource): string {
  return 'kind' in b ? `package:${b.version}` : b.sha256.toLowerCase();
}

export function memberFor(cluster: ClusterClient, spec: NodeSpec, host: Host, defaultUnit: string): Member {
  const node = cluster.nodes.find((x) => x.name === spec.name);
  if (!node) throw new InputError(`Cluster ${cluster.name} has no node ${spec.name}.`);
  if (!spec.service?.binary)
    throw new InputError(`Node ${spec.name} has no service.binary: where the server binary lives on the host.`, {
      hint: 'Add service: {binary: /usr/local/bin/vault} to the node.',
    });
  return {
    spec,
    node,
    host,
    service: serviceManager(host, spec.service, defaultUnit),
    binaryPath: spec.service.binary,
  };
}

export function closeMembers(members: readonly Member[]): void {
  for (const m of members) m.host.close();
}

/** The error that stops the run at `m`, with the last lines of its log. */
export async function halt(
  m: Pick<Member, 'spec' | 'service'>,
  message: string,
  hint: string,
): Promise<UpgradeHaltedError> {
  const tail = await m.service.logTail(20).catch(() => [] as string[]);
  return new UpgradeHaltedError(
    m.spec.name,
    `Upgrade halted at ${m.spec.name}: ${message}`,
    tail.length ? [`last lines of ${m.spec.name}'s log:`, ...tail.map((l) => `  ${l}`)] : [],
    hint,
  );
}

/**
 * Stages the binary on every member's host at once (each upload is its own SSH connection, and
 * the sha256 is checked on each host), and asks the staged binary its version on the first one, in
 * the command that checked it there: the target version. Nothing running changes. A failure is
 * reported once every host's staging has ended (a file that did not match is removed by then),
 * the first in member order.
 */
export async function stageOnAll(
  members: readonly Member[],
  binary: BinarySource,
  emit: (e: UpgradeEvent) => void,
): Promise<string> {
  const first = members[0]!;
  const results = await Promise.allSettled(members.map((m) => stageOn(m, binary, emit, m === first)));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  return (results[0] as PromiseFulfilledResult<string | undefined>).value!;
}

/**
 * Stages the binary on one member, verified on its host; with `askVersion`, also the version the
 * staged binary reports (the target). `found`: the version of a copy already staged there, looked
 * up earlier (`stagedCopyVersion`); when that found none, the binary is uploaded without asking the
 * host again. Nothing running changes.
 */
export async function stageOn(
  m: Member,
  binary: BinarySource,
  emit: (e: UpgradeEvent) => void,
  askVersion = false,
  found?: Promise<string | undefined>,
): Promise<string | undefined> {
  const foundVersion = await found;
  const r =
    foundVersion === undefined
      ? await stageBinary(m.host, m.binaryPath, binary, askVersion, found !== undefined)
      : { uploaded: false, version: foundVersion };
  emit({
    kind: 'stage',
    node: m.spec.name,
    message: r.uploaded
      ? `staged ${m.binaryPath}${STAGED_SUFFIX}${binary.url ? `, downloaded by the host from ${binary.path}` : ''} (sha256 verified on the host)`
      : 'already staged (sha256 verified on the host)',
  });
  if (!askVersion) return undefined;
  return r.version ?? remoteBinaryVersion(m.host, `${m.binaryPath}${STAGED_SUFFIX}`, binary.sha256);
}

/**
 * Before anything is staged or changed: every host can take the binary (sudo, a writable directory,
 * room for it). All hosts at once; the first failure in member order is thrown, naming its host.
 */
export async function checkStagingRoomOnAll(
  members: readonly Member[],
  bytes: number | undefined,
  emit: (e: UpgradeEvent) => void,
): Promise<void> {
  const results = await Promise.allSettled(members.map((m) => checkStagingRoom(m.host, m.binaryPath, bytes)));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  const what = bytes === undefined ? 'the download (1.25x the live binary)' : `${Math.round(bytes / 1024 / 1024)} MiB`;
  emit({
    kind: 'gate',
    message: `room to stage ${what} on ${members.map((m) => m.spec.name).join(', ')} (directory writable, free space, sudo).`,
  });
}
