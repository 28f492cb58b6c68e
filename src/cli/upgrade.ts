import { createWriteStream, mkdirSync, renameSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InputError, UnreachableError } from '../core/errors.js';
import { commonPlatform, fetchVerifiedRelease, hostPlatform } from '../upgrade/release.js';
import { clusterInstall, type PackageSource } from '../upgrade/package-install.js';
import { stateDir } from '../core/state-dir.js';
import { resolveSecretList } from '../secrets/refs.js';
import { openNodeHost } from '../ssh/open-host.js';
import { LocalDirStore } from '../backup/stores/local-dir-store.js';
import { backupOf } from '../backup/take-backup.js';
import { closeMembers, type UpgradeEvent } from '../upgrade/members.js';
import { fetchedBinary, STAGED_SUFFIX, type BinarySource } from '../upgrade/binary-install.js';
import { preflightUpgrade, rollingUpgrade } from '../upgrade/rolling.js';
import { immutableUpgrade } from '../upgrade/immutable.js';
import { recordUpgrade } from '../upgrade/inventory-update.js';
import { upgradeStateFiles } from '../upgrade/state-files.js';
import type { NodeSpec } from '../inventory/schema.js';
import { makePrompter } from '../ui/prompter.js';
import { phaseTaskList, type Phase, type PhaseList } from '../ui/phase-list.js';
import { err, out, progressPrinter } from '../ui/output.js';
import { createProgress, type Progress } from '../ui/progress.js';
import { connectCluster, type ConnectedCluster } from './cluster-from-inventory.js';
import { throughDoor } from './through-door.js';

export interface UpgradeCliOptions {
  inventory: string;
  cluster?: string;
  binary?: string;
  sha256?: string;
  /** Instead of binary/sha256: the vendor's release, verified (see src/upgrade/release.ts). */
  version?: string;
  releaseMirror?: string;
  releaseKey?: string;
  strategy?: string;
  nonInteractive?: boolean;
  rollbackOnFailure?: boolean;
  trustOnFirstUse?: boolean;
  snapshotDir?: string;
  waitTimeout?: string;
  json?: boolean;
  writeInventory?: string;
  breakLock?: boolean;
  /** The cluster name, for unattended runs (the typed confirmation). */
  confirm?: string;
  /** Only the gates and the staging on every host; no node is stopped (see stageOnly). */
  stageOnly?: boolean;
  /** With --binary URL: every host downloads it itself, checked there against --sha256. */
  fetchOnHosts?: boolean;
}

/**
 * `vaultops upgrade`: a rolling or immutable upgrade as one command, for people and cron alike.
 * It goes through the same door as `vaultops run`: the plan is shown first (order, gates, the
 * snapshot), the cluster lock is taken, the cluster name is typed (or given with --confirm NAME
 * when unattended), then the one interrupt handler lets Ctrl-C finish the node in hand.
 */
