#!/usr/bin/env node
// Memory and time of `vaultops backup` into an S3 store: a real cluster filled with --mb MB of
// incompressible KV data, a real S3 server (versitygw with its POSIX backend, as the integration tests
// build it into the cache), and the whole `vaultops backup --store s3` process under /usr/bin/time -v
// (wall time, peak RSS), with Node's defaults and as `vaultops schedule backup` runs it (node
// --max-semi-space-size=1). --cli names another build's bin/vaultops.js to compare two builds on the
// same cluster and data, runs alternated.
//
//   npm run build && node_modules/.bin/node bench/s3-backup.js [--mb 1024] [--runs 1] [--flavor openbao]
//                      [--cli /other/checkout/bin/vaultops.js] [--keep]
//
// Figures only; nothing is asserted.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify, parse } from 'yaml';
import { ensureBinary } from '../dist/internal/lab/binaries.js';
import { labDestroy, labUp } from '../dist/internal/lab/lab.js';
import { VaultClient } from '../dist/internal/vault/client.js';
import { Transport } from '../dist/internal/vault/transport.js';
import { assertBuilt, CLI, NODE, option, kvFiller, timedProcess, helpFromHeader } from './common.js';

helpFromHeader(import.meta.url);

assertBuilt();
const args = process.argv.slice(2);
const opt = (name, dflt) => option(args, name, dflt);
const flavor = opt('flavor', 'openbao');
const version = opt('version', flavor === 'openbao' ? '2.7.2' : '1.21.0');
const mb = Number(opt('mb', '1024'));
const runs = Number(opt('runs', '1'));
const keep = args.includes('--keep');
const builds = [{ label: 'this build', cli: CLI }];
if (opt('cli')) builds.push({ label: opt('cli'), cli: opt('cli') });

const cache = process.env.VAULTOPS_CACHE_DIR ?? join(homedir(), '.cache', 'vaultops');
const versitygw = join(cache, 'versitygw', 'v1.8.0', 'versitygw');
if (!existsSync(versitygw)) {
  process.stderr.write(`${versitygw} is missing: run test/integration/backup-s3.test.ts once (it builds it).\n`);
  process.exit(1);
}

const stateDir = mkdtempSync(join(tmpdir(), 'vaultops-bench-s3-'));
const env = { ...process.env, VAULTOPS_STATE_DIR: stateDir };
for (const k of Object.keys(env)) if (/^(VAULT|BAO)_|^(https?|no)_proxy$/i.test(k)) delete env[k];
const name = `b-s3-${flavor === 'openbao' ? 'bao' : 'vault'}`;
const log = (m) => process.stderr.write(`${new Date().toISOString()} ${m}\n`);

const freePort = () =>
  new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

const timed = timedProcess;

const bin = await ensureBinary({ flavor, version, env });
const inventory = join(stateDir, `${name}.yml`);
log(`lab ${name}: ${flavor} ${version}, 1 node...`);
const { lab } = await labUp({
  name,
  flavor,
  version,
  binary: bin.path,
  tls: true,
  nodes: 1,
  inventory,
  env,
  onProgress: () => undefined,
}).catch((e) => {
  rmSync(stateDir, { recursive: true, force: true });
  throw e;
});
const init = JSON.parse(readFileSync(lab.initFile, 'utf8'));
const transport = new Transport({ tls: { caCert: lab.caCert }, timeoutMs: 120_000, retries: 0 });
const leader = new VaultClient({ address: lab.nodes[0].apiAddr, token: init.root_token, transport });

// The S3 server: each directory under its root is a bucket.
const s3Root = join(stateDir, 's3');
mkdirSync(join(s3Root, 'bench'), { recursive: true });
const secret = randomBytes(16).toString('hex');
const port = await freePort();
const gw = spawn(versitygw, ['--port', `127.0.0.1:${port}`, 'posix', s3Root], {
  env: { PATH: process.env.PATH, ROOT_ACCESS_KEY: 'bench', ROOT_SECRET_KEY: secret },
  stdio: ['ignore', openSync(join(stateDir, 'versitygw.log'), 'a'), openSync(join(stateDir, 'versitygw.log'), 'a')],
});
const doc = parse(readFileSync(inventory, 'utf8'));
doc.clusters[name].stores = {
  s3: {
    type: 's3',
    endpoint: `http://127.0.0.1:${port}`,
    bucket: 'bench',
    access_key_id: 'bench',
    secret_access_key: 'env:BENCH_S3_SECRET',
  },
};
writeFileSync(inventory, stringify(doc));

const rows = [];
try {
  await leader.write('sys/mounts/kv', { type: 'kv', options: { version: '1' } });
  const t0 = Date.now();
  await kvFiller(leader)(mb);
  log(`filled to ~${mb} MB of KV data in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const childEnv = { ...env, BENCH_S3_SECRET: secret };
  for (let r = 0; r < runs; r++) {
    for (const b of builds) {
      for (const mode of ['default', 'scheduled']) {
        const node = mode === 'scheduled' ? ['--max-semi-space-size=1'] : [];
        const m = await timed(
          NODE,
          [...node, b.cli, 'backup', '-i', inventory, '--store', 's3', '--no-prune', '--quiet'],
          childEnv,
        );
        const row = { build: b.label, mode, run: r + 1, wall_s: +m.wall.toFixed(2), peak_rss_mb: +m.rss.toFixed(1) };
        rows.push(row);
        log(JSON.stringify(row));
      }
    }
  }
} finally {
  gw.kill('SIGTERM');
  transport.close();
  if (!keep) {
    await labDestroy(name, () => undefined, env);
    rmSync(stateDir, { recursive: true, force: true });
  } else log(`kept: VAULTOPS_STATE_DIR=${stateDir}`);
}

console.log(`\nvaultops backup into S3 (versitygw, http on 127.0.0.1), ~${mb} MB of KV data, ${flavor} ${version}:`);
console.log('build'.padEnd(50), 'node'.padEnd(10), 'run', 'wall'.padStart(9), 'peak RSS'.padStart(11));
for (const r of rows)
  console.log(
    r.build.padEnd(50),
    r.mode.padEnd(10),
    String(r.run).padStart(3),
    `${r.wall_s} s`.padStart(9),
    `${r.peak_rss_mb} MB`.padStart(11),
  );
console.log('(scheduled: node --max-semi-space-size=1, as `vaultops schedule backup` runs it)');
