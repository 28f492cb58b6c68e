#!/usr/bin/env node
// Client-visible availability during a rolling upgrade, on a real 3-node lab reached over SSH.
//
//   npm run build && node_modules/.bin/node bench/upgrade-probe.js [--flavor openbao|vault] [--from V] [--to V] [--hosts]
//                                                                   [--prestage] [--fetch] [--keep]
//
// --hosts: on a lab of systemd machines (`lab up --hosts`): the servers are stopped and started by
// their systemd units through `sudo -n systemctl`, as on production hosts.
// --lb (with --hosts): a real HAProxy in front (`lab up --hosts --lb haproxy`); the canary is read
// through it, as a client behind the load balancer reads, and retried once through it.
// --op reboot (with --hosts): `vaultops maintain --reboot` instead of the upgrade (a rolling reboot).
// --prestage: `vaultops upgrade --stage-only` first, timed on its own and outside the upgrade's wall
// time (staging ahead of the maintenance window); the upgrade then finds every binary staged.
// --fetch: `upgrade --fetch-on-hosts`: the new binary is served over HTTP from this machine (a child
// process, on the address the lab's hosts reach: the machines' bridge, or the first node's loopback
// address) and every host downloads it itself, checked there; nothing is uploaded over SSH.
//
// A canary secret is read at 20 Hz through the cluster: each read goes to the next node in turn
// (as a DNS round robin would send a client; standbys forward to the active node), and a failed read
// is retried once on the next node, as a client library would. /sys/health of every node is polled at
// 20 Hz as well. It prints leadership changes, the longest time without an active node, failed reads
// (first attempt, and after one retry), and the upgrade's wall time against its irreducible waits
// (per node stop + start + unseal + the stabilization time), with where the rest went: gates,
// staging, snapshot (the two overlap), between nodes, verify, and per node the catch-up.
// Figures only; nothing is asserted. --help prints this.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBinary } from '../dist/internal/lab/binaries.js';
import { labDestroy, labUp, readLab } from '../dist/internal/lab/lab.js';
import { VaultClient } from '../dist/internal/vault/client.js';
import { Transport } from '../dist/internal/vault/transport.js';
import { option } from './common.js';

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  // The usage is this file's opening comment.
  const text = readFileSync(new URL(import.meta.url), 'utf8');
  const usage = text
    .split('\n')
    .slice(1)
    .filter((l, i, all) => all.slice(0, i + 1).every((x) => x.startsWith('//')))
    .map((l) => l.replace(/^\/\/ ?/, ''));
  console.log(usage.join('\n'));
  process.exit(0);
}
const opt = (name, dflt) => option(args, name, dflt);
const flavor = opt('flavor', 'openbao');
const from = opt('from', flavor === 'openbao' ? '2.6.2' : '1.19.0');
const to = opt('to', flavor === 'openbao' ? '2.7.2' : '1.21.0');
const keep = args.includes('--keep');
const hosts = args.includes('--hosts') || args.includes('--lb');
const viaLb = args.includes('--lb');
const op = opt('op', 'upgrade');
const prestage = args.includes('--prestage');
const fetchOnHosts = args.includes('--fetch');
if (op !== 'upgrade' && op !== 'reboot') throw new Error(`--op ${op}: upgrade or reboot`);
if (op === 'reboot' && !hosts) throw new Error('--op reboot needs --hosts (a machine to reboot)');
const HZ = 20;
// A client's one retry goes to the next node after this pause (Vault's Go client waits >= 1 s by default).
const retryDelayMs = Number(opt('retry-delay-ms', '250'));

const stateDir = mkdtempSync(join(tmpdir(), 'vaultops-bench-upgrade-'));
const env = { ...process.env, VAULTOPS_STATE_DIR: stateDir };
const name = `c-bench-${flavor}`;
const log = (m) => process.stderr.write(`${new Date().toISOString()} ${m}\n`);

const oldBin = await ensureBinary({ flavor, version: from, env });
const newBin = await ensureBinary({ flavor, version: to, env });
const inventory = join(stateDir, `${name}.yml`);
log(`lab ${name}: ${flavor} ${from}, 3 ${hosts ? 'systemd machines' : 'nodes with sshd'}...`);
const CLI = join(import.meta.dirname, '..', 'bin', 'vaultops.js');
const cli = (cliArgs) =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...cliArgs], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.on('close', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`vaultops ${cliArgs[0]} exited ${code}`)),
    );
  });
