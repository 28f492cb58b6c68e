// Wall time of `vaultops lab up --hosts` (3 systemd machines) from the command to a healthy cluster,
// and the memory of one machine: the sum of the resident sets of the processes in its pid
// namespace (systemd, journald, dbus, logind, sshd, the server) and the upper layer on disk.
// Each run starts from nothing in its own state dir and is destroyed afterwards. Needs root.
// Prints figures; asserts nothing. The binary is fetched first so download time is not counted.
//   node_modules/.bin/node bench/lab-up-hosts.js [--runs 2] [--flavor openbao] [--version 2.7.2]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { argValue, assertBuilt, fmt, summary, timeCli, helpFromHeader } from './common.js';
import { machinePid, readLab } from '../dist/internal/lab/lab.js';

helpFromHeader(import.meta.url);

assertBuilt();
const runs = Number(argValue('--runs', '2'));
const flavor = argValue('--flavor', 'openbao');
const version = argValue('--version', flavor === 'vault' ? '1.21.0' : '2.7.2');
const name = argValue('--name', 'bench-hosts');

const fetch = timeCli(['lab', 'fetch', '--flavor', flavor, '--version', version], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
if (fetch.status !== 0) process.exit(1);

function read(path) {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
function pidNs(pid) {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return '';
  }
}

/** RSS (KiB) per process name inside the machine whose PID 1 is `init` on this machine. */
function machineMemory(init) {
  const target = pidNs(init);
  const byName = {};
  let total = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || pidNs(Number(d)) !== target) continue;
    const status = read(`/proc/${d}/status`);
    const kib = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    const comm = /^Name:\s+(.*)$/m.exec(status)?.[1] ?? '?';
    byName[comm] = (byName[comm] ?? 0) + kib;
    total += kib;
  }
  return { total, byName };
}

const times = [];
const mems = [];
for (let i = 1; i <= runs; i++) {
  const state = mkdtempSync(join(tmpdir(), `vaultops-bench-${name}-`));
  const env = { ...process.env, VAULTOPS_STATE_DIR: state };
  const inventory = join(state, `${name}.yml`);
  try {
    const up = timeCli(
      ['lab', 'up', '--hosts', '--name', name, '--flavor', flavor, '--version', version, '--inventory', inventory],
      { env },
    );
    if (up.status !== 0) {
      process.stderr.write(`run ${i}: lab up --hosts failed (exit ${up.status}):\n${up.stderr}`);
      continue;
    }
    const status = timeCli(['status', '-i', inventory], { env });
    const healthy = status.status === 0 ? 'healthy' : `status exit ${status.status}`;
    times.push(up.seconds);
    const lab = readLab(name, env);
    const mem = machineMemory(machinePid(lab, 'n2'));
    mems.push(mem.total);
    const upper = execFileSync('du', ['-sk', '--exclude=usr/local/bin', join(lab.nodes[1].dir, 'upper')], {
      encoding: 'utf8',
    }).split('\t')[0];
    const top = Object.entries(mem.byName)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 6)
      .map(([k, v]) => `${k} ${(v / 1024).toFixed(0)}`)
      .join(', ');
    process.stdout.write(
      `run ${i}: lab up --hosts ${fmt(up.seconds)} (${healthy}); machine n2: RSS ${(mem.total / 1024).toFixed(0)} MiB (${top} MiB); upper layer ${(Number(upper) / 1024).toFixed(1)} MiB besides the binary\n`,
    );
  } finally {
    timeCli(['lab', 'destroy', '--name', name], { env });
    rmSync(state, { recursive: true, force: true });
  }
}
if (times.length) {
  const s = summary(times);
  const m = summary(mems.map((k) => k / 1024));
  process.stdout.write(
    [
      `lab-up-hosts: ${flavor} ${version}, ${s.n} runs, each from nothing to a healthy cluster of 3 systemd machines (TLS)`,
      `  ${cpus().length} CPUs, load ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
      `  wall: median ${fmt(s.median)}  min ${fmt(s.min)}  max ${fmt(s.max)}`,
      `  one machine's RSS: median ${m.median.toFixed(0)} MiB`,
      '',
    ].join('\n'),
  );
}
