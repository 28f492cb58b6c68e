#!/usr/bin/env node
// `npm run bench`: vaultops against the official CLI (bao or vault from ~/.cache/vaultops), side by
// side, runs alternated, on the same machine, cluster and data; prints ONE table of medians and ratios.
//
//   npm run build && npm run bench -- [--sizes 10,100,1000] [--runs 3] [--startup-runs 21]
//                                     [--flavor openbao|vault] [--version V] [--no-restore] [--upgrade] [--keep]
//
// Rows:
//   start-up   `vaultops --help` and `vaultops status --help` against a bare `node -e 0` on the same
//              Node (the goal is <= 1.4x), and `vaultops --version` against the official `version`.
//   backup     at each size (MB of incompressible KV data written first, as bench/backup.js does):
//              `vaultops backup` (streamed to disk, fully verified) against `operator raft snapshot save`.
//   restore    at each size: `vaultops restore --from` (verify, safety snapshot, upload, wait until the
//              cluster is healthy again) against `operator raft snapshot restore` plus the same wait
//              (every node unsealed and a voter, autopilot healthy), timed from the outside.
//   upgrade    with --upgrade: bench/upgrade-probe.js (minutes); its whole run over its irreducible
//              waits (stop, start, unseal, stabilization). As root with systemd-nspawn, on systemd
//              machines twice: the binary uploaded in the run, and --fetch-on-hosts; else once on
//              nodes with their own sshd. Left out by default.
// Time is whole-process wall time; peak RSS from /usr/bin/time -v. Figures only; nothing is asserted.
// The default run (10, 100, 1000 MB, 3 runs each) takes about 10 minutes on 2 cores.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { assertBuilt, CLI, NODE, option, REPO, summary, kvFiller, timedProcess } from './common.js';

assertBuilt();
const { ensureBinary } = await import('../dist/internal/lab/binaries.js');
const { labDestroy, labUp } = await import('../dist/internal/lab/lab.js');
const { VaultClient } = await import('../dist/internal/vault/client.js');
const { Transport } = await import('../dist/internal/vault/transport.js');

const args = process.argv.slice(2);
const opt = (name, dflt) => option(args, name, dflt);
const flavor = opt('flavor', 'openbao');
const version = opt('version', flavor === 'openbao' ? '2.7.2' : '1.21.0');
const sizes = opt('sizes', '10,100,1000').split(',').map(Number);
const runs = Number(opt('runs', '3'));
const startupRuns = Number(opt('startup-runs', '21'));
const withRestore = !args.includes('--no-restore');
const withUpgrade = args.includes('--upgrade');
const keep = args.includes('--keep');
if (sizes.some((s) => !(s > 0)) || !(runs > 0) || !(startupRuns > 0)) {
  process.stderr.write('usage: npm run bench -- [--sizes 10,100,1000] [--runs 3] [--startup-runs 21]\n');
  process.exit(2);
}
const official = flavor === 'openbao' ? 'bao' : 'vault';
const log = (m) => process.stderr.write(`${new Date().toISOString()} ${m}\n`);
const med = (xs) => summary(xs).median;

const stateDir = mkdtempSync(join(tmpdir(), 'vaultops-bench-compare-'));
const env = { ...process.env, VAULTOPS_STATE_DIR: stateDir };
for (const k of Object.keys(env)) if (/^(VAULT|BAO)_/.test(k)) delete env[k];
const bin = await ensureBinary({ flavor, version, env });

const timed = timedProcess;

