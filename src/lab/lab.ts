import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { chmodSync, existsSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { InputError, VaultopsError } from '../core/errors.js';
import { ClusterClient } from '../vault/cluster.js';
import { VaultClient } from '../vault/client.js';
import type { InitResponse } from '../vault/api-types.js';
import { stateDir } from './paths.js';
import { FLAVORS, type Flavor } from './binaries.js';
import { ensureLabCa, issueNodeCert } from './certs.js';
import { isAlive, withFileLock } from './file-lock.js';
import { lastLines } from './exec.js';
import { renderInventory } from './inventory-writer.js';
import { ensureServiceUser, firstBlockedAncestor, handOver, openForSearch, privateCopy, type RunAs } from './run-as.js';
import { prepareSshHosts, startSshds, stopSshds, type LabSsh } from './ssh-hosts.js';
import { recordSlot, slotLockPath, slotsHeldElsewhere } from './slot-registry.js';
import { checkSameSeal, prepareTransitSeal, revokeSealToken, type LabSeal, type PreparedSeal, type ProviderLabs, type SealRequest } from './transit-seal.js';

export const API_PORT = 8200;
export const CLUSTER_PORT = 8201;
/** Slot k owns 127.0.0.(10k+1) .. 127.0.0.(10k+9); a cluster's first nodes are x1, x2, x3. */
const MAX_SLOT = 24;

export interface LabNode {
  name: string;
  ip: string;
  apiAddr: string;
  clusterAddr: string;
  dir: string;
  config: string;
  log: string;
  pid?: number | undefined;
  /** The node's own binary path (with --ssh), else lab.binary. */
  binary?: string | undefined;
}

export interface LabRecord {
  name: string;
  flavor: Flavor;
  version: string;
  binary: string;
  slot: number;
  tls: boolean;
  dir: string;
  caCert?: string | undefined;
  initFile: string;
  inventory?: string | undefined;
  nodes: LabNode[];
  createdAt: string;
  /** With --ssh: each node also runs an sshd (src/lab/ssh-hosts.ts). */
  ssh?: LabSsh | undefined;
  /** Extra server configuration appended to every node's config (production-like.ts). */
  extraConfig?: string | undefined;
  /** Servers run as this unprivileged account (production-like labs); else as the caller. */
  runAs?: RunAs | undefined;
  /** A 0600 JSON file {"token": ...} the inventory uses instead of init.json's root token (production-like.ts revokes that). */
  tokenFile?: string | undefined;
  /** Auto-unseal by another lab's transit engine (transit-seal.ts); absent: Shamir keys. */
  seal?: LabSeal | undefined;
  /** Nodes started by `lab add-nodes` for an immutable upgrade, not members yet (add-nodes.ts). */
  newNodes?: LabNode[] | undefined;
  /** The version the new nodes run. */
  newVersion?: string | undefined;
}

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
}

export function labsDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(stateDir(env), 'labs');
}

export function labDir(name: string, env: NodeJS.ProcessEnv = process.env): string {
  if (!/^[a-z0-9][a-z0-9-]{0,30}$/.test(name)) throw new InputError(`"${name}" is not a lab name.`, { hint: 'Use lower-case letters, digits and "-", up to 31 characters.' });
  return join(labsDir(env), name);
}

export function readLab(name: string, env: NodeJS.ProcessEnv = process.env): LabRecord | undefined {
  const file = join(labDir(name, env), 'lab.json');
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as LabRecord;
}

export function listLabs(env: NodeJS.ProcessEnv = process.env): LabRecord[] {
  const dir = labsDir(env);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((n) => {
      try {
        return readLab(n, env);
      } catch {
        return undefined;
      }
    })
    .filter((l): l is LabRecord => l !== undefined);
}

