#!/usr/bin/env node
// Backup throughput and memory: `vaultops backup` (streamed to disk with full verification on the fly:
// gzip, tar, every member hashed against SHA256SUMS, SHA256SUMS.sealed, whole-file sha256) against the
// official `bao|vault operator raft snapshot save`, on the same real cluster and the same data, runs
// alternated. Peak RSS of each whole process from /usr/bin/time -v.
//
//   npm run build && node_modules/.bin/node bench/backup.js [--flavor openbao|vault] [--sizes 10,100] [--runs 3] [--nodes 3]
//     [--scheduled] [--keep]
//
// Sizes are MB of incompressible KV data written before each step (snapshot size is about the same).
// Besides wall time and peak RSS it reports CPU-seconds (user + sys) of each client process and of the
// lab's servers during it: on 2 shared cores wall time swings with whatever else runs, CPU-seconds
// much less. --scheduled adds a third run per round as `schedule backup` runs it (node
// --max-semi-space-size=1). Figures only; nothing is asserted.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureBinary } from '../dist/internal/lab/binaries.js';
import { labDestroy, labUp } from '../dist/internal/lab/lab.js';
import { VaultClient } from '../dist/internal/vault/client.js';
import { Transport } from '../dist/internal/vault/transport.js';
import { option, kvFiller, timedProcess, helpFromHeader } from './common.js';

helpFromHeader(import.meta.url);

const args = process.argv.slice(2);
const opt = (name, dflt) => option(args, name, dflt);
const flavor = opt('flavor', 'openbao');
const version = opt('version', flavor === 'openbao' ? '2.7.2' : '1.21.0');
const sizes = opt('sizes', '10,100').split(',').map(Number);
const runs = Number(opt('runs', '3'));
const nodes = Number(opt('nodes', '3'));
const keep = args.includes('--keep');
const scheduled = args.includes('--scheduled');
const repo = fileURLToPath(new URL('..', import.meta.url));
const node = join(repo, 'node_modules', '.bin', 'node');
const cli = join(repo, 'bin', 'vaultops.js');

const stateDir = mkdtempSync(join(tmpdir(), 'vaultops-bench-backup-'));
const env = { ...process.env, VAULTOPS_STATE_DIR: stateDir };
const name = `b-bench-${flavor === 'openbao' ? 'bao' : 'vault'}`;
const log = (m) => process.stderr.write(`${new Date().toISOString()} ${m}\n`);

const bin = await ensureBinary({ flavor, version, env });
const inventory = join(stateDir, `${name}.yml`);
log(`lab ${name}: ${flavor} ${version}, ${nodes} node(s)...`);
const { lab } = await labUp({
  name,
  flavor,
  version,
  binary: bin.path,
  tls: true,
  nodes,
  inventory,
  env,
  onProgress: () => undefined,
}).catch((e) => {
  // labUp stops what it started; the state dir is ours to remove.
  rmSync(stateDir, { recursive: true, force: true });
  throw e;
});
const init = JSON.parse(readFileSync(lab.initFile, 'utf8'));
const transport = new Transport({ tls: { caCert: lab.caCert }, timeoutMs: 60_000, retries: 0 });
const leader = new VaultClient({ address: lab.nodes[0].apiAddr, token: init.root_token, transport });