export async function upgradeCommand(o: UpgradeCliOptions): Promise<void> {
  const strategy = o.strategy ?? 'rolling';
  if (strategy !== 'rolling' && strategy !== 'immutable')
    throw new InputError(`--strategy ${strategy} is not known.`, {
      hint: 'Use --strategy rolling (in place: standbys first, leader last) or immutable (new nodes join, then the old ones leave).',
    });
  if (o.stageOnly && strategy !== 'rolling')
    throw new InputError('--stage-only goes with --strategy rolling.', {
      hint: 'An immutable upgrade stages on the new nodes as they join; run it without --stage-only.',
    });
  if (o.writeInventory && strategy !== 'immutable')
    throw new InputError('--write-inventory goes with --strategy immutable.', {
      hint: 'A rolling upgrade keeps the nodes; only their version: changes, in place.',
    });
  const printer = progressPrinter({ quiet: o.json === true });
  // On a terminal the phases are a live task list; the staging bytes then stay off the screen.
  const taskList = !o.json && process.stdout.isTTY === true && !process.env['CI'];
  // The binary goes to every host at once: one line for all of them, cleared before each message.
  const staging = stagingProgress(o.json === true || taskList);
  const progress = (m: string) => {
    staging.clear();
    printer(m);
  };
  const prompter = makePrompter({ nonInteractive: o.nonInteractive, confirm: o.confirm });
  const source = binarySource(o);
  if (source.kind === 'binary' && !source.url && /^https?:\/\//.test(source.binary))
    source.binary = await downloadBinary(source.binary, join(stateDir(), 'downloads'), progress, o.json === true);
  const conn = await connectCluster(o.inventory, o.cluster);
  try {
    const bin: NewServer =
      source.kind === 'binary'
        ? source
        : packageInstalled(conn, strategy)
          ? { binary: '', sha256: '', pkg: { kind: 'package', version: source.version } }
          : await releaseBinary(conn, strategy, source, o, progress, o.json === true || taskList);
    const unsealKeys = conn.spec.unseal?.keys ? await resolveSecretList(conn.spec.unseal.keys) : undefined;
    const files = upgradeStateFiles(stateDir(), conn.name);
    const snapshotDir = o.snapshotDir ?? files.dir;
    const waitTimeoutMs = o.waitTimeout ? Number(o.waitTimeout) * 1000 : undefined;
    if (o.stageOnly) return await stageOnly(conn, bin, o, prompter, progress, staging);
    const plan = await upgradePlan(conn, strategy, bin, snapshotDir);
    if (!o.json) for (const line of plan.lines) err.line(line);
    const operation = `upgrade --strategy ${strategy}`;
    let list: PhaseList | undefined;
    const confirm = { prompter, message: `This upgrades cluster ${conn.name} as planned above.` };
    const openHost = (n: NodeSpec) => openNodeHost(n, { trustOnFirstUse: o.trustOnFirstUse });
    const snapshot = async (signal: AbortSignal) => {
      const b = await backupOf(
        { cluster: conn.client, clusterName: conn.name, spec: conn.spec },
        new LocalDirStore(snapshotDir),
        { log: (m) => (list ? list.log('snapshot', m) : progress(m)), signal },
      );
      return join(b.location, b.name);
    };
    const onInterrupt = 'finishing the node in progress, then stopping before the next one';
    // On a terminal the phases are a live task list, as for `vaultops run`; elsewhere plain lines.
    const onEvent = (e: UpgradeEvent) => {
      if (!list) return progress(describe(e));
      if (e.kind === 'skip') list.skip(phaseOf(e), e.reason);
      else list.log(phaseOf(e), e.message);
    };
    const withList = async <T>(work: () => Promise<T>): Promise<T> => {
      if (!taskList) return work().finally(() => staging.done());
      list = await phaseTaskList(`upgrade ${conn.name}`, conn.name, plan.phases);
      try {
        const r = await work();
        await list.finish();
        return r;
      } catch (e) {
        await list.finish(e);
        throw e;
      } finally {
        list = undefined;
        staging.done();
      }
    };
    if (strategy === 'immutable') {
      const r = await throughDoor(conn, { operation, breakLock: o.breakLock, confirm, onInterrupt }, (door) =>
        withList(() =>
          immutableUpgrade({
            signal: door.signal,
            stateFile: files.immutable,
            cluster: conn.client,
            clusterName: conn.name,
            spec: conn.spec,
            binary: {
              path: bin.binary,
              sha256: bin.sha256,
              url: bin.url,
              onUpload: staging.onUpload(basename(bin.binary), conn.spec.new_nodes?.length ?? 0),
            },
            unsealKeys,
            waitTimeoutMs,
            openHost,
            snapshot: () => snapshot(door.signal),
            onEvent,
          }),
        ),
      );
      const written = await recordUpgrade({
        inventoryFile: conn.inventoryFile,
        clusterName: conn.name,
        spec: conn.spec,
        target: r.target,
        replacedBy: r.nodes,
        writeTo: o.writeInventory,
      });
      if (o.json) {
        out.json({ ...r, inventory: written });
        return;
      }
      out.line(
        `Replaced ${conn.name}'s nodes with ${r.nodes.join(', ')} on ${r.target} in ${(r.wallMs / 1000).toFixed(1)} s${r.removed.length ? `; removed ${r.removed.join(', ')}` : ''}; leader ${r.leader}.`,
      );
      if (r.snapshot) out.line(`Pre-upgrade snapshot: ${r.snapshot}`);
      out.line(`Inventory written: ${written.join(', ')} (lists only the new nodes).`);
      return;
    }
    const result = await throughDoor(conn, { operation, breakLock: o.breakLock, confirm, onInterrupt }, (door) =>
      withList(() =>
        rollingUpgrade({
          signal: door.signal,
          progressFile: files.rolling,
          cluster: conn.client,
          clusterName: conn.name,
          spec: conn.spec,
          // The first node's upload is shown; the later ones run in the background during the nodes.
          binary: serverSource(bin, staging, 1),
          unsealKeys,
          onNodeFailure: o.rollbackOnFailure ? 'rollback' : 'halt',
          waitTimeoutMs,
          openHost,
          snapshot: (signal) => snapshot(signal ?? door.signal),
          onEvent,
        }),
      ),
    );
    // A lab's lab.json and inventory say the version the cluster runs now (a production inventory is left as it is).
    const written = conn.spec.lab
      ? await recordUpgrade({
          inventoryFile: conn.inventoryFile,
          clusterName: conn.name,
          spec: conn.spec,
          target: result.target,
        })
      : [];
    if (o.json) {
      out.json({ ...result, inventory: written });
      return;
    }
    if (!result.upgraded.length) out.line(`Nothing to do: every node of ${conn.name} is already on ${result.target}.`);
    else
      out.line(
        `Upgraded ${conn.name} to ${result.target} in ${(result.wallMs / 1000).toFixed(1)} s: ${result.upgraded.join(', ')}${result.skipped.length ? `; skipped ${result.skipped.map((s) => `${s.node} (${s.reason})`).join(', ')}` : ''}.`,
      );
    if (result.snapshot) out.line(`Pre-upgrade snapshot: ${result.snapshot}`);
    for (const t of result.timings) {
      out.line(
        `  ${t.node} (${t.role}): stop ${t.stopMs} ms${t.failoverMs !== undefined ? `, new leader after ${t.failoverMs} ms` : ''}, start ${t.startMs} ms, unseal ${t.unsealMs} ms, catch-up ${t.catchUpMs} ms, stabilization ${t.stabilizationTimeMs} ms (${t.stableBeforeReadyMs} of it during the catch-up), total ${t.totalMs} ms`,
      );
    }
  } finally {
    await conn.client.release();
  }
}

/**
 * `upgrade --stage-only`: the gates and the staging of a rolling upgrade and nothing after them,
 * so the binary crosses the network before the maintenance window: every host gets it next to the
 * live binary (sha256 checked there; a package version is downloaded into the package cache), the
 * staged binary is run once for its version, and no node is stopped. The upgrade run later finds
 * each staged copy by its sha256 and checks it again instead of uploading it. Behind the same door
 * (the cluster lock, the typed confirmation) as the upgrade itself: it writes on every host.
 */
async function stageOnly(
  conn: ConnectedCluster,
  bin: NewServer,
  o: UpgradeCliOptions,
  prompter: ReturnType<typeof makePrompter>,
  progress: (m: string) => void,
  staging: ReturnType<typeof stagingProgress>,
): Promise<void> {
  const nodes = conn.spec.nodes.map((n) => n.name).join(', ');
  const what = bin.pkg ? `package version ${bin.pkg.version}` : `${bin.binary} (sha256 ${bin.sha256.slice(0, 12)}...)`;
  if (!o.json) {
    err.line(`Plan: stage ${what} on ${nodes} of cluster ${conn.name}, ahead of the upgrade`);
    if (bin.release) err.line(`  release: ${bin.release}`);
    err.line(
      `  1. gates: every node reachable, unsealed, a voter; autopilot healthy; SSH host keys;${bin.pkg ? '' : ' sudo, a writable binary directory and room on every host;'} the staged binary runs and is newer`,
    );
    err.line(
      bin.pkg
        ? `  2. download the package in each host's package manager (apt-get --download-only); nothing is installed`
        : `  2. ${bin.url ? 'each host downloads the binary itself and puts it' : 'upload'} beside each live binary as <binary>${STAGED_SUFFIX} (sha256 checked on each host); no node is stopped`,
    );
  }
  const started = Date.now();
  const pre = await throughDoor(
    conn,
    {
      operation: 'upgrade --stage-only',
      breakLock: o.breakLock,
      confirm: {
        prompter,
        message: `This stages the new server on every host of cluster ${conn.name}; no node is stopped.`,
      },
      onInterrupt: 'stopping the staging (an upload cut short is removed on its host)',
    },
    (door) =>
      preflightUpgrade({
        signal: door.signal,
        cluster: conn.client,
        clusterName: conn.name,
        spec: conn.spec,
        binary: serverSource(bin, staging, conn.spec.nodes.length),
        openHost: (n) => openNodeHost(n, { trustOnFirstUse: o.trustOnFirstUse }),
        onEvent: (e) => progress(describe(e)),
      }).finally(() => staging.done()),
  );
  closeMembers(pre.members);
  const stagedOn = pre.members.map((m) => m.spec.name);
  const upgradeable = stagedOn.filter((n) => !pre.skipped.some((s) => s.node === n));
  const result = {
    cluster: conn.name,
    target: pre.target,
    staged: stagedOn,
    skipped: pre.skipped,
    from_versions: pre.fromVersions,
    wallMs: Date.now() - started,
  };
  if (o.json) return out.json(result);
  if (!upgradeable.length) {
    out.line(`Nothing to upgrade: every node of ${conn.name} is already on ${pre.target}.`);
    return;
  }
  out.line(
    `Staged ${pre.target} on ${stagedOn.join(', ')} in ${(result.wallMs / 1000).toFixed(1)} s; no node was stopped.`,
  );
  out.line(
    `Next, in the maintenance window: the same \`vaultops upgrade\` without --stage-only; it finds each staged copy by its sha256 and checks it instead of staging it anew.`,
  );
}

/**
 * What the upgrade will do, in order, before anyone confirms: the same order the use case takes
 * (standbys one at a time, the leader last with a clean stop; or new nodes in, old nodes out). The
 * phases are printed as the plan and drawn as the live task list on a terminal.
 */
async function upgradePlan(
  conn: ConnectedCluster,
  strategy: string,
  bin: NewServer,
  snapshotDir: string,
): Promise<{ lines: string[]; phases: Phase[] }> {
  const probes = await conn.client.probeAll();
  const leader = probes.find((p) => p.health?.state === 'active')?.node.name;
  const states = new Map(probes.map((p) => [p.node.name, p.health?.state ?? 'unreachable']));
  const nodes = conn.spec.nodes.map((n) => n.name);
  const standbys = nodes.filter((n) => n !== leader);
  const stageOrder = [...standbys, ...(leader ? [leader] : [])];
  const phases: Phase[] = [
    {
      key: 'gates',
      title: `gates: the binary's sha256; every node reachable, unsealed, a voter; autopilot healthy; failure tolerance >= 1; SSH host keys;${bin.pkg ? '' : ' on every host sudo, a writable binary directory and room for the binary;'} the staged binary runs and is newer`,
    },
  ];
  if (strategy === 'immutable') {
    const fresh = (conn.spec.new_nodes ?? []).map((x) => x.name);
    phases.push({
      key: 'stage',
      title: `stage the binary on the new nodes ${fresh.join(', ') || '(none listed in new_nodes)'} (sha256 checked on each host)`,
    });
    phases.push({ key: 'snapshot', title: `verified snapshot into ${snapshotDir}` });
    for (const n of fresh)
      phases.push({
        key: `node:${n}`,
        node: n,
        title: `${n}: start on the new version, join, wait until a healthy voter`,
      });
    for (const n of standbys)
      phases.push({ key: `node:${n}`, node: n, title: `${n}: remove from Raft and stop (quorum checked first)` });
    if (leader)
      phases.push({
        key: `node:${leader}`,
        node: leader,
        title: `${leader} (leader, last): stop (systemctl stop: the unit's KillSignal) so a new node takes over; remove from Raft`,
      });
    phases.push({
      key: 'verify',
      title: 'verify: one leader, every node on the new version; the inventory lists only the new nodes',
    });
  } else {
    phases.push({
      key: 'stage',
      title: bin.pkg
        ? `find package version ${bin.pkg.version} in the repositories of ${nodes.join(', ')} and download it there (apt-get --download-only)`
        : `stage the binary (${bin.url ? 'each host downloads it itself; ' : ''}sha256 checked on each host, in the order the nodes go down): on ${stageOrder[0]} now, beside the snapshot; ${stageOrder.slice(1).join(', ') || 'no other node'} one at a time in the background while earlier nodes restart, each node waiting for its own (a failure there stops the run before that node)`,
    });
    phases.push({ key: 'snapshot', title: `verified snapshot into ${snapshotDir}` });
    for (const n of standbys)
      phases.push({
        key: `node:${n}`,
        node: n,
        title: `${n} (standby): stop, ${bin.pkg ? 'install the package' : 'swap the binary'}, start, unseal, wait until a healthy voter and caught up, stabilization`,
      });
    if (leader)
      phases.push({
        key: `node:${leader}`,
        node: leader,
        title: `${leader} (leader, last): stop (systemctl stop: the unit's KillSignal) so an upgraded standby takes over (never a step-down), then as above`,
      });
    phases.push({ key: 'verify', title: 'verify: one leader, every node on the new version, sys/version-history' });
  }
  const lines = [
    bin.pkg
      ? `Plan: ${strategy} upgrade of cluster ${conn.name} to package version ${bin.pkg.version} (each node: its package manager, sudo -n)`
      : `Plan: ${strategy} upgrade of cluster ${conn.name} to ${bin.binary} (sha256 ${bin.sha256.slice(0, 12)}...)`,
    ...(bin.release ? [`  release: ${bin.release}`] : []),
    `  now: ${nodes.map((n) => `${n} ${n === leader ? 'leader' : states.get(n)}`).join(', ')}`,
    ...phases.map((p, i) => `  ${i + 1}. ${p.title}`),
    '  A failed gate changes nothing; a node that does not come back halts the run before the next one.',
  ];
  return { lines, phases };
}

/** Which phase of the plan an event of the use case belongs to. */
function phaseOf(e: UpgradeEvent): string {
  switch (e.kind) {
    case 'gate':
      return 'gates';
    case 'stage':
      return 'stage';
    case 'snapshot':
    case 'plan':
      return 'snapshot';
    case 'skip':
    case 'node':
      return `node:${e.node}`;
    case 'verify':
      return 'verify';
  }
}

function describe(e: UpgradeEvent): string {
  switch (e.kind) {
    case 'gate':
      return `gate: ${e.message}`;
    case 'stage':
    case 'node':
      return `${e.node}: ${e.message}`;
    case 'skip':
      return `${e.node}: skipped (${e.reason})`;
    default:
      return e.message;
  }
}

/** The new server as the use cases take it: a local binary (maybe from a verified release), or a package version. */
interface NewServer {
  binary: string;
  sha256: string;
  /** The hosts download the binary from here themselves (--fetch-on-hosts). */
  url?: string | undefined;
  release?: string | undefined;
  pkg?: PackageSource | undefined;
}

/** What the use case installs: the package version, or the binary with its upload progress on `hosts` hosts. */
function serverSource(
  bin: NewServer,
  staging: ReturnType<typeof stagingProgress>,
  hosts: number,
): PackageSource | BinarySource {
  return (
    bin.pkg ?? {
      path: bin.binary,
      sha256: bin.sha256,
      url: bin.url,
      onUpload: staging.onUpload(basename(bin.binary), hosts),
    }
  );
}

/** Whether the nodes this strategy installs on are package installs (service.install: package). */
function packageInstalled(conn: ConnectedCluster, strategy: string): boolean {
  const nodes = strategy === 'immutable' ? (conn.spec.new_nodes ?? []) : conn.spec.nodes;
  if (clusterInstall(nodes) !== 'package') return false;
  if (strategy === 'immutable')
    throw new InputError('An immutable upgrade onto package-installed nodes is not supported yet.', {
      hint: 'Install the new version on the new hosts from your repository first and upgrade them with --strategy rolling, or set service.install: binary on new_nodes.',
    });
  return true;
}

type BinaryChoice =
  | { kind: 'binary'; binary: string; sha256: string; url?: string | undefined }
  | { kind: 'release'; version: string; mirror?: string | undefined; keyFile?: string | undefined };

/** Exactly one way for the new binary: --binary with --sha256, or --version (a verified vendor release). */
function binarySource(o: UpgradeCliOptions): BinaryChoice {
  if (o.version !== undefined) {
    if (o.fetchOnHosts)
      throw new InputError('--fetch-on-hosts goes with --binary URL, not --version.', {
        hint: 'Give --binary URL --sha256 HEX of a binary on a mirror the hosts reach; --version fetches the release here and sends it over SSH.',
      });
    if (o.binary !== undefined || o.sha256 !== undefined)
      throw new InputError('--version fetches the release itself: it does not go with --binary or --sha256.', {
        hint: 'Give either --version X (the vendor release, signature-checked) or --binary FILE --sha256 HEX.',
      });
    return { kind: 'release', version: o.version.replace(/^v/, ''), mirror: o.releaseMirror, keyFile: o.releaseKey };
  }
  if (o.releaseMirror !== undefined || o.releaseKey !== undefined)
    throw new InputError('--release-mirror and --release-key go with --version.', {
      hint: 'Add --version X, or drop them when you give --binary FILE --sha256 HEX.',
    });
  if (o.binary === undefined || o.sha256 === undefined)
    throw new InputError(
      o.fetchOnHosts
        ? '--fetch-on-hosts needs --binary URL and --sha256 HEX: each host checks its download against that sum.'
        : 'Which binary? Give --version X, or --binary FILE with --sha256 HEX.',
      {
        hint: "--version fetches the vendor's release and verifies its signed SHA256SUMS; --binary takes a file you checked.",
      },
    );
  if (!o.fetchOnHosts) return { kind: 'binary', binary: o.binary, sha256: o.sha256 };
  if (!/^https?:\/\//i.test(o.binary))
    throw new InputError(`--fetch-on-hosts needs --binary to be an http(s) URL, not ${o.binary}.`, {
      hint: 'Serve the binary from a mirror the hosts reach, or drop --fetch-on-hosts to send the local file over SSH.',
    });
  const fetched = fetchedBinary(o.binary, o.sha256);
  return { kind: 'binary', binary: fetched.path, sha256: fetched.sha256, url: fetched.url };
}

/**
 * --version: the nodes that will run the new binary say their OS/CPU over SSH, then the release is
 * fetched and verified (signature over the checksum list first) before the plan is shown.
 */
async function releaseBinary(
  conn: ConnectedCluster,
  strategy: string,
  source: Extract<BinaryChoice, { kind: 'release' }>,
  o: UpgradeCliOptions,
  progress: (m: string) => void,
  quiet: boolean,
): Promise<{ binary: string; sha256: string; release: string }> {
  const nodes = strategy === 'immutable' ? (conn.spec.new_nodes ?? []) : conn.spec.nodes;
  const flavor = conn.spec.flavor ?? flavorFromBinaryPath(conn.spec.nodes);
  const named = [];
  for (const n of nodes) {
    const host = await openNodeHost(n, { trustOnFirstUse: o.trustOnFirstUse });
    try {
      named.push({ node: n.name, platform: await hostPlatform(host) });
    } finally {
      host.close();
    }
  }
  const platform = commonPlatform(named);
  let bytes: Progress | undefined;
  try {
    const r = await fetchVerifiedRelease({
      flavor,
      version: source.version,
      platform,
      mirror: source.mirror,
      keyFile: source.keyFile,
      dir: join(stateDir(), 'downloads', 'releases'),
      onProgress: (m) => {
        bytes?.clear();
        progress(m);
      },
      onBytes: (received, total) => {
        bytes ??= createProgress({ label: 'release archive', total, quiet });
        bytes.update(received);
      },
    });
    return {
      binary: r.binary,
      sha256: r.sha256,
      release: `${flavor} ${source.version} ${platform.os}/${platform.arch} from ${r.archiveUrl}; SHA256SUMS signed by ${r.signer}, archive sha256 matches`,
    };
  } finally {
    bytes?.done();
  }
}

/** Without `flavor:` in the inventory, the binary's name says it (bao is OpenBao). */
function flavorFromBinaryPath(nodes: NodeSpec[]): 'vault' | 'openbao' {
  const names = new Set(nodes.map((n) => basename(n.service?.binary ?? '')));
  if (names.size === 1 && names.has('bao')) return 'openbao';
  if (names.size === 1 && names.has('vault')) return 'vault';
  throw new InputError('--version needs to know whether this is Vault or OpenBao.', {
    hint: 'Add `flavor: vault` or `flavor: openbao` to the cluster in the inventory.',
  });
}

/**
 * --binary URL: downloaded once into the state dir (a .part file renamed when complete); the sha256
 * check that follows refuses it before any node is touched, exactly as for a local file.
 */
async function downloadBinary(
  url: string,
  dir: string,
  progress: (m: string) => void,
  quiet: boolean,
): Promise<string> {
  const name = basename(new URL(url).pathname) || 'binary';
  const file = join(dir, name);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  progress(`Downloading ${url}...`);
  const res = await fetch(url, { redirect: 'follow' });
  if (!res.ok || !res.body)
    throw new UnreachableError(`Download of ${url} failed: HTTP ${res.status}.`, {
      hint: 'Check the URL, or download the file yourself and pass its path.',
    });
  const length = Number(res.headers.get('content-length'));
  const bytes = createProgress({ label: `download of ${name}`, total: length > 0 ? length : undefined, quiet });
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes.add(chunk.length);
      callback(null, chunk);
    },
  });
  try {
    await pipeline(
      Readable.fromWeb(res.body as import('node:stream/web').ReadableStream),
      counter,
      createWriteStream(`${file}.part`, { mode: 0o755 }),
    );
  } finally {
    bytes.done();
  }
  renameSync(`${file}.part`, file);
  return file;
}

/** Staging progress: the bytes of all hosts summed on one line (a host skipped as already staged adds none). */
function stagingProgress(quiet: boolean) {
  let line: Progress | undefined;
  const sent = new Map<string, number>();
  return {
    onUpload: (file: string, hosts: number) => (host: string, bytes: number, size: number) => {
      line ??= createProgress({
        label: `staging ${file} on ${hosts} host${hosts === 1 ? '' : 's'}`,
        total: size * Math.max(1, hosts),
        quiet,
      });
      sent.set(host, bytes);
      line.update([...sent.values()].reduce((a, b) => a + b, 0));
    },
    clear: () => line?.clear(),
    done: () => line?.done(),
  };
}