export function writeLab(lab: LabRecord): void {
  const file = join(lab.dir, 'lab.json');
  writeFileSync(`${file}.tmp`, `${JSON.stringify(lab, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

export function runningPids(lab: LabRecord): number[] {
  return lab.nodes.map((n) => currentPid(n)).filter((p): p is number => p !== undefined && isAlive(p) && isOurServer(p, lab));
}

/** The node's pid file wins over lab.json: the lab service manager (ssh-hosts.ts) restarts servers too. */
function currentPid(n: LabNode): number | undefined {
  try {
    const p = Number.parseInt(readFileSync(join(n.dir, 'pid'), 'utf8'), 10);
    return Number.isFinite(p) ? p : n.pid;
  } catch {
    return n.pid;
  }
}

/** A recorded pid may have been reused by another program after a reboot: check its command line. */
function isOurServer(pid: number, lab: LabRecord): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(lab.dir);
  } catch {
    return false;
  }
}

export type LabState = 'running' | 'partial' | 'stopped';

export function labState(lab: LabRecord): LabState {
  const n = runningPids(lab).length;
  return n === lab.nodes.length ? 'running' : n === 0 ? 'stopped' : 'partial';
}

export function clusterFor(lab: LabRecord, token?: string): ClusterClient {
  return new ClusterClient({
    name: lab.name,
    nodes: lab.nodes.map((n) => ({ name: n.name, apiAddr: n.apiAddr, clusterAddr: n.clusterAddr })),
    tls: lab.caCert ? { caCert: lab.caCert } : undefined,
    token,
    timeoutMs: 10_000,
    retries: 0,
  });
}

/**
 * Starts (or creates and starts) a lab: 3 real server processes on their own loopback
 * addresses, TLS from a lab CA, initialised 5/3, unsealed, joined, and waited on until autopilot
 * reports healthy with failure tolerance 1. On failure nothing is left running.
 */
export async function labUp(opts: LabUpOptions): Promise<{ lab: LabRecord; created: boolean; alreadyRunning: boolean }> {
  const env = opts.env ?? process.env;
  const progress = opts.onProgress ?? (() => undefined);
  const dir = labDir(opts.name, env);
  const existing = readLab(opts.name, env);
  if (existing) {
    const state = labState(existing);
    if (state === 'running') return { lab: existing, created: false, alreadyRunning: true };
    if (existing.flavor !== opts.flavor || existing.version !== opts.version) {
      throw new InputError(`Lab ${opts.name} holds ${FLAVORS[existing.flavor].product} ${existing.version} data, not ${FLAVORS[opts.flavor].product} ${opts.version}.`, {
        hint: `Run \`vaultops lab destroy --name ${opts.name}\` first, or pick another --name.`,
      });
    }
    checkSameSeal(existing, opts.seal);
    if (state === 'partial') await stopNodes(existing, progress);
    return { lab: await restart(existing, opts.binary, progress, env), created: false, alreadyRunning: false };
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
          progress(`warning: servers run as ${process.env['USER'] ?? 'the caller'}, not ${opts.runAs}: ${blocked} is not searchable by other users (set VAULTOPS_STATE_DIR under a directory such as /var/lib/vaultops, or chmod o+x ${blocked})`);
        } else {
          record.runAs = await ensureServiceUser(opts.runAs);
          openForSearch(ours);
          // The cached binary may sit under a private home: each lab gets its own copy it can run.
          if (firstBlockedAncestor(record.binary, []) !== undefined) record.binary = privateCopy(record.binary, join(dir, 'bin'));
          progress(`Servers will run as ${record.runAs.user} (uid ${record.runAs.uid}), not root...`);
        }
      }
      if (opts.ssh) await prepareSshHosts(record);
      if (record.runAs) {
        handOver(dir, record.nodes.map((n) => n.dir), record.nodes.flatMap((n) => [join(dir, 'tls', `${n.name}.key`), join(dir, 'tls', `${n.name}.pem`)]), record.runAs);
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

async function restart(lab: LabRecord, binary: string, progress: (m: string) => void, env: NodeJS.ProcessEnv): Promise<LabRecord> {
  lab.binary = binary;
  // A transit-sealed lab gets a fresh seal token (its provider must be running: refused otherwise).
  const oldSeal = lab.seal;
  const seal = oldSeal ? await prepareTransitSeal(lab.name, { type: 'transit', provider: oldSeal.provider }, providerLabs(env), progress) : undefined;
  if (seal) lab.seal = seal.record;
  writeConfigs(lab, seal);
  writeLab(lab);
  if (oldSeal?.tokenAccessor !== lab.seal?.tokenAccessor) await revokeSealToken(oldSeal, oldSeal?.tokenAccessor, providerLabs(env));
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

/** Every node's server.hcl; with a transit seal the stanza (and its token) is appended and the file is 0600. */
function writeConfigs(lab: LabRecord, seal: PreparedSeal | undefined): void {
  for (const n of lab.nodes) {
    writeFileSync(n.config, renderConfig(lab, n) + (seal?.stanza ?? ''), { mode: 0o600 });
    if (seal) chmodSync(n.config, 0o600);
  }
}

export function writeInventory(lab: LabRecord): void {
  if (!lab.inventory) return;
  mkdirSync(dirname(lab.inventory), { recursive: true });
  writeFileSync(lab.inventory, renderInventory(lab));
}

async function allocateSlot(name: string, env: NodeJS.ProcessEnv, dir: string): Promise<number> {
  const taken = new Set([...listLabs(env).filter((l) => l.name !== name).map((l) => l.slot), ...slotsHeldElsewhere(dir)]);
  for (let slot = 1; slot <= MAX_SLOT; slot++) {
    if (taken.has(slot)) continue;
    if (await isFree(`127.0.0.${slot * 10 + 1}`, API_PORT)) {
      let all = true;
      for (let i = 1; i <= 9 && all; i++) all = (await isFree(`127.0.0.${slot * 10 + i}`, API_PORT)) && (await isFree(`127.0.0.${slot * 10 + i}`, CLUSTER_PORT));
      if (all) {
        recordSlot(slot, dir);
        return slot;
      }
    }
  }
  throw new VaultopsError('Every loopback range for labs is in use.', { hint: 'Stop a lab with `vaultops lab down --name NAME`, or destroy old ones.' });
}

function isFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolveFree) => {
    const srv = createServer();
    srv.once('error', () => resolveFree(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolveFree(true)));
  });
}

