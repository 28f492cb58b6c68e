// `node_modules/.bin/node bench/run.js [startup|lab-up|backup|fleet|upgrade-probe|encrypt|s3-backup ...]`: runs benchmarks one after another
// (the quick ones, startup and lab-up, by default; backup, fleet, upgrade-probe and s3-backup take minutes;
// encrypt needs no server and about a minute).
// Each prints its own figures; nothing is asserted. Per file: node_modules/.bin/node bench/<name>.js.
// `npm run bench` is bench/compare.js: vaultops against the official CLI in one table.
import { spawnSync } from 'node:child_process';
import { NODE, REPO, helpFromHeader } from './common.js';
import { join } from 'node:path';

helpFromHeader(import.meta.url);

const all = ['startup', 'lab-up', 'backup', 'fleet', 'upgrade-probe', 'encrypt', 's3-backup'];
const quick = ['startup', 'lab-up'];
// Names first, then options passed on to every benchmark: node bench/run.js lab-up --runs 5
const args = process.argv.slice(2);
const firstOption = args.findIndex((a) => a.startsWith('-'));
const wanted = firstOption < 0 ? args : args.slice(0, firstOption);
const options = firstOption < 0 ? [] : args.slice(firstOption);
const names = wanted.length ? wanted : quick;
let failed = 0;
for (const name of names) {
  if (!all.includes(name)) {
    process.stderr.write(`unknown benchmark "${name}"; known: ${all.join(', ')}\n`);
    process.exit(2);
  }
  process.stdout.write(`== ${name}\n`);
  const r = spawnSync(NODE, [join(REPO, 'bench', `${name}.js`), ...options], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
