import { createWriteStream, mkdirSync, renameSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createInterface } from 'node:readline/promises';
import { hostname, userInfo } from 'node:os';
import { InputError, UnreachableError } from '../core/errors.js';
import { stateDir } from '../lab/paths.js';
import { resolveSecretList } from '../secrets/refs.js';
import { openNodeHost } from '../ssh/open-host.js';
import { LocalDirStore } from '../backup/local-dir-store.js';
import { takeBackup } from '../backup/take-backup.js';
import { rollingUpgrade, type UpgradeEvent } from '../upgrade/rolling.js';
import { immutableUpgrade } from '../upgrade/immutable.js';
import { recordUpgrade } from '../upgrade/inventory-update.js';
import { acquireLock, lockPath } from '../playbook/lock.js';
import { out, progressPrinter } from '../ui/output.js';
import { createProgress, type Progress } from '../ui/progress.js';
import { connectCluster } from './cluster-from-inventory.js';

export interface UpgradeCliOptions {
  inventory: string;
  cluster?: string;
  binary: string;
  sha256: string;
  strategy?: string;
  nonInteractive?: boolean;
  rollbackOnFailure?: boolean;
  trustOnFirstUse?: boolean;
  snapshotDir?: string;
  waitTimeout?: string;
  json?: boolean;
  writeInventory?: string;
  breakLock?: boolean;
}