async function assertPortsFree(n: LabNode, labName: string): Promise<void> {
  for (const port of [API_PORT, CLUSTER_PORT]) {
    if (!(await isFree(n.ip, port))) {
      throw new VaultopsError(`Port ${n.ip}:${port} for node ${n.name} of lab ${labName} is already in use.`, {
        hint: `Find the process with \`ss -ltnp 'sport = :${port}'\` and stop it, or use another lab --name.`,
      });
    }
  }
}

export function renderConfig(lab: LabRecord, node: LabNode): string {
  const tlsDir = join(lab.dir, 'tls');
  const joins = lab.nodes
    .filter((n) => n.name !== node.name)
    .map((n) =>
      [
        '  retry_join {',
        `    leader_api_addr = "${n.apiAddr}"`,
        ...(lab.tls ? [`    leader_ca_cert_file = "${join(tlsDir, 'ca.pem')}"`] : []),
        '  }',
      ].join('\n'),
    );
  return [
    `# vaultops lab ${lab.name}, node ${node.name}: ${FLAVORS[lab.flavor].product} ${lab.version}. Generated; edits are overwritten.`,
    'ui = false',
    'disable_mlock = true',
    `cluster_name = "${lab.name}"`,
    `api_addr = "${node.apiAddr}"`,
    `cluster_addr = "${node.clusterAddr}"`,
    'log_level = "info"',
    '',
    'storage "raft" {',
    `  path = "${join(node.dir, 'data')}"`,
    `  node_id = "${node.name}"`,
    // 1 = the tightest timing, for a machine whose nodes share one host (HashiCorp's advice for production is also 1).
    '  performance_multiplier = 1',
    ...joins,
    '}',
    '',
    'listener "tcp" {',
    `  address = "${node.ip}:${API_PORT}"`,
    `  cluster_address = "${node.ip}:${CLUSTER_PORT}"`,
    ...(lab.tls ? [`  tls_cert_file = "${join(tlsDir, `${node.name}.pem`)}"`, `  tls_key_file = "${join(tlsDir, `${node.name}.key`)}"`] : ['  tls_disable = true']),
    '}',
    '',
    ...(lab.extraConfig ? [lab.extraConfig, ''] : []),
  ].join('\n');
}