let lab;
if (viaLb) {
  // The load balancer's configuration comes from the CLI (the lab layer does not render it).
  await cli([
    'lab',
    'up',
    '--hosts',
    '--lb',
    'haproxy',
    '--name',
    name,
    '--flavor',
    flavor,
    '--version',
    from,
    '--inventory',
    inventory,
  ]);
  lab = readLab(name, env);
} else {
  ({ lab } = await labUp({
    name,
    flavor,
    version: from,
    binary: oldBin.path,
    tls: true,
    inventory,
    env,
    ssh: !hosts,
    hosts,
    onProgress: () => undefined,
  }));
}
/** The mirror (a child process serving one file), for --fetch. */
let mirror;
async function serveBinary(file) {
  // Machines reach this machine on their bridge (10.213.K.1); loopback nodes on their own address.
  const host = hosts ? lab.nodes[0].ip.replace(/\.\d+$/, '.1') : lab.nodes[0].ip;
  const code = `const fs=require('fs');require('http').createServer((q,r)=>{r.setHeader('content-length',fs.statSync(process.argv[1]).size);fs.createReadStream(process.argv[1]).pipe(r)}).listen(0,process.argv[2],function(){console.log(this.address().port)})`;
  mirror = spawn(process.execPath, ['-e', code, file, host], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve) => mirror.stdout.once('data', (c) => resolve(String(c).trim())));
  log(`serving the new binary at http://${host}:${port}/ for --fetch-on-hosts`);
  return `http://${host}:${port}/${file.split('/').pop()}`;
}

const init = JSON.parse(readFileSync(lab.initFile, 'utf8'));
const transport = new Transport({ tls: { caCert: lab.caCert }, timeoutMs: 2000, retries: 0 });
const clients = lab.nodes.map(
  (n) => new VaultClient({ address: n.apiAddr, label: n.name, token: init.root_token, transport }),
);
const lbAddress = viaLb
  ? /address: "?([^"\s]+)/.exec(/load_balancer:[\s\S]*$/.exec(readFileSync(inventory, 'utf8'))[0])[1]
  : undefined;
const readers = lbAddress
  ? [new VaultClient({ address: lbAddress, label: 'lb', token: init.root_token, transport })]
  : clients;

