// Wall time of `vaultops lab up` for OpenBao, from the command to a healthy cluster (3 voters,
// autopilot healthy, failure tolerance 1: `lab up` returns only then). Each run starts from
// nothing in its own state dir and is destroyed afterwards. Goal: <= 30 s.
// Prints figures; asserts nothing. The binary is fetched first so download time is not counted.
//   node_modules/.bin/node bench/lab-up.js [--runs 3] [--version 2.7.2] [--name bench-up]
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { argValue, assertBuilt, fmt, summary, timeCli, helpFromHeader } from './common.js';

helpFromHeader(import.meta.url);

assertBuilt();
const runs = Number(argValue('--runs', '3'));
const version = argValue('--version', '2.7.2');
const name = argValue('--name', 'bench-up');

const fetch = timeCli(['lab', 'fetch', '--flavor', 'openbao', '--version', version], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
if (fetch.status !== 0) process.exit(1);

const times = [];
for (let i = 1; i <= runs; i++) {
  const state = mkdtempSync(join(tmpdir(), `vaultops-bench-${name}-`));
  const env = { ...process.env, VAULTOPS_STATE_DIR: state };
  const inventory = join(state, `${name}.yml`);
  try {
    const up = timeCli(
      ['lab', 'up', '--name', name, '--flavor', 'openbao', '--version', version, '--inventory', inventory],
      { env },
    );
    if (up.status !== 0) {
      process.stderr.write(`run ${i}: lab up failed (exit ${up.status}):\n${up.stderr}`);
      continue;
    }
    const status = timeCli(['status', '-i', inventory], { env });
    const healthy = status.status === 0 ? 'healthy' : `status exit ${status.status}`;
    times.push(up.seconds);
    process.stdout.write(`run ${i}: lab up ${fmt(up.seconds)} (${healthy}; status took ${fmt(status.seconds)})\n`);
  } finally {
    timeCli(['lab', 'destroy', '--name', name], { env });
    rmSync(state, { recursive: true, force: true });
  }
}
if (times.length) {
  const s = summary(times);
  process.stdout.write(
    [
      `lab-up: OpenBao ${version}, ${s.n} runs, each from nothing to a healthy 3-node cluster (TLS)`,
      `  ${cpus().length} CPUs, load ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
      `  median ${fmt(s.median)}  min ${fmt(s.min)}  max ${fmt(s.max)}  (goal: <= 30 s)`,
      '',
    ].join('\n'),
  );
}