/** The token the lab's own tooling uses: the production-like admin token when the root token was revoked. */
/** What transit-seal.ts reads of other labs (handed in: it must not import this file). */
function providerLabs(env: NodeJS.ProcessEnv): ProviderLabs<LabRecord> {
  return { read: (name) => readLab(name, env), state: labState, cluster: (l) => clusterFor(l, labToken(l)) };
}

export function labToken(lab: LabRecord): string {
  if (lab.tokenFile) {
    try {
      return (JSON.parse(readFileSync(lab.tokenFile, 'utf8')) as { token: string }).token;
    } catch {
      /* fall back to init.json */
    }
  }
  return readInit(lab).root_token;
}

async function startNodes(lab: LabRecord, progress: (m: string) => void): Promise<void> {
  progress(`Starting ${lab.nodes.length} ${FLAVORS[lab.flavor].product} ${lab.version} nodes on ${lab.nodes.map((n) => n.ip).join(', ')}...`);
  for (const n of lab.nodes) {
    await assertPortsFree(n, lab.name);
    n.pid = startServer(n.binary ?? lab.binary, n, lab.runAs);
  }
  writeLab(lab);
  const deadline = Date.now() + 30_000;
  const cluster = clusterFor(lab);
  try {
    for (const n of lab.nodes) {
      const client = cluster.client(n.name);
      for (;;) {
        if (n.pid === undefined || !isAlive(n.pid)) throw nodeDied(lab, n, 'exited right after it was started');
        try {
          await client.health();
          break;
        } catch (e) {
          if (Date.now() > deadline) throw nodeDied(lab, n, `did not answer on ${n.apiAddr} within 30 s (${(e as Error).message})`);
          await sleep(150);
        }
      }
    }
  } finally {
    cluster.close();
  }
}