try {
  await clients[0].write('sys/mounts/secret', { type: 'kv', options: { version: '2' } });
  // A new KV v2 mount answers 400 ("upgrading from non-versioned") for a moment: write until it takes.
  for (const deadline = Date.now() + 60_000; ;) {
    const wrote = await clients[0].write('secret/data/canary', { data: { value: 'canary-value' } }).then(
      () => true,
      (e) => {
        if (Date.now() > deadline) throw e;
        return false;
      },
    );
    if (wrote) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  // A new KV v2 mount answers 400 ("upgrading from non-versioned") on standbys for a moment: wait
  // until every node serves the canary, so the probe measures the upgrade and not the mount.
  for (const deadline = Date.now() + 60_000; ;) {
    const ok = await Promise.all(
      clients.map((c) =>
        c.read('secret/data/canary').then(
          (r) => r?.data?.data?.value === 'canary-value',
          () => false,
        ),
      ),
    );
    if (ok.every(Boolean)) break;
    if (Date.now() > deadline) throw new Error('the canary did not become readable on every node within 60 s');
    await new Promise((r) => setTimeout(r, 200));
  }

  const probe = {
    failures: [],
    reads: 0,
    firstFail: 0,
    retryFail: 0,
    changes: [],
    noActiveMs: 0,
    longestNoActiveMs: 0,
    samples: 0,
  };
  let rr = 0;
  let started = Date.now();
  let running = true;
  const readLoop = (async () => {
    while (running) {
      const t = Date.now();
      const a = rr++ % readers.length;
      probe.reads++;
      let why = '';
      // One read as a client does it: GET, following one 307 (a standby that cannot forward redirects to the active node).
      const ok = async (c, hop = 0) => {
        try {
          const r = await c.raw('GET', '/secret/data/canary');
          if (r.status === 307 && hop === 0 && typeof r.headers.location === 'string') {
            const to = clients.find((x) => new URL(r.headers.location).host === new URL(x.address).host);
            if (to) return await ok(to, 1);
          }
          const body = r.status === 200 ? JSON.parse(r.body.toString('utf8')) : undefined;
          if (body?.data?.data?.value === 'canary-value') return true;
          why += `${c.label}: ${r.status}; `;
          return false;
        } catch (e) {
          why += `${c.label}: ${String(e.message).slice(0, 140)}; `;
          return false;
        }
      };
      if (!(await ok(readers[a]))) {
        probe.firstFail++;
        await new Promise((r) => setTimeout(r, retryDelayMs));
        if (!(await ok(readers[(a + 1) % readers.length]))) {
          probe.retryFail++;
          probe.failures.push(`+${((t - started) / 1000).toFixed(2)} s ${why}`);
        }
      }
      await new Promise((r) => setTimeout(r, Math.max(0, 1000 / HZ - (Date.now() - t))));
    }
  })();
  let lastActive;
  let noActiveSince;
  const healthLoop = (async () => {
    while (running) {
      const t = Date.now();
      const states = await Promise.all(
        clients.map((c) =>
          c.health().then(
            (h) => h.state,
            () => 'down',
          ),
        ),
      );
      probe.samples++;
      const activeIdx = states.indexOf('active');
      const active = activeIdx >= 0 ? lab.nodes[activeIdx].name : undefined;
      if (active === undefined) noActiveSince ??= t;
      else {
        if (noActiveSince !== undefined) {
          const gap = t - noActiveSince;
          probe.noActiveMs += gap;
          probe.longestNoActiveMs = Math.max(probe.longestNoActiveMs, gap);
          noActiveSince = undefined;
        }
        if (lastActive !== undefined && active !== lastActive)
          probe.changes.push(`${lastActive} -> ${active} at +${((t - started) / 1000).toFixed(2)} s`);
        lastActive = active;
      }
      await new Promise((r) => setTimeout(r, Math.max(0, 1000 / HZ - (Date.now() - t))));
    }
  })();

  const sha = createHash('sha256').update(readFileSync(newBin.path)).digest('hex');
  const binaryArg = fetchOnHosts ? await serveBinary(newBin.path) : newBin.path;
  const upgradeArgs = ['upgrade', '-i', inventory, '--binary', binaryArg, '--sha256', sha];
  if (fetchOnHosts) upgradeArgs.push('--fetch-on-hosts');
  let prestageMs;
  if (prestage && op === 'upgrade') {
    log('staging ahead (upgrade --stage-only)...');
    const t0 = Date.now();
    await cli([...upgradeArgs, '--stage-only', '--non-interactive', '--confirm', name, '--json']);
    prestageMs = Date.now() - t0;
  }
  started = Date.now();
  let result;
  if (op === 'reboot') {
    log('rolling reboot (vaultops maintain --reboot) with the probe running...');
    await cli(['maintain', '-i', inventory, '--reboot', '--non-interactive', '--confirm', name]);
    result = { wallMs: Date.now() - started };
  } else {
    log(`upgrade ${from} -> ${to} with the probe running...`);
    const out = await cli([...upgradeArgs, '--non-interactive', '--confirm', name, '--json']);
    result = JSON.parse(out);
  }
  await new Promise((r) => setTimeout(r, 2000));
  running = false;
  await Promise.all([readLoop, healthLoop]);

  const where = hosts
    ? `systemd machines (sudo -n systemctl)${viaLb ? `, reads through HAProxy at ${lbAddress}` : ''}`
    : 'nodes, upgrade over SSH (lab sshd)';
  const what =
    op === 'reboot'
      ? `${flavor} ${from}, rolling reboot (maintain --reboot)`
      : `${flavor} ${from} -> ${to}${fetchOnHosts ? ', each host downloading the binary (--fetch-on-hosts)' : ''}`;
  if (op === 'reboot') {
    console.log(`\n${what}, 3 ${where}, probe ${HZ} Hz`);
    console.log(`  leadership changes:            ${probe.changes.length} (${probe.changes.join('; ') || 'none'})`);
    console.log(`  longest time without active:   ${probe.longestNoActiveMs} ms (total ${probe.noActiveMs} ms)`);
    console.log(
      `  canary reads:                  ${probe.reads}; failed first attempt ${probe.firstFail}; failed after one retry (${retryDelayMs} ms later) ${probe.retryFail}`,
    );
    console.log(`  rolling reboot wall time:      ${(result.wallMs / 1000).toFixed(1)} s`);
    for (const f of probe.failures) console.log(`    read failed twice ${f}`);
  } else {
    const t = result.timings;
    const sum = (f) => t.reduce((a, x) => a + (x[f] ?? 0), 0);
    // The stabilization time is irreducible whether it runs during the catch-up (from when autopilot
    // was first seen reporting the node a healthy voter) or as a pause after it.
    const stabilization = t.every((x) => x.stabilizationTimeMs !== undefined)
      ? sum('stabilizationTimeMs')
      : sum('stabilizationMs');
    const irreducible = sum('stopMs') + sum('startMs') + sum('unsealMs') + stabilization;
    const nodePhase = sum('totalMs');
    console.log(`\n${what}, 3 ${where}, probe ${HZ} Hz`);
    console.log(`  leadership changes:            ${probe.changes.length} (${probe.changes.join('; ') || 'none'})`);
    console.log(
      `  longest time without active:   ${probe.longestNoActiveMs} ms (total ${probe.noActiveMs} ms; health sampled every ${1000 / HZ} ms, so +-${1000 / HZ} ms)`,
    );
    console.log(
      `  canary reads:                  ${probe.reads}; failed first attempt ${probe.firstFail}; failed after one retry (${retryDelayMs} ms later, next node) ${probe.retryFail}`,
    );
    if (prestageMs !== undefined)
      console.log(
        `  staged ahead (--stage-only):   ${(prestageMs / 1000).toFixed(1)} s (its own run; not in the wall time below)`,
      );
    console.log(
      `  upgrade wall time:             ${(result.wallMs / 1000).toFixed(1)} s (of which nodes ${(nodePhase / 1000).toFixed(1)} s; staging + gates + snapshot ${((result.wallMs - nodePhase) / 1000).toFixed(1)} s)`,
    );
    console.log(
      `  irreducible waits:             ${(irreducible / 1000).toFixed(1)} s (stop ${sum('stopMs')} + start ${sum('startMs')} + unseal ${sum('unsealMs')} + stabilization ${stabilization} ms)`,
    );
    console.log(
      `  node phase / irreducible:      ${(nodePhase / irreducible).toFixed(2)}   whole run / irreducible: ${(result.wallMs / irreducible).toFixed(2)}`,
    );
    const ph = result.phases;
    if (ph)
      console.log(
        `  outside the nodes (ms):        gates ${ph.gatesMs}, staging ${ph.stagingMs}, snapshot ${ph.snapshotMs} (start -> first node down ${ph.untilFirstNodeMs}); between nodes ${ph.betweenNodesMs}${ph.stagingWaitMs !== undefined ? ` (of which waiting for a node's background staging ${ph.stagingWaitMs})` : ''}; verify ${ph.verifyMs}`,
      );
    for (const f of probe.failures) console.log(`    read failed twice ${f}`);
    for (const x of t)
      console.log(
        `    ${x.node} (${x.role}): stop ${x.stopMs}${x.failoverMs !== undefined ? `, failover ${x.failoverMs}` : ''}, start ${x.startMs}, unseal ${x.unsealMs}, catch-up ${x.catchUpMs}, stabilization ${x.stableBeforeReadyMs !== undefined ? `${x.stableBeforeReadyMs} during catch-up + ` : ''}${x.stabilizationMs}, total ${x.totalMs} ms`,
      );
  }
} finally {
  transport.close();
  mirror?.kill();
  if (!keep) {
    if (viaLb) await cli(['lab', 'destroy', '--name', name]);
    else await labDestroy(name, () => undefined, env);
    rmSync(stateDir, { recursive: true, force: true });
  } else log(`kept: VAULTOPS_STATE_DIR=${stateDir}`);
}
