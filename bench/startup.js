// Start-up time of the CLI: `vaultops --help` as a whole process (Node start, module loading, help
// output). Goal: median <= 0.3 s. Prints figures; asserts nothing.
//   node_modules/.bin/node bench/startup.js [--runs 15]
import { cpus } from 'node:os';
import { argValue, assertBuilt, fmt, NODE, summary, timeCli } from './common.js';

assertBuilt();
const runs = Number(argValue('--runs', '15'));
const warm = timeCli(['--help']);
if (warm.status !== 0) {
  process.stderr.write(`vaultops --help failed (exit ${warm.status}):\n${warm.stderr}`);
  process.exit(1);
}
const times = [];
for (let i = 0; i < runs; i++) times.push(timeCli(['--help']).seconds);
const s = summary(times);
const node = timeCli(['--version']).stdout.trim();
process.stdout.write(
  [
    `startup: vaultops --help, ${s.n} whole-process runs (after 1 warm-up of ${fmt(warm.seconds)})`,
    `  ${node}; runtime ${NODE}; ${cpus().length} CPUs, load ${(await import('node:os'))
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
    `  median ${fmt(s.median)}  p90 ${fmt(s.p90)}  min ${fmt(s.min)}  max ${fmt(s.max)}  (goal: median <= 0.300 s)`,
    '',
  ].join('\n'),
);