/** CPU-seconds (user + sys) the lab's server processes have used so far. */
function serverCpu() {
  let ticks = 0;
  for (const n of lab.nodes) {
    try {
      // Fields after the command name (which is in parentheses): utime and stime are the 12th and 13th.
      const stat = readFileSync(`/proc/${n.pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      return NaN;
    }
  }
  return ticks / 100;
}

/**
 * Runs a command under /usr/bin/time -v; returns wall seconds, peak RSS in MB, the command's
 * CPU-seconds (user + sys) and the servers' CPU-seconds meanwhile.
 */
async function timed(cmd, argv, childEnv) {
  const server0 = serverCpu();
  const r = await timedProcess(cmd, argv, childEnv);
  return { ...r, server: serverCpu() - server0 };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const rows = [];
try {
  await leader.write('sys/mounts/kv', { type: 'kv', options: { version: '1' } });
  const fill = kvFiller(leader);
  for (const mb of sizes) {
    const t0 = Date.now();
    await fill(mb);
    log(`filled to ~${mb} MB of KV data in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const outDir = join(stateDir, `out-${mb}`);
    mkdirSync(outDir, { recursive: true });
    const ours = [];
    const oursScheduled = [];
    const theirs = [];
    let snapBytes = 0;
    const officialEnv = {
      PATH: process.env.PATH,
      HOME: stateDir,
      VAULT_ADDR: lab.nodes[0].apiAddr,
      VAULT_CACERT: lab.caCert,
      VAULT_TOKEN: init.root_token,
    };
    const oursEnv = { ...env };
    for (const k of Object.keys(oursEnv)) if (/^(VAULT|BAO)_/.test(k)) delete oursEnv[k];
    for (let r = 0; r < runs; r++) {
      const official = join(outDir, `official-${r}.snap`);
      theirs.push(await timed(bin.path, ['operator', 'raft', 'snapshot', 'save', official], officialEnv));
      snapBytes = statSync(official).size;
      rmSync(official);
      const dir = join(outDir, `ours-${r}`);
      ours.push(await timed(node, [cli, 'backup', '-i', inventory, '--to', dir, '--quiet'], oursEnv));
      const f = readdirSync(dir).find((x) => x.endsWith('.snap'));
      if (!f) throw new Error('vaultops backup wrote no snapshot');
      rmSync(dir, { recursive: true });
      if (!scheduled) continue;
      // As `vaultops schedule backup` runs it: node with a small young generation.
      const dir2 = join(outDir, `sched-${r}`);
      oursScheduled.push(
        await timed(
          node,
          ['--max-semi-space-size=1', cli, 'backup', '-i', inventory, '--to', dir2, '--quiet'],
          oursEnv,
        ),
      );
      rmSync(dir2, { recursive: true });
    }
    const mbps = (w) => snapBytes / 1024 / 1024 / w;
    const med = (xs, k, d = 2) => +median(xs.map((x) => x[k])).toFixed(d);
    const row = {
      target_mb: mb,
      snapshot_mb: +(snapBytes / 1024 / 1024).toFixed(1),
      official_wall_s: +median(theirs.map((x) => x.wall)).toFixed(2),
      vaultops_wall_s: +median(ours.map((x) => x.wall)).toFixed(2),
      official_mb_s: +mbps(median(theirs.map((x) => x.wall))).toFixed(1),
      vaultops_mb_s: +mbps(median(ours.map((x) => x.wall))).toFixed(1),
      ratio: +(median(theirs.map((x) => x.wall)) / median(ours.map((x) => x.wall))).toFixed(2),
      official_peak_rss_mb: +Math.max(...theirs.map((x) => x.rss)).toFixed(1),
      vaultops_peak_rss_mb: +Math.max(...ours.map((x) => x.rss)).toFixed(1),
      official_cpu_s: med(theirs, 'cpu'),
      vaultops_cpu_s: med(ours, 'cpu'),
      official_server_cpu_s: med(theirs, 'server'),
      vaultops_server_cpu_s: med(ours, 'server'),
      official_runs: theirs.map((x) => `${x.wall.toFixed(2)}s/${x.cpu.toFixed(2)}cpu/${x.rss.toFixed(0)}MB`).join(' '),
      vaultops_runs: ours.map((x) => `${x.wall.toFixed(2)}s/${x.cpu.toFixed(2)}cpu/${x.rss.toFixed(0)}MB`).join(' '),
      ...(scheduled
        ? {
            scheduled_wall_s: +median(oursScheduled.map((x) => x.wall)).toFixed(2),
            scheduled_mb_s: +mbps(median(oursScheduled.map((x) => x.wall))).toFixed(1),
            scheduled_peak_rss_mb: +Math.max(...oursScheduled.map((x) => x.rss)).toFixed(1),
          }
        : {}),
    };
    rows.push(row);
    log(JSON.stringify(row));
  }
} finally {
  transport.close();
  if (!keep) {
    await labDestroy(name, () => undefined, env);
    rmSync(stateDir, { recursive: true, force: true });
  } else log(`kept: VAULTOPS_STATE_DIR=${stateDir}`);
}

const cpus = (await import('node:os')).cpus().length;
console.log(
  `\nBackup throughput, ${flavor} ${version}, ${nodes} node(s), ${cpus} CPUs, median of ${runs} whole-process runs (alternated), same cluster and data:`,
);
console.log(
  'snapshot   official save        vaultops backup (verified)   ratio   peak RSS official / vaultops   CPU-s official / vaultops   server CPU-s official / vaultops',
);
for (const r of rows) {
  console.log(
    `${`${r.snapshot_mb} MB`.padEnd(10)} ${`${r.official_wall_s} s  ${r.official_mb_s} MB/s`.padEnd(20)} ${`${r.vaultops_wall_s} s  ${r.vaultops_mb_s} MB/s`.padEnd(28)} ${`${r.ratio}x`.padEnd(7)} ${`${r.official_peak_rss_mb} MB / ${r.vaultops_peak_rss_mb} MB`.padEnd(30)} ${`${r.official_cpu_s} / ${r.vaultops_cpu_s}`.padEnd(27)} ${r.official_server_cpu_s} / ${r.vaultops_server_cpu_s}`,
  );
}
console.log(
  '(ratio = official wall / vaultops wall; > 1 means vaultops is faster. Wall includes process start: Node and its modules take ~0.1 s before the first request.\n CPU-s = user + sys of the client process; server CPU-s = the lab servers meanwhile. Medians; peak RSS is the maximum.)',
);
if (!scheduled) process.exit(0);
console.log('\nvaultops backup as `schedule backup` runs it (node --max-semi-space-size=1):');
for (const r of rows)
  console.log(
    `${`${r.snapshot_mb} MB`.padEnd(10)} ${r.scheduled_wall_s} s  ${r.scheduled_mb_s} MB/s   ratio ${(r.official_wall_s / r.scheduled_wall_s).toFixed(2)}x   peak RSS ${r.scheduled_peak_rss_mb} MB`,
  );
