// Shared bits of the benchmarks: run the built CLI as a whole process and summarise timings.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const REPO = fileURLToPath(new URL('..', import.meta.url));
/** Node 24 from the npm `node` package, as users of the package run it. */
export const NODE = join(REPO, 'node_modules', '.bin', 'node');
export const CLI = join(REPO, 'bin', 'vaultops.js');

export function assertBuilt() {
  if (!existsSync(join(REPO, 'dist', 'cli', 'main.js'))) {
    process.stderr.write('dist/ is missing: run `npm run build` first.\n');
    process.exit(1);
  }
}

/** Runs `vaultops ARGS` and returns its wall time in seconds with its exit status and output. */
export function timeCli(args, options = {}) {
  const started = process.hrtime.bigint();
  const r = spawnSync(NODE, [CLI, ...args], { encoding: 'utf8', ...options });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { seconds, status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Nearest-rank percentile of already sorted values. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export function median(sorted) {
  const n = sorted.length;
  return n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

export function summary(values) {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, min: s[0], median: median(s), p90: percentile(s, 90), max: s[s.length - 1] };
}

export const fmt = (s) => `${s.toFixed(3)} s`;

export function argValue(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

/** `--name VALUE` from an argument list, else the default. */
export function option(args, name, dflt) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
}

/**
 * Fills a KV v1 mount at `kv/` with incompressible 512 KiB entries: the returned function tops the
 * total up to `mb` MB (growing sizes in turn). Four writers at a time: the server, not the client, is the limit.
 */
export function kvFiller(client) {
  const entry = 512 * 1024;
  let written = 0;
  let seq = 0;
  return async (mb) => {
    const want = mb * 1024 * 1024;
    while (written < want) {
      const batch = [];
      for (let k = 0; k < 4 && written < want; k++, written += entry)
        batch.push(client.write(`kv/fill/${seq++}`, { value: randomBytes((entry * 3) / 4).toString('base64') }));
      await Promise.all(batch);
    }
  };
}

/**
 * Runs a command under /usr/bin/time -v: wall seconds, peak RSS in MB and CPU-seconds (user + sys)
 * of the whole process. Rejects with the first lines of its stderr when it fails.
 */
export function timedProcess(cmd, argv, env) {
  return new Promise((resolve, reject) => {
    const p = spawn('/usr/bin/time', ['-v', cmd, ...argv], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (c) => (err += c));
    p.on('error', reject);
    p.on('close', (code) => {
      if (code !== 0)
        return reject(new Error(`${cmd} ${argv[0] ?? ''} exited ${code}: ${err.split('\n').slice(0, 8).join(' | ')}`));
      const num = (re) => Number(re.exec(err)?.[1] ?? NaN);
      const w = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)/.exec(err);
      resolve({
        wall: w ? Number(w[1] ?? 0) * 3600 + Number(w[2]) * 60 + Number(w[3]) : NaN,
        rss: num(/Maximum resident set size \(kbytes\): (\d+)/) / 1024,
        cpu: num(/User time \(seconds\): ([\d.]+)/) + num(/System time \(seconds\): ([\d.]+)/),
      });
    });
  });
}

/**
 * `--help` or `-h`: prints the calling script's opening comment, which is its usage, and exits before
 * any lab is started or benchmark run.
 */
export function helpFromHeader(scriptUrl) {
  const argv = process.argv.slice(2);
  if (!argv.includes('--help') && !argv.includes('-h')) return;
  const lines = readFileSync(new URL(scriptUrl), 'utf8').split('\n');
  const start = lines[0].startsWith('#!') ? 1 : 0;
  const usage = [];
  for (const line of lines.slice(start)) {
    if (!line.startsWith('//')) break;
    usage.push(line.replace(/^\/\/ ?/, ''));
  }
  process.stdout.write(`${usage.join('\n')}\n`);
  process.exit(0);
}
