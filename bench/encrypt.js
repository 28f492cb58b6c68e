// Cost of encrypting backups at rest: a generated stream of --size MB (default 1000, i.e. 1 GB)
// through the stages `vaultops backup` adds after the verifier (encryptor + sha256 of the stored
// bytes), and back through the decryptor a restore uses, for age and OpenPGP. Each phase runs in a
// process of its own so its peak RSS is its own. Prints MB/s (MB = 10^6 bytes) and peak RSS; asserts
// nothing. Needs `npm run build`. Run it alone: node_modules/.bin/node bench/encrypt.js [--size 1000]
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { assertBuilt, NODE, option, helpFromHeader } from './common.js';

helpFromHeader(import.meta.url);

const args = process.argv.slice(2);
const sizeMb = Number(option(args, 'size', '1000'));
const phase = option(args, 'phase', undefined);

/** `bytes` of data in 1 MiB pieces (one random block repeated: the ciphers' cost does not depend on content). */
function source(bytes) {
  const block = randomBytes(1 << 20);
  return Readable.from(
    (function* () {
      for (let left = bytes; left > 0; left -= block.length)
        yield left >= block.length ? block : block.subarray(0, left);
    })(),
    { objectMode: false },
  );
}
const nullSink = () => new Writable({ write: (_c, _e, cb) => cb() });

async function runPhase(name, dir) {
  const enc = await import('../dist/internal/backup/crypto/encryption.js');
  const bytes = sizeMb * 1e6;
  const [format, direction] = name.split('-');
  const cipherFile = join(dir, `data.${format}`);
  const started = process.hrtime.bigint();
  if (direction === 'encrypt') {
    const spec =
      format === 'age'
        ? { format: 'age', recipients: [readFileSync(join(dir, 'recipient.txt'), 'utf8').trim()] }
        : { format: 'openpgp', recipients: [join(dir, 'pub.asc')] };
    const stage = await enc.createEncryptStage(spec);
    await pipeline([source(bytes), ...stage.streams, createWriteStream(cipherFile)]);
  } else if (direction === 'decrypt') {
    const identity = await enc.parseIdentity({
      text: readFileSync(join(dir, format === 'age' ? 'identity.txt' : 'sec.asc'), 'utf8'),
      source: 'bench',
    });
    await pipeline(
      createReadStream(cipherFile, { highWaterMark: enc.READ_CHUNK }),
      enc.createDecryptStage({ format: format === 'age' ? 'age' : 'openpgp', armored: false }, identity),
      nullSink(),
    );
  } else {
    // Baseline: the same bytes through the sha256 tap alone, to a file, as an unencrypted backup writes them.
    const tap = enc.hashTap();
    await pipeline(source(bytes), tap.stream, createWriteStream(join(dir, 'plain')));
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const rssMb = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(`${JSON.stringify({ seconds, rssMb })}\n`);
}

async function main() {
  assertBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'vaultops-bench-encrypt-'));
  try {
    const { generateAgeIdentity } = await import('../dist/internal/backup/crypto/age.js');
    const openpgp = await import('openpgp');
    const age = generateAgeIdentity();
    writeFileSync(join(dir, 'identity.txt'), `${age.identity}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'recipient.txt'), `${age.recipient}\n`);
    const pgp = await openpgp.generateKey({
      type: 'ecc',
      curve: 'curve25519Legacy',
      userIDs: [{ name: 'bench', email: 'bench@example.com' }],
      format: 'armored',
    });
    writeFileSync(join(dir, 'pub.asc'), pgp.publicKey);
    writeFileSync(join(dir, 'sec.asc'), pgp.privateKey, { mode: 0o600 });
    process.stdout.write(`Encryption at rest, ${sizeMb} MB stream, node ${process.version}, one process per phase:\n`);
    process.stdout.write(`${'phase'.padEnd(18)}${'time'.padStart(9)}${'MB/s'.padStart(9)}${'peak RSS'.padStart(11)}\n`);
    for (const p of ['plain-write', 'age-encrypt', 'age-decrypt', 'openpgp-encrypt', 'openpgp-decrypt']) {
      const r = spawnSync(
        NODE,
        [fileURLToPath(import.meta.url), '--phase', p, '--size', String(sizeMb), '--dir', dir],
        { encoding: 'utf8', maxBuffer: 1 << 20 },
      );
      if (r.status !== 0) {
        process.stdout.write(`${p.padEnd(18)} failed: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}\n`);
        continue;
      }
      const { seconds, rssMb } = JSON.parse(r.stdout.trim().split('\n').pop());
      const extra = p.endsWith('encrypt')
        ? `  (stored ${(statSync(join(dir, `data.${p.split('-')[0]}`)).size / 1e6).toFixed(1)} MB)`
        : '';
      process.stdout.write(
        `${p.padEnd(18)}${`${seconds.toFixed(2)} s`.padStart(9)}${(sizeMb / seconds).toFixed(0).padStart(9)}${`${rssMb.toFixed(0)} MB`.padStart(11)}${extra}\n`,
      );
      if (p === 'plain-write') rmSync(join(dir, 'plain'), { force: true });
      if (p.endsWith('decrypt')) rmSync(join(dir, `data.${p.split('-')[0]}`), { force: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (phase) await runPhase(phase, option(args, 'dir', undefined));
else await main();