/** `vaultops upgrade`: the rolling upgrade as one command, for people and cron alike. */
export async function upgradeCommand(o: UpgradeCliOptions): Promise<void> {
  const strategy = o.strategy ?? 'rolling';
  if (strategy !== 'rolling' && strategy !== 'immutable') throw new InputError(`--strategy ${strategy} is not known.`, { hint: 'Use --strategy rolling (in place: standbys first, leader last) or immutable (new nodes join, then the old ones leave).' });
  if (o.writeInventory && strategy !== 'immutable') throw new InputError('--write-inventory goes with --strategy immutable.', { hint: 'A rolling upgrade keeps the nodes; only their version: changes, in place.' });
  const printer = progressPrinter({ quiet: o.json === true });
  // The binary goes to every host at once: one line for all of them, cleared before each message.
  const staging = stagingProgress(o.json === true);
  const progress = (m: string) => {
    staging.clear();
    printer(m);
  };
  if (/^https?:\/\//.test(o.binary)) o.binary = await downloadBinary(o.binary, join(stateDir(), 'downloads'), progress, o.json === true);
  const conn = await connectCluster(o.inventory, o.cluster);
  try {
    const unsealKeys = conn.spec.unseal?.keys ? await resolveSecretList(conn.spec.unseal.keys) : undefined;
    if (!o.nonInteractive) await confirm(conn.name, strategy);
    const snapshotDir = o.snapshotDir ?? join(stateDir(), 'upgrades', conn.name);
    const waitTimeoutMs = o.waitTimeout ? Number(o.waitTimeout) * 1000 : undefined;
    // Ctrl-C: finish the node in hand (a node left half-done is worse), stop before the next one.
    const abort = new AbortController();
    const onInt = () => {
      if (abort.signal.aborted) process.exit(130);
      abort.abort();
      progress('Interrupt: finishing the node in progress, then stopping before the next one (Ctrl-C again to quit at once).');
    };
    process.on('SIGINT', onInt);
    // Two runs never act on one cluster at once: the same lock the playbook engine takes.
    const release = acquireLock(
      lockPath(stateDir(), conn.name, conn.spec.nodes.map((n) => n.api_addr)),
      { runId: `upgrade-${process.pid}-${Date.now()}`, pid: process.pid, host: hostname(), user: userInfo().username, startedAt: new Date().toISOString(), playbook: `upgrade --strategy ${strategy}` },
      { breakStale: o.breakLock === true },
    );
    if (strategy === 'immutable') {
      try {
        const r = await immutableUpgrade({
          signal: abort.signal,
          stateFile: join(stateDir(), 'upgrades', conn.name, 'immutable.json'),
          cluster: conn.client,
          clusterName: conn.name,
          spec: conn.spec,
          binary: { path: o.binary, sha256: o.sha256, onUpload: staging.onUpload(basename(o.binary), conn.spec.new_nodes?.length ?? 0) },
          unsealKeys,
          waitTimeoutMs,
          openHost: (n) => openNodeHost(n, { trustOnFirstUse: o.trustOnFirstUse }),
          snapshot: async () => {
            const b = await takeBackup({ cluster: conn.client, clusterName: conn.name, flavor: conn.spec.flavor, keySet: conn.spec.unseal?.key_set, store: new LocalDirStore(snapshotDir), log: progress });
            return join(b.location, b.name);
          },
          onEvent: (e) => progress(describe(e)),
        });
        const files = await recordUpgrade({ inventoryFile: conn.inventoryFile, clusterName: conn.name, spec: conn.spec, target: r.target, replacedBy: r.nodes, writeTo: o.writeInventory });
        if (o.json) {
          out.json({ ...r, inventory: files });
          return;
        }
        out.line(`Replaced ${conn.name}'s nodes with ${r.nodes.join(', ')} on ${r.target} in ${(r.wallMs / 1000).toFixed(1)} s${r.removed.length ? `; removed ${r.removed.join(', ')}` : ''}; leader ${r.leader}.`);
        if (r.snapshot) out.line(`Pre-upgrade snapshot: ${r.snapshot}`);
        out.line(`Inventory written: ${files.join(', ')} (lists only the new nodes).`);
        return;
      } finally {
        staging.done();
        process.off('SIGINT', onInt);
        release();
      }
    }
    const result = await rollingUpgrade({
      signal: abort.signal,
      progressFile: join(stateDir(), 'upgrades', conn.name, 'in-progress.json'),
      cluster: conn.client,
      clusterName: conn.name,
      spec: conn.spec,
      binary: { path: o.binary, sha256: o.sha256, onUpload: staging.onUpload(basename(o.binary), conn.spec.nodes.length) },
      unsealKeys,
      onNodeFailure: o.rollbackOnFailure ? 'rollback' : 'halt',
      waitTimeoutMs,
      openHost: (n) => openNodeHost(n, { trustOnFirstUse: o.trustOnFirstUse }),
      snapshot: async () => {
        const r = await takeBackup({ cluster: conn.client, clusterName: conn.name, flavor: conn.spec.flavor, keySet: conn.spec.unseal?.key_set, store: new LocalDirStore(snapshotDir), log: progress });
        return join(r.location, r.name);
      },
      onEvent: (e) => progress(describe(e)),
    }).finally(() => {
      staging.done();
      process.off('SIGINT', onInt);
      release();
    });
    // A lab's lab.json and inventory say the version the cluster runs now (a production inventory is left as it is).
    const files = conn.spec.lab ? await recordUpgrade({ inventoryFile: conn.inventoryFile, clusterName: conn.name, spec: conn.spec, target: result.target }) : [];
    if (o.json) {
      out.json({ ...result, inventory: files });
      return;
    }
    if (!result.upgraded.length) out.line(`Nothing to do: every node of ${conn.name} is already on ${result.target}.`);
    else out.line(`Upgraded ${conn.name} to ${result.target} in ${(result.wallMs / 1000).toFixed(1)} s: ${result.upgraded.join(', ')}${result.skipped.length ? `; skipped ${result.skipped.map((s) => `${s.node} (${s.reason})`).join(', ')}` : ''}.`);
    if (result.snapshot) out.line(`Pre-upgrade snapshot: ${result.snapshot}`);
    for (const t of result.timings) {
      out.line(`  ${t.node} (${t.role}): stop ${t.stopMs} ms${t.failoverMs !== undefined ? `, new leader after ${t.failoverMs} ms` : ''}, start ${t.startMs} ms, unseal ${t.unsealMs} ms, catch-up ${t.catchUpMs} ms, stabilization ${t.stabilizationMs} ms, total ${t.totalMs} ms`);
    }
  } finally {
    conn.client.close();
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

/**
 * --binary URL: downloaded once into the state dir (a .part file renamed when complete); the sha256
 * check that follows refuses it before any node is touched, exactly as for a local file.
 */
async function downloadBinary(url: string, dir: string, progress: (m: string) => void, quiet: boolean): Promise<string> {
  const name = basename(new URL(url).pathname) || 'binary';
  const file = join(dir, name);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  progress(`Downloading ${url}...`);
  const res = await fetch(url, { redirect: 'follow' });
  if (!res.ok || !res.body) throw new UnreachableError(`Download of ${url} failed: HTTP ${res.status}.`, { hint: 'Check the URL, or download the file yourself and pass its path.' });
  const length = Number(res.headers.get('content-length'));
  const bytes = createProgress({ label: `download of ${name}`, total: length > 0 ? length : undefined, quiet });
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes.add(chunk.length);
      callback(null, chunk);
    },
  });
  try {
    await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), counter, createWriteStream(`${file}.part`, { mode: 0o755 }));
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
      line ??= createProgress({ label: `staging ${file} on ${hosts} host${hosts === 1 ? '' : 's'}`, total: size * Math.max(1, hosts), quiet });
      sent.set(host, bytes);
      line.update([...sent.values()].reduce((a, b) => a + b, 0));
    },
    clear: () => line?.clear(),
    done: () => line?.done(),
  };
}

async function confirm(cluster: string, strategy: string): Promise<void> {
  if (!process.stdin.isTTY || !process.stderr.isTTY) {
    throw new InputError('An upgrade asks for confirmation, and there is no terminal to ask.', { hint: 'Pass --non-interactive to run unattended (cron, CI).' });
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const how = strategy === 'immutable' ? 'by replacing its nodes (new nodes join, then the old ones leave, the leader last)' : 'node by node (standbys first, leader last)';
    const answer = await rl.question(`Upgrade cluster ${cluster} ${how}? Type the cluster name to go on: `);
    if (answer.trim() !== cluster) throw new InputError('Not confirmed; nothing was changed.');
  } finally {
    rl.close();
  }
}