export function startServer(binary: string, n: LabNode, runAs?: RunAs): number {
  mkdirSync(n.dir, { recursive: true });
  const fd = openSync(n.log, 'a', 0o600);
  try {
    // A clean environment: the server must not inherit VAULT_TOKEN or other secrets of this shell.
    const child = spawn(binary, ['server', `-config=${n.config}`], {
      cwd: n.dir,
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: n.dir },
      ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
    });
    child.unref();
    if (child.pid === undefined) throw new VaultopsError(`Could not start ${binary}.`);
    writeFileSync(join(n.dir, 'pid'), `${child.pid}\n`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

export function nodeLogTail(n: LabNode, lines = 15): string[] {
  try {
    return lastLines(readFileSync(n.log, 'utf8'), lines);
  } catch {
    return [];
  }
}

function nodeDied(lab: LabRecord, n: LabNode, what: string): VaultopsError {
  return new VaultopsError(`Node ${n.name} of lab ${lab.name} ${what}.`, {
    details: [`last lines of ${n.log}:`, ...nodeLogTail(n).map((l) => `  ${l}`)],
    hint: 'Read the log above; `vaultops lab destroy` removes the lab so it can be made anew.',
  });
}

export function readInit(lab: LabRecord): { unseal_keys_b64: string[]; root_token: string } {
  try {
    return JSON.parse(readFileSync(lab.initFile, 'utf8')) as { unseal_keys_b64: string[]; root_token: string };
  } catch (e) {
    throw new VaultopsError(`Cannot read the lab's init file ${lab.initFile}: ${(e as NodeJS.ErrnoException).code ?? 'not JSON'}.`, {
      hint: `The lab's keys are gone; \`vaultops lab destroy --name ${lab.name}\` and start again.`,
    });
  }
}

/**
 * init.json has the shape of `vault operator init -format=json` (unseal_keys_b64, unseal_keys_hex,
 * unseal_shares, unseal_threshold, root_token...), the values exactly as the server returned them.
 */
function initFileContent(res: InitResponse, shares: number, threshold: number, recovery: boolean): string {
  return `${JSON.stringify(
    {
      unseal_keys_b64: res.keys_base64 ?? [],
      unseal_keys_hex: res.keys ?? [],
      unseal_shares: recovery ? 0 : shares,
      unseal_threshold: recovery ? 0 : threshold,
      recovery_keys_b64: res.recovery_keys_base64 ?? [],
      recovery_keys_hex: res.recovery_keys ?? [],
      recovery_keys_shares: recovery ? shares : 0,
      recovery_keys_threshold: recovery ? threshold : 0,
      root_token: res.root_token,
    },
    null,
    2,
  )}\n`;
}

async function initialise(lab: LabRecord, progress: (m: string) => void): Promise<void> {
  const cluster = clusterFor(lab);
  try {
    const first = lab.nodes[0]!;
    // An auto-unseal (transit) cluster refuses secret_shares: it gets recovery keys and unseals itself.
    const recovery = lab.seal !== undefined;
    progress(`Initialising ${first.name} (5 ${recovery ? `recovery key shares, threshold 3; auto-unseal by lab ${lab.seal!.provider}` : 'key shares, threshold 3'})...`);
    const { parsed } = await cluster.client(first.name).init(recovery ? { recovery_shares: 5, recovery_threshold: 3 } : { secret_shares: 5, secret_threshold: 3 });
    // 0600 from the first byte: written to a temp file created with that mode, then renamed.
    const tmp = `${lab.initFile}.tmp`;
    writeFileSync(tmp, initFileContent(parsed, 5, 3, recovery), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, lab.initFile);
    const init = readInit(lab);
    await unsealAll(lab, init, progress, cluster);
    // Unsealed is not yet active: a node that just unsealed answers 307 until it has taken leadership.
    const deadline = Date.now() + 30_000;
    while ((await cluster.client(first.name).health().catch(() => undefined))?.state !== 'active') {
      if (Date.now() > deadline) throw nodeDied(lab, first, 'did not become the active node within 30 s of unsealing');
      await sleep(200);
    }
    await tuneAutopilot(cluster.client(first.name).withToken(init.root_token));
    await waitHealthy(lab, init.root_token, progress);
  } finally {
    cluster.close();
  }
}

/** A shorter stabilisation time than the 10 s default so lab nodes become voters sooner. */
async function tuneAutopilot(client: VaultClient): Promise<void> {
  await client.setAutopilotConfiguration({ server_stabilization_time: '4s', cleanup_dead_servers: false, last_contact_threshold: '10s' });
}

/** Unseals the first node, then the others (which join through retry_join once they have the keys). */
export async function unsealAll(lab: LabRecord, init: { unseal_keys_b64: string[] }, progress: (m: string) => void, existing?: ClusterClient): Promise<void> {
  const cluster = existing ?? clusterFor(lab);
  try {
    for (const n of lab.nodes) {
      // No shares (auto-unseal): wait for the node to unseal itself.
      progress(init.unseal_keys_b64.length ? `Unsealing ${n.name}...` : `Waiting for ${n.name} to unseal itself...`);
      const client = cluster.client(n.name);
      const deadline = Date.now() + 60_000;
      for (;;) {
        // The pid file, not the record: the lab service manager (ssh-hosts.ts) may have restarted the server.
        const pid = currentPid(n);
        if (pid !== undefined && !isAlive(pid)) throw nodeDied(lab, n, 'stopped while being unsealed');
        const status = await client.sealStatus().catch(() => undefined);
        if (status && !status.sealed && status.initialized) break;
        if (status) {
          // Send the shares; a node still waiting to join uses them to answer the leader's challenge.
          try {
            for (const key of init.unseal_keys_b64.slice(0, Math.max(status.t || 3, 1))) {
              const s = await client.unseal(key);
              if (!s.sealed) break;
            }
          } catch {
            /* not ready to take shares yet (join in progress); try again */
          }
          const after = await client.sealStatus().catch(() => undefined);
          if (after && !after.sealed && after.initialized) break;
        }
        if (Date.now() > deadline) throw nodeDied(lab, n, 'did not unseal within 60 s');
        await sleep(500);
      }
    }
  } finally {
    if (!existing) cluster.close();
  }
}

export async function waitHealthy(lab: LabRecord, token: string, progress: (m: string) => void, timeoutMs = 90_000): Promise<void> {
  progress('Waiting for autopilot: all nodes healthy voters, failure tolerance 1...');
  const cluster = clusterFor(lab, token);
  const deadline = Date.now() + timeoutMs;
  let last = '';
  try {
    for (;;) {
      const st = await cluster.status();
      // A healthy lab: every node serving and a voter, autopilot healthy, and the failure tolerance
      // its size allows (1 for 3 nodes, 0 for a single node, which `status` calls degraded).
      const serving = st.nodes.every((n) => n.reachable && (n.state === 'active' || n.state === 'standby') && n.voter);
      if (serving && st.leader && st.autopilot?.healthy && st.autopilot.failureTolerance >= Math.floor((lab.nodes.length - 1) / 2)) return;
      last = st.problems.join('; ') || st.autopilotNote || 'autopilot not healthy yet';
      for (const n of lab.nodes) {
        const pid = currentPid(n);
        if (pid !== undefined && !isAlive(pid)) throw nodeDied(lab, n, 'stopped while the cluster formed');
      }
      if (Date.now() > deadline) throw new VaultopsError(`Lab ${lab.name} did not become healthy within ${Math.round(timeoutMs / 1000)} s: ${last}.`, { details: lab.nodes.flatMap((n) => [`${n.log}:`, ...nodeLogTail(n, 4).map((l) => `  ${l}`)]) });
      await sleep(500);
    }
  } finally {
    cluster.close();
  }
}

/** SIGTERM every recorded server, wait for it to be gone (SIGKILL after 20 s). */
export async function stopNodes(lab: LabRecord, progress: (m: string) => void): Promise<number> {
  // New nodes of an immutable upgrade in progress (add-nodes.ts) are the lab's processes too.
  const everyone: LabRecord = { ...lab, nodes: [...lab.nodes, ...(lab.newNodes ?? [])] };
  const pids = runningPids(everyone);
  if (pids.length) progress(`Stopping ${pids.length} server process${pids.length === 1 ? '' : 'es'} of lab ${lab.name}...`);
  for (const pid of pids) signal(pid, 'SIGTERM');
  const deadline = Date.now() + 20_000;
  while (pids.some(isAlive) && Date.now() < deadline) await sleep(100);
  for (const pid of pids) if (isAlive(pid)) signal(pid, 'SIGKILL');
  while (pids.some(isAlive)) await sleep(50);
  for (const n of everyone.nodes) n.pid = undefined;
  await stopSshds(everyone);
  if (existsSync(lab.dir)) writeLab(lab);
  return pids.length;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

export async function labDown(name: string, progress: (m: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<{ lab?: LabRecord; stopped: number }> {
  const lab = readLab(name, env);
  if (!lab) return { stopped: 0 };
  return { lab, stopped: await stopNodes(lab, progress) };
}

export async function labDestroy(name: string, progress: (m: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<{ lab?: LabRecord; stopped: number }> {
  const dir = labDir(name, env);
  const lab = readLab(name, env);
  const stopped = lab ? await stopNodes(lab, progress) : 0;
  await revokeSealToken(lab?.seal, lab?.seal?.tokenAccessor, providerLabs(env));
  if (lab?.inventory && existsSync(lab.inventory)) {
    // Only remove an inventory we wrote (it says so on its first line).
    if (readFileSync(lab.inventory, 'utf8').startsWith('# Written by `vaultops lab up`')) rmSync(lab.inventory, { force: true });
  }
  rmSync(dir, { recursive: true, force: true });
  return lab ? { lab, stopped } : { stopped };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
