import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/core/exit-codes.js';
import { createEncryptStage, encryptionSpecFromFlags } from '../../src/backup/crypto/encryption.js';
import { CliRunner } from '../helpers/cli.js';
import { snapshotFixture } from '../helpers/snapshot-fixture.js';

/**
 * Encryption at rest against the real tools an operator has: `age` / `age-keygen` (Debian package
 * age) and `gpg` (gnupg). Files vaultops encrypts open with them, files they encrypt open with
 * vaultops (`backups verify --identity` through the built CLI, which decrypts into the snapshot
 * verifier), and damaged files or wrong keys are refused with the exit code and message an
 * operator acts on. No cluster is needed: the snapshot is a Raft-shaped fixture; the restore from
 * an encrypted backup is in backup-encryption.test.ts on a real lab.
 */
describe('encrypted backups interoperate with age and gpg, and damaged files or wrong keys are refused', () => {
  let dir: string;
  let cli: CliRunner;
  let plain: Buffer;
  let ageId: string;
  let ageRecipient: string;
  let otherAgeId: string;
  const passphrase = `pass-${Math.random().toString(36).slice(2, 12)}`;
  const secrets: string[] = [];
  const gpgEnv = () => ({ ...process.env, GNUPGHOME: join(dir, 'gnupg') });
  const gpg = (args: string[], input?: Buffer) =>
    execFileSync('gpg', ['--batch', '--yes', '--quiet', '--trust-model', 'always', ...args], {
      env: gpgEnv(),
      input,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  const path = (name: string) => join(dir, name);

  /** Encrypts `data` with vaultops' own stage, as `vaultops backup` does after the verifier. */
  const vaultopsEncrypt = async (recipients: string[], file: string, data = plain) => {
    const stage = await createEncryptStage(encryptionSpecFromFlags(recipients, dir));
    await pipeline([Readable.from([data]), ...stage.streams, createWriteStream(file)]);
    return stage.result();
  };
  const flip = (file: string, out: string, at = 0.5) => {
    const b = readFileSync(file);
    b[Math.floor(b.length * at)]! ^= 0x40;
    writeFileSync(out, b);
    return out;
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vaultops-enc-tools-'));
    mkdirSync(join(dir, 'gnupg'), { mode: 0o700 });
    cli = new CliRunner({ env: { ...process.env, GNUPGHOME: join(dir, 'gnupg'), VO_TEST_PASS: passphrase }, cwd: dir });
    plain = snapshotFixture({ stateBytes: 300_000 });
    writeFileSync(path('plain.snap'), plain);

    execFileSync('age-keygen', ['-o', path('id.txt')], { stdio: 'pipe' });
    execFileSync('age-keygen', ['-o', path('other.txt')], { stdio: 'pipe' });
    chmodSync(path('id.txt'), 0o600);
    chmodSync(path('other.txt'), 0o600);
    ageId = readFileSync(path('id.txt'), 'utf8')
      .split('\n')
      .find((l) => l.startsWith('AGE-SECRET-KEY-'))!;
    otherAgeId = readFileSync(path('other.txt'), 'utf8')
      .split('\n')
      .find((l) => l.startsWith('AGE-SECRET-KEY-'))!;
    ageRecipient = execFileSync('age-keygen', ['-y', path('id.txt')], { encoding: 'utf8' }).trim();
    writeFileSync(path('recipients.txt'), `# backup operators\n${ageRecipient}\n`);

    gpg(['--passphrase', '', '--quick-gen-key', 'Backup Ops <ops@example.com>', 'default', 'default', 'never']);
    gpg([
      '--passphrase',
      passphrase,
      '--pinentry-mode',
      'loopback',
      '--quick-gen-key',
      'Backup DR <dr@example.com>',
      'default',
      'default',
      'never',
    ]);
    writeFileSync(path('ops.asc'), gpg(['--armor', '--export', 'ops@example.com']));
    writeFileSync(path('dr.asc'), gpg(['--armor', '--export', 'dr@example.com']));
    writeFileSync(
      path('ops-secret.asc'),
      gpg(['--armor', '--pinentry-mode', 'loopback', '--passphrase', '', '--export-secret-keys', 'ops@example.com']),
      { mode: 0o600 },
    );
    writeFileSync(
      path('dr-secret.asc'),
      gpg([
        '--armor',
        '--pinentry-mode',
        'loopback',
        '--passphrase',
        passphrase,
        '--export-secret-keys',
        'dr@example.com',
      ]),
      { mode: 0o600 },
    );
    const armorLines = (f: string) =>
      readFileSync(path(f), 'utf8')
        .split('\n')
        .filter((l) => /^[A-Za-z0-9+/=]{40,}$/.test(l));
    secrets.push(ageId, otherAgeId, passphrase, ...armorLines('ops-secret.asc'), ...armorLines('dr-secret.asc'));
  });
  afterAll(() => {
    try {
      if (cli?.log.length) cli.expectNoSecrets(secrets);
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a vaultops age file opens with `age -d -i KEYFILE` to the exact snapshot, which `backups verify` accepts', async () => {
    const enc = await vaultopsEncrypt(['recipients.txt'], path('v.snap.age'));
    expect(enc).toMatchObject({ format: 'age', recipients: [ageRecipient] });
    const out = execFileSync('age', ['-d', '-i', path('id.txt'), path('v.snap.age')]);
    expect(out.equals(plain)).toBe(true);
    writeFileSync(path('v-decrypted.snap'), out);
    const r = await cli.run(['backups', 'verify', path('v-decrypted.snap')]);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
  });

  it('a vaultops OpenPGP file opens with `gpg --decrypt` (either recipient) to the exact snapshot', async () => {
    const enc = await vaultopsEncrypt(['ops.asc', 'dr.asc'], path('v.snap.pgp'));
    expect(enc.format).toBe('openpgp');
    expect(enc.recipients).toHaveLength(2);
    expect(enc.recipients.every((f) => /^[0-9A-F]{40}$/.test(f))).toBe(true);
    const out = gpg(['--decrypt', path('v.snap.pgp')]);
    expect(out.equals(plain)).toBe(true);
  });

  it('`backups verify --identity` decrypts files made by `age -r` and by `gpg --encrypt` (binary, armored, passphrase-protected key) and checks the snapshot inside', async () => {
    execFileSync('age', ['-r', ageRecipient, '-o', path('a.snap.age'), path('plain.snap')]);
    gpg(['-r', 'ops@example.com', '--encrypt', '-o', path('g.snap.pgp'), path('plain.snap')]);
    gpg(['-r', 'ops@example.com', '--armor', '--encrypt', '-o', path('g.snap.asc'), path('plain.snap')]);
    gpg(['-r', 'dr@example.com', '--encrypt', '-o', path('dr.snap.pgp'), path('plain.snap')]);
    const cases: Array<[string, string[]]> = [
      ['a.snap.age', ['--identity', `file:${path('id.txt')}`]],
      ['g.snap.pgp', ['--identity', `file:${path('ops-secret.asc')}`]],
      ['g.snap.asc', ['--identity', `file:${path('ops-secret.asc')}`]],
      ['dr.snap.pgp', ['--identity', `file:${path('dr-secret.asc')}`, '--identity-passphrase', 'env:VO_TEST_PASS']],
      ['v.snap.age', ['--identity', `file:${path('id.txt')}`]],
      ['v.snap.pgp', ['--identity', `file:${path('dr-secret.asc')}`, '--identity-passphrase', 'env:VO_TEST_PASS']],
    ];
    for (const [file, flags] of cases) {
      const r = await cli.run(['backups', 'verify', path(file), ...flags, '--json']);
      expect(r.code, `${file}: ${r.stderr}`).toBe(ExitCode.ok);
      const res = JSON.parse(r.stdout) as {
        valid: boolean;
        contents_checked: boolean;
        snapshot: { bytes: number; meta: { index: number } };
        encryption: { format: string };
      };
      expect(res).toMatchObject({
        valid: true,
        contents_checked: true,
        snapshot: { bytes: plain.length, meta: { index: 1234 } },
      });
      expect(res.encryption.format).toBe(file.endsWith('.age') ? 'age' : 'openpgp');
    }
  });

  it('without an identity, verify checks only what it can and says so: exit 2, contents not checked', async () => {
    const r = await cli.run(['backups', 'verify', path('v.snap.age')]);
    expect(r.code).toBe(ExitCode.badInput);
    expect(r.stdout).toMatch(/^Stored file intact: .*v\.snap\.age: stored file \d+ bytes, sha256 [0-9a-f]{64} \(age\)/);
    expect(r.stderr).toMatch(/could not be checked without the identity/);
    expect(r.stderr).toMatch(/--identity REF/);
  });

  it('a wrong key is exit 2 naming what was tried and what to give instead; a key of the other format too', async () => {
    const wrongAge = await cli.run([
      'backups',
      'verify',
      path('a.snap.age'),
      '--identity',
      `file:${path('other.txt')}`,
    ]);
    expect(wrongAge.code).toBe(ExitCode.badInput);
    expect(wrongAge.stderr).toMatch(/None of the given age identities \(age1[a-z0-9]+\) opens this file/);
    expect(wrongAge.stderr).toMatch(/identity of one of the recipients/);
    const wrongPgp = await cli.run([
      'backups',
      'verify',
      path('dr.snap.pgp'),
      '--identity',
      `file:${path('ops-secret.asc')}`,
    ]);
    expect(wrongPgp.code).toBe(ExitCode.badInput);
    expect(wrongPgp.stderr).toMatch(/None of the given OpenPGP keys \([0-9A-F]{40}\) opens this file/);
    const crossed = await cli.run(['backups', 'verify', path('g.snap.pgp'), '--identity', `file:${path('id.txt')}`]);
    expect(crossed.code).toBe(ExitCode.badInput);
    expect(crossed.stderr).toMatch(/OpenPGP-encrypted and file:.* is an age identity/);
    const noPass = await cli.run([
      'backups',
      'verify',
      path('dr.snap.pgp'),
      '--identity',
      `file:${path('dr-secret.asc')}`,
    ]);
    expect(noPass.code).toBe(ExitCode.badInput);
    expect(noPass.stderr).toMatch(/protected by a passphrase and none was given/);
  });

  it('tampered and truncated ciphertext is refused with exit 1 (age and OpenPGP)', async () => {
    const id = ['--identity', `file:${path('id.txt')}`];
    const pgpId = ['--identity', `file:${path('ops-secret.asc')}`];
    const age = readFileSync(path('a.snap.age'));
    writeFileSync(path('cut.snap.age'), age.subarray(0, age.length - 100));
    const pgp = readFileSync(path('g.snap.pgp'));
    writeFileSync(path('cut.snap.pgp'), pgp.subarray(0, pgp.length - 100));
    for (const [file, flags, why] of [
      [flip(path('a.snap.age'), path('bad.snap.age')), id, /does not authenticate/],
      [path('cut.snap.age'), id, /does not authenticate as the final chunk|truncated/],
      [flip(path('a.snap.age'), path('badhdr.snap.age'), 0.0005), id, /header/],
      [flip(path('g.snap.pgp'), path('bad.snap.pgp')), pgpId, /modified|damaged|integrity|snapshot/i],
      [path('cut.snap.pgp'), pgpId, /truncated|damaged|incomplete|ends early/i],
    ] as Array<[string, string[], RegExp]>) {
      const r = await cli.run(['backups', 'verify', file, ...flags]);
      expect(r.code, `${file}: ${r.stderr}`).toBe(ExitCode.failed);
      expect(r.stderr, file).toMatch(why);
      expect(r.stderr).not.toMatch(/\n\s+at /); // a message, never a stack trace
    }
  });

  it('a key pasted on the command line is refused and masked, never echoed', async () => {
    // A runner of its own: the shared one's log starts each entry with the argv, which here holds the key on purpose.
    const own = new CliRunner({ env: { ...process.env }, cwd: dir });
    const r = await own.run(['backups', 'verify', path('a.snap.age'), '--identity', ageId]);
    expect(r.code).toBe(ExitCode.badInput);
    expect(r.stderr).toMatch(/--identity takes a secret reference, not the secret itself/);
    expect(`${r.stdout}${r.stderr}`).not.toContain(ageId);
  });
});