/** Whole-process wall time of a short command, in ms (spawnSync, no /usr/bin/time in between). */
function quick(cmd, argv, childEnv) {
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, argv, { env: childEnv, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

const rows = []; // [what, vaultops, official or baseline, ratio, note]
const s = (x) => `${x.toFixed(2)} s`;
const ms = (x) => `${x.toFixed(1)} ms`;

// ---- start-up: alternated, after one warm-up each (the compile cache is filled by the first run).
{
  const officialEnv = { PATH: process.env.PATH, HOME: stateDir };
  const cases = [
    ['node -e 0', () => quick(NODE, ['-e', '0'], env)],
    ['vaultops --help', () => quick(NODE, [CLI, '--help'], env)],
    ['vaultops status --help', () => quick(NODE, [CLI, 'status', '--help'], env)],
    ['vaultops --version', () => quick(NODE, [CLI, '--version'], env)],
    [`${official} version`, () => quick(bin.path, ['version'], officialEnv)],
  ];
  for (const [, f] of cases) f();
  const t = cases.map(() => []);
  for (let r = 0; r < startupRuns; r++) cases.forEach(([, f], i) => t[i].push(f()));
  const [bare, help, statusHelp, ver, theirs] = t.map(med);
  rows.push(['start-up: --help vs node -e 0', ms(help), ms(bare), help / bare, 'goal <= 1.40']);
  rows.push(['start-up: status --help vs node -e 0', ms(statusHelp), ms(bare), statusHelp / bare, 'goal <= 1.40']);
  rows.push([`start-up: --version vs ${official} version`, ms(ver), ms(theirs), ver / theirs, '']);
  log(`start-up done (${startupRuns} runs each)`);
}

// ---- one lab for backup and restore.
const name = `b-cmp-${official}`;
const inventory = join(stateDir, `${name}.yml`);
log(`lab ${name}: ${flavor} ${version}, 3 nodes...`);
const { lab } = await labUp({
  name,
  flavor,
  version,
  binary: bin.path,
  tls: true,
  nodes: 3,
  inventory,
  env,
  onProgress: () => undefined,
}).catch((e) => {
  rmSync(stateDir, { recursive: true, force: true });
  throw e;
});
const init = JSON.parse(readFileSync(lab.initFile, 'utf8'));
const transport = new Transport({ tls: { caCert: lab.caCert }, timeoutMs: 60_000, retries: 0 });
const client = new VaultClient({ address: lab.nodes[0].apiAddr, token: init.root_token, transport });
const officialEnv = {
  PATH: process.env.PATH,
  HOME: stateDir,
  VAULT_ADDR: lab.nodes[0].apiAddr,
  VAULT_CACERT: lab.caCert,
  VAULT_TOKEN: init.root_token,
};

/** What `vaultops restore` waits for, polled from the outside: every node unsealed and a voter, autopilot healthy. */
async function waitHealthy(timeoutMs = 180_000) {
  const deadline = Date.now() + timeoutMs;
  const nodes = lab.nodes.map((n) => new VaultClient({ address: n.apiAddr, token: init.root_token, transport }));
  let seen = 'no answer yet';
  for (;;) {
    try {
      const sealed = await Promise.all(nodes.map((n) => n.sealStatus().then((r) => r.sealed)));
      const ap = await client.autopilotState();
      if (!sealed.some(Boolean) && ap.healthy && (ap.voters?.length ?? 0) === 3) return;
      seen = `sealed ${sealed.join('/')}, autopilot healthy ${ap.healthy}, ${ap.voters?.length ?? 0} voters`;
    } catch (e) {
      seen = String(e?.message ?? e).split('\n')[0]; // Not back yet.
    }
    if (Date.now() > deadline)
      throw new Error(`the cluster did not come back healthy within ${timeoutMs / 1000} s (last seen: ${seen})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// A step that fails ends the sizes but not the bench: its row says so, the rows measured before it
// and the upgrade rows are still printed, and the exit code is 1.
let step = 'lab set-up';
try {
  await client.write('sys/mounts/kv', { type: 'kv', options: { version: '1' } });
  const fill = kvFiller(client);
  for (const mb of [...sizes].sort((a, b) => a - b)) {
    step = `backup ${mb} MB`;
    const t0 = Date.now();
    await fill(mb);
    log(`filled to ~${mb} MB of KV data in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const outDir = join(stateDir, `out-${mb}`);
    mkdirSync(outDir, { recursive: true });
    const ours = [];
    const theirs = [];
    let snapBytes = 0;
    let keptOfficial;
    let keptOurs;
    let keptFiles;
    for (let r = 0; r < runs; r++) {
      const file = join(outDir, `official-${r}.snap`);
      theirs.push(await timed(bin.path, ['operator', 'raft', 'snapshot', 'save', file], officialEnv));
      snapBytes = statSync(file).size;
      if (keptOfficial) rmSync(file);
      else keptOfficial = file;
      const dir = join(outDir, `ours-${r}`);
      ours.push(await timed(NODE, [CLI, 'backup', '-i', inventory, '--to', dir, '--quiet'], env));
      const snap = readdirSync(dir).find((x) => x.endsWith('.snap'));
      if (!snap) throw new Error('vaultops backup wrote no snapshot');
      if (keptOurs) rmSync(dir, { recursive: true });
      else {
        keptOurs = join(dir, snap);
        keptFiles = new Set(readdirSync(dir));
      }
    }
    const size = `${(snapBytes / 1024 / 1024).toFixed(0)} MB`;
    const [ow, tw] = [med(ours.map((x) => x.wall)), med(theirs.map((x) => x.wall))];
    const rss = (xs) => Math.max(...xs.map((x) => x.rss)).toFixed(0);
    rows.push([
      `backup ${size} (snapshot save)`,
      s(ow),
      s(tw),
      ow / tw,
      `MB/s ${(snapBytes / 1048576 / ow).toFixed(0)} vs ${(snapBytes / 1048576 / tw).toFixed(0)}; peak RSS ${rss(ours)} vs ${rss(theirs)} MB`,
    ]);
    log(`backup ${size}: vaultops ${s(ow)}, ${official} ${s(tw)}`);

    if (withRestore) {
      step = `restore ${size}`;
      const ourRestores = [];
      const theirRestores = [];
      for (let r = 0; r < runs; r++) {
        const t = process.hrtime.bigint();
        await timed(bin.path, ['operator', 'raft', 'snapshot', 'restore', keptOfficial], officialEnv);
        await waitHealthy();
        theirRestores.push(Number(process.hrtime.bigint() - t) / 1e9);
        const ranOurs = await timed(
          NODE,
          [CLI, 'restore', '-i', inventory, '--from', keptOurs, '--confirm', name, '--non-interactive', '--quiet'],
          env,
        );
        ourRestores.push(ranOurs.wall);
        // Each restore leaves its safety snapshot next to the file restored: not part of the next run.
        const dir = dirname(keptOurs);
        for (const f of readdirSync(dir)) if (!keptFiles.has(f)) rmSync(join(dir, f), { recursive: true, force: true });
      }
      const [orr, trr] = [med(ourRestores), med(theirRestores)];
      rows.push([
        `restore ${size} (snapshot restore + wait)`,
        s(orr),
        s(trr),
        orr / trr,
        'vaultops also verifies the file and takes a safety snapshot',
      ]);
      log(`restore ${size}: vaultops ${s(orr)}, ${official} ${s(trr)}`);
    }
    rmSync(outDir, { recursive: true, force: true });
  }
} catch (e) {
  log(`${step} failed: ${e?.message ?? e}`);
  rows.push([step, 'failed', '', NaN, String(e?.message ?? e).split('\n')[0]]);
  process.exitCode = 1;
} finally {
  transport.close();
  if (!keep) {
    await labDestroy(name, () => undefined, env);
    rmSync(stateDir, { recursive: true, force: true });
  } else log(`kept: VAULTOPS_STATE_DIR=${stateDir}`);
}

if (withUpgrade) {
  // On systemd machines when this machine can boot them (root, systemd-nspawn), as production hosts
  // run: once with the binary uploaded over SSH in the run, once with each host downloading it
  // (--fetch-on-hosts, from a mirror on the lab network). Else on nodes with their own sshd.
  const machines = process.getuid?.() === 0 && existsSync('/usr/bin/systemd-nspawn');
  const variants = machines
    ? [
        ['rolling upgrade, 3 nodes, upload in the run', ['--hosts']],
        ['rolling upgrade, 3 nodes, --fetch-on-hosts', ['--hosts', '--fetch']],
      ]
    : [['rolling upgrade, 3 nodes (wall / waits)', []]];
  for (const [label, extra] of variants) {
    log(`${label}: bench/upgrade-probe.js ${extra.join(' ')} (minutes)...`);
    const r = spawnSync(NODE, [join(REPO, 'bench', 'upgrade-probe.js'), '--flavor', flavor, ...extra], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const m = /irreducible waits:\s+([\d.]+) s[\s\S]*whole run \/ irreducible: ([\d.]+)/.exec(r.stdout ?? '');
    if (r.status === 0 && m) {
      const irreducible = Number(m[1]);
      const ratio = Number(m[2]);
      rows.push([label, s(irreducible * ratio), s(irreducible), ratio, 'wall / irreducible waits; goal <= 1.30']);
    } else {
      rows.push([label, 'failed', '', NaN, `upgrade-probe exited ${r.status}`]);
      process.exitCode = 1;
    }
  }
}

const head = ['', 'vaultops', `${official} / baseline`, 'ratio', ''];
const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (i === 3 ? `${r[3].toFixed(2)}x` : r[i]).length)));
const line = (cells) => cells.map((c, i) => (i === 0 || i === 4 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
console.log(
  `\nvaultops vs ${official} ${version} (${flavor}), 3-node TLS lab, ${cpus().length} CPUs, load ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}; medians of ${runs} alternated runs (start-up: ${startupRuns}); node ${process.versions.node}`,
);
console.log(line(head).trimEnd());
for (const r of rows)
  console.log(line([r[0], r[1], r[2], Number.isNaN(r[3]) ? '' : `${r[3].toFixed(2)}x`, r[4]]).trimEnd());
console.log(
  'ratio = vaultops time / the other column (lower is better; < 1 means vaultops is faster). Rolling upgrade: ' +
    (withUpgrade
      ? 'wall over irreducible waits, from bench/upgrade-probe.js.'
      : 'left out; add --upgrade (runs bench/upgrade-probe.js).'),
);
