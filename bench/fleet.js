#!/usr/bin/env node
// Fleet backups: N lab clusters with the same amount of KV data, merged into one inventory;
// one whole-process `vaultops backup` of one cluster against `vaultops backup --all-clusters
// --concurrency c`, median of R runs each. The goal is a wall time close to ceil(N/c) x one backup.
//
//   npm run build && flock /tmp/vaultops-bench.lock node_modules/.bin/node bench/fleet.js \
//     [--clusters 4] [--mb 50] [--runs 3] [--concurrency 1,2,4] [--nodes 1] [--flavor openbao|vault] [--keep]
//
// Runs are alternated (one backup, then each concurrency) so drift on a shared machine hits all
// alike. Wall and peak RSS of each whole process come from /usr/bin/time -v. Figures only; nothing
// is asserted.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus, tmpdir } from 'node:os';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { ensureBinary } from '../dist/internal/lab/binaries.js';
import { labDestroy, labUp } from '../dist/internal/lab/lab.js';
import { VaultClient } from '../dist/internal/vault/client.js';
import { Transport } from '../dist/internal/vault/transport.js';
import { assertBuilt, CLI, median, NODE, option, helpFromHeader } from './common.js';

helpFromHeader(import.meta.url);

assertBuilt();
const args = process.argv.slice(2);
const opt = (name, dflt) => option(args, name, dflt);
const flavor = opt('flavor', 'openbao');
const version = opt('version', flavor === 'openbao' ? '2.7.2' : '1.21.0');
const n = Number(opt('clusters', '4'));
const mb = Number(opt('mb', '50'));
const runs = Number(opt('runs', '3'));
const nodes = Number(opt('nodes', '1'));
const levels = [...new Set(opt('concurrency', `1,2,${n}`).split(',').map(Number))].sort((a, b) => a - b);
const keep = args.includes('--keep');

const stateDir = mkdtempSync(join(tmpdir(), 'vaultops-bench-fleet-'));
const env = { ...process.env, VAULTOPS_STATE_DIR: stateDir };
const cliEnv = { ...env };
// The CLI must use the inventory's TLS and token, not whatever the caller's shell exports.
for (const k of Object.keys(cliEnv)) if (/^(VAULT|BAO)_/.test(k)) delete cliEnv[k];
const log = (m) => process.stderr.write(`${new Date().toISOString()} ${m}\n`);
const names = Array.from({ length: n }, (_, i) => `f-bench-${i + 1}`);

/** Runs `vaultops ARGS` under /usr/bin/time -v: wall seconds, CPU seconds (user + sys), peak RSS (MB), stdout. */
function timed(cliArgs) {
  return new Promise((resolve, reject) => {
    const p = spawn('/usr/bin/time', ['-v', NODE, CLI, ...cliArgs], { env: cliEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (c) => (out += c));
    p.stderr.on('data', (c) => (err += c));
    p.on('error', reject);
    p.on('close', (code) => {
      if (code !== 0)
        return reject(
          new Error(`vaultops ${cliArgs.join(' ')} exited ${code}: ${err.split('\n').slice(0, 6).join(' | ')}`),
        );
      const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(err)?.[1] ?? NaN) / 1024;
      const w = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)/.exec(err);
      const cpu =
        Number(/User time \(seconds\): ([\d.]+)/.exec(err)?.[1] ?? NaN) +
        Number(/System time \(seconds\): ([\d.]+)/.exec(err)?.[1] ?? NaN);
      resolve({ wall: w ? Number(w[1] ?? 0) * 3600 + Number(w[2]) * 60 + Number(w[3]) : NaN, cpu, rss, stdout: out });
    });
  });
}

const med = (xs) => median([...xs].sort((a, b) => a - b));
/** Busy and total jiffies of the whole machine (/proc/stat): how many cores were busy during a run, whoever used them. */
function cpuTimes() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}
async function withBusy(fn) {
  const a = cpuTimes();
  const r = await fn();
  const b = cpuTimes();
  return { ...r, busyCores: ((b.busy - a.busy) / (b.total - a.total)) * cpus().length };
}
const started = [];
let fleetInventory;
let snapshotMb = NaN;
const one = [];
const byLevel = new Map(levels.map((c) => [c, []]));
try {
  const bin = await ensureBinary({ flavor, version, env });
  const inventory = { clusters: {} };
  for (const name of names) {
    const t0 = Date.now();
    const file = join(stateDir, `${name}.yml`);
    started.push(name);
    const { lab } = await labUp({
      name,
      flavor,
      version,
      binary: bin.path,
      tls: true,
      nodes,
      inventory: file,
      env,
      onProgress: () => undefined,
    });
    const init = JSON.parse(readFileSync(lab.initFile, 'utf8'));
    const transport = new Transport({ tls: { caCert: lab.caCert }, timeoutMs: 60_000, retries: 0 });
    try {
      const client = new VaultClient({ address: lab.nodes[0].apiAddr, token: init.root_token, transport });
      await client.write('sys/mounts/kv', { type: 'kv', options: { version: '1' } });
      // Incompressible values, four writers at a time (as bench/backup.js): the snapshot is about `mb` MB.
      const entry = 512 * 1024;
      for (let written = 0, seq = 0; written < mb * 1024 * 1024;) {
        const batch = [];
        for (let k = 0; k < 4 && written < mb * 1024 * 1024; k++, written += entry)
          batch.push(client.write(`kv/fill/${seq++}`, { value: randomBytes((entry * 3) / 4).toString('base64') }));
        await Promise.all(batch);
      }
    } finally {
      transport.close();
    }
    Object.assign(inventory.clusters, parse(readFileSync(file, 'utf8')).clusters);
    log(
      `lab ${name}: ${flavor} ${version}, ${nodes} node(s), ~${mb} MB of KV data, in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );
  }
  fleetInventory = join(stateDir, 'fleet.yml');
  writeFileSync(fleetInventory, stringify(inventory));

  for (let r = 0; r < runs; r++) {
    const dir = join(stateDir, `out-${r}`);
    const single = await withBusy(() =>
      timed(['backup', '-i', fleetInventory, '--cluster', names[0], '--to', join(dir, 'one'), '--json', '--quiet']),
    );
    snapshotMb = JSON.parse(single.stdout).manifest.size / 1024 / 1024;
    one.push(single);
    for (const c of levels) {
      const res = await withBusy(() =>
        timed([
          'backup',
          '-i',
          fleetInventory,
          '--all-clusters',
          '--concurrency',
          String(c),
          '--to',
          join(dir, `c${c}`),
          '--json',
          '--quiet',
        ]),
      );
      const report = JSON.parse(res.stdout);
      byLevel.get(c).push({ ...res, perCluster: med(report.clusters.map((x) => x.duration_seconds)) });
    }
    rmSync(dir, { recursive: true, force: true });
    log(
      `run ${r + 1}/${runs}: one ${single.wall.toFixed(2)} s; ${levels.map((c) => `c=${c} ${byLevel.get(c).at(-1).wall.toFixed(2)} s`).join(', ')}`,
    );
  }
} finally {
  if (!keep) {
    for (const name of started)
      await labDestroy(name, () => undefined, env).catch((e) => log(`destroy ${name}: ${e.message}`));
    rmSync(stateDir, { recursive: true, force: true });
  } else log(`kept: VAULTOPS_STATE_DIR=${stateDir} (inventory ${fleetInventory})`);
}

const oneWall = med(one.map((x) => x.wall));
console.log(
  `\nFleet backups: ${n} clusters of ${flavor} ${version}, ${nodes} node(s) each${nodes === 1 ? ' (single-node labs: all servers and the client share this machine)' : ''}, ${cpus().length} CPUs,`,
);
console.log(
  `~${mb} MB of KV data each (snapshot ${snapshotMb.toFixed(1)} MB), median of ${runs} whole-process runs, alternated, to a local --to dir.`,
);
console.log(
  `one backup (one cluster): ${oneWall.toFixed(2)} s, vaultops CPU ${med(one.map((x) => x.cpu)).toFixed(2)} s, machine busy ${med(one.map((x) => x.busyCores)).toFixed(2)} of ${cpus().length} cores, peak RSS ${Math.max(...one.map((x) => x.rss)).toFixed(0)} MB\n`,
);
console.log(
  'concurrency  wall      ideal ceil(N/c) x one  wall / ideal  per-cluster backup (median)  vaultops CPU  machine busy  peak RSS',
);
for (const c of levels) {
  const xs = byLevel.get(c);
  const wall = med(xs.map((x) => x.wall));
  const ideal = Math.ceil(n / c) * oneWall;
  console.log(
    `${String(c).padEnd(12)} ${`${wall.toFixed(2)} s`.padEnd(9)} ${`${ideal.toFixed(2)} s`.padEnd(22)} ${`${(wall / ideal).toFixed(2)}x`.padEnd(13)} ${`${med(xs.map((x) => x.perCluster)).toFixed(2)} s`.padEnd(28)} ${`${med(xs.map((x) => x.cpu)).toFixed(2)} s`.padEnd(13)} ${`${med(xs.map((x) => x.busyCores)).toFixed(2)} cores`.padEnd(13)} ${Math.max(...xs.map((x) => x.rss)).toFixed(0)} MB`,
  );
}
console.log(
  '(wall / ideal = 1.00x is the goal; > 1 is slower than ideal. "one" includes process start (~0.3 s), paid once per fleet run: ideal counts it ceil(N/c) times.',
);
console.log(
  ' vaultops CPU = user + sys of the vaultops process; machine busy = cores in use during the run by anyone (servers producing',
);
console.log(
  ' the snapshots, vaultops verifying them, other work on the machine). When it is near the CPU count, the machine is the limit, not the concurrency.)',
);
