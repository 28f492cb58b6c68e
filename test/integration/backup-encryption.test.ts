import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ExitCode } from '../../src/core/exit-codes.js';
import type { Manifest } from '../../src/backup/stores/manifest.js';
import type { DrillReport } from '../../src/drill/run-drill.js';
import { CliRunner } from '../helpers/cli.js';
import { ensureKv, kvGet, kvPut, withCluster } from '../helpers/backup-lab.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';

/**
 * Backups encrypted at rest, end to end on a real lab: `vaultops backup` into stores with
 * `encrypt: { age: [...] }` and `encrypt: { openpgp: [...] }`, listed and inspected without any key,
 * verified without (stored file only, exit 2) and with the identity (full check), opened by the real
 * `age -d` / `gpg --decrypt`, refused when tampered, and restored with `restore --identity` (also a
 * file encrypted by hand with `gpg --encrypt`). One flavour is enough: encryption happens in
 * vaultops on both sides of the server, which sees the same plaintext snapshot either way (the
 * snapshot path itself runs against both flavours in backup-snapshot.test.ts); OpenBao needs no
 * 8-minute build.
 */
const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const flavor = flavorsUnderTest().find((f) => f.flavor === 'openbao') ?? flavorsUnderTest()[0]!;

describe(`encrypted backups on a ${flavor.flavor} ${flavor.version} lab: backup, list, verify, restore`, () => {
  const name = 'i-enc';
  let t: TestLab;
  let cli: CliRunner;
  let inv: string;
  let keys: string;
  let ageId: string;
  let ageRecipient: string;
  const secrets: string[] = [];
  const original = `canary-${sha256(String(Date.now())).slice(0, 16)}`;
  const changed = `changed-${sha256(String(Math.random())).slice(0, 16)}`;
  const gnupg = () => join(t.stateDir, 'gnupg');
  const gpg = (args: string[]) =>
    execFileSync('gpg', ['--batch', '--yes', '--quiet', '--trust-model', 'always', ...args], {
      env: { ...process.env, GNUPGHOME: gnupg() },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  const dirOf = (store: string) => join(t.stateDir, store);
  const canary = () => withCluster(t.inventory, (c) => kvGet(c, 'canary'));
  const backup = async (store: string): Promise<{ file: string; manifest: Manifest }> => {
    const r = await cli.run(['backup', '-i', inv, '--store', store, '--json']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const res = JSON.parse(r.stdout) as { file: string; manifest: Manifest };
    return { file: join(dirOf(store), res.manifest.file), manifest: res.manifest };
  };
  let ageBackup: { file: string; manifest: Manifest };

  beforeAll(async () => {
    t = await startTestLab({ name, flavor: flavor.flavor, version: flavor.version });
    cli = new CliRunner({ env: { ...t.env, GNUPGHOME: join(t.stateDir, 'gnupg') }, cwd: t.stateDir });
    keys = join(t.stateDir, 'keys');
    mkdirSync(keys, { mode: 0o700 });
    mkdirSync(gnupg(), { mode: 0o700 });
    execFileSync('age-keygen', ['-o', join(keys, 'age-identity.txt')], { stdio: 'pipe' });
    chmodSync(join(keys, 'age-identity.txt'), 0o600);
    ageId = readFileSync(join(keys, 'age-identity.txt'), 'utf8')
      .split('\n')
      .find((l) => l.startsWith('AGE-SECRET-KEY-'))!;
    ageRecipient = execFileSync('age-keygen', ['-y', join(keys, 'age-identity.txt')], { encoding: 'utf8' }).trim();
    writeFileSync(join(keys, 'age-recipients.txt'), `# who can open the backups\n${ageRecipient}\n`);
    execFileSync('age-keygen', ['-o', join(keys, 'wrong.txt')], { stdio: 'pipe' });
    chmodSync(join(keys, 'wrong.txt'), 0o600);
    gpg(['--passphrase', '', '--quick-gen-key', 'Vault Backups <backups@example.com>', 'default', 'default', 'never']);
    writeFileSync(join(keys, 'ops.asc'), gpg(['--armor', '--export', 'backups@example.com']));
    writeFileSync(
      join(keys, 'ops-secret.asc'),
      gpg([
        '--armor',
        '--pinentry-mode',
        'loopback',
        '--passphrase',
        '',
        '--export-secret-keys',
        'backups@example.com',
      ]),
      { mode: 0o600 },
    );
    secrets.push(
      ...t.secrets,
      ageId,
      readFileSync(join(keys, 'wrong.txt'), 'utf8')
        .split('\n')
        .find((l) => l.startsWith('AGE-SECRET-KEY-'))!,
      ...readFileSync(join(keys, 'ops-secret.asc'), 'utf8')
        .split('\n')
        .filter((l) => /^[A-Za-z0-9+/=]{40,}$/.test(l)),
    );

    const doc = parse(readFileSync(t.inventory, 'utf8')) as { clusters: Record<string, Record<string, unknown>> };
    doc.clusters[name]!['stores'] = {
      // Relative paths: relative to the inventory, as operators write them.
      'vault-age': { type: 'dir', path: 'vault-age', encrypt: { age: ['keys/age-recipients.txt'] } },
      'vault-pgp': {
        type: 'dir',
        path: 'vault-pgp',
        encrypt: { openpgp: ['keys/ops.asc'] },
        decrypt: { identity: `file:${join(keys, 'ops-secret.asc')}` },
      },
    };
    inv = join(t.stateDir, 'encrypted.yml');
    writeFileSync(inv, stringify(doc));
    await withCluster(t.inventory, async (c) => {
      await ensureKv(c);
      await kvPut(c, 'canary', original);
    });
  });
  afterAll(async () => {
    try {
      if (cli?.log.length) cli.expectNoSecrets([...secrets, original, changed]);
    } finally {
      // gpg leaves an agent running on the test's GNUPGHOME; stop it before the directory goes.
      if (t) spawnSync('gpgconf', ['--homedir', gnupg(), '--kill', 'all'], { stdio: 'ignore' });
      await t?.destroy();
    }
  });

  it('`vaultops backup` into an age store writes <name>.snap.age, a sidecar of the stored file and a manifest naming the recipients; no plaintext on disk', async () => {
    ageBackup = await backup('vault-age');
    const { file, manifest } = ageBackup;
    expect(manifest.file).toMatch(new RegExp(`^${name}-\\d{8}T\\d{6}Z\\.snap\\.age$`));
    expect(readdirSync(dirOf('vault-age')).sort()).toEqual([
      manifest.file,
      `${manifest.file}.json`,
      `${manifest.file}.sha256`,
    ]);
    const stored = readFileSync(file);
    expect(stored.subarray(0, 22).toString('latin1')).toBe('age-encryption.org/v1\n');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(manifest.encryption).toEqual({
      format: 'age',
      recipients: [ageRecipient],
      stored_size: stored.length,
      stored_sha256: sha256(stored),
    });
    expect(manifest.sha256).not.toBe(sha256(stored));
    // `sha256sum -c` works on the sidecar, as for unencrypted backups.
    expect(
      execFileSync('sha256sum', ['-c', `${manifest.file}.sha256`], { cwd: dirOf('vault-age'), encoding: 'utf8' }),
    ).toBe(`${manifest.file}: OK\n`);

    // The real age opens it; the plaintext is the snapshot the manifest describes, and it verifies.
    const plain = execFileSync('age', ['-d', '-i', join(keys, 'age-identity.txt'), file], { maxBuffer: 1 << 30 });
    expect(sha256(plain)).toBe(manifest.sha256);
    expect(plain.length).toBe(manifest.size);
    const out = join(t.stateDir, 'age-decrypted', 'plain.snap');
    mkdirSync(join(t.stateDir, 'age-decrypted'));
    writeFileSync(out, plain);
    const v = await cli.run(['backups', 'verify', out]);
    expect(v.code, v.stderr).toBe(ExitCode.ok);
  });

  it('`backups list` and `inspect` show it as encrypted, with no identity anywhere in the inventory', async () => {
    const l = await cli.run(['backups', 'list', '-i', inv, '--store', 'vault-age']);
    expect(l.code, l.stderr).toBe(ExitCode.ok);
    expect(l.stdout).toMatch(
      new RegExp(
        `${ageBackup.manifest.file.replace(/\./g, '\\.')}\\s+${name}\\s+\\d+\\s+\\S+\\s+${ageBackup.manifest.raft.index}\\s+\\S+\\s+verified, encrypted \\(age\\)`,
      ),
    );
    const lj = await cli.run(['backups', 'list', '-i', inv, '--store', 'vault-age', '--json']);
    const listed = JSON.parse(lj.stdout) as {
      backups: Array<{ name: string; verified: boolean; encrypted: string; size: number }>;
    };
    expect(listed.backups).toEqual([
      expect.objectContaining({
        name: ageBackup.manifest.file,
        verified: true,
        encrypted: 'age',
        size: ageBackup.manifest.encryption!.stored_size,
      }),
    ]);
    const i = await cli.run(['backups', 'inspect', ageBackup.file]);
    expect(i.code, i.stderr).toBe(ExitCode.ok);
    expect(i.stdout).toContain(
      `Raft index:    ${ageBackup.manifest.raft.index} (term ${ageBackup.manifest.raft.term}, from the manifest)`,
    );
    expect(i.stdout).toContain(`Encryption:    age for ${ageRecipient}`);
    expect(i.stdout).toMatch(/Verdict: +stored file intact; contents not checked/);
  });

  it('`backups verify`: without the identity only the stored file is checked (exit 2, said plainly); with it, the full check; a wrong one is exit 2', async () => {
    const without = await cli.run(['backups', 'verify', ageBackup.file]);
    expect(without.code).toBe(ExitCode.badInput);
    expect(without.stdout).toContain(
      `matches its sidecar and manifest (cluster ${name}, Raft index ${ageBackup.manifest.raft.index})`,
    );
    expect(without.stderr).toMatch(
      /its contents \(gzip, tar, SHA256SUMS, meta.json\) could not be checked without the identity/,
    );
    const withId = await cli.run([
      'backups',
      'verify',
      ageBackup.manifest.file,
      '-i',
      inv,
      '--store',
      'vault-age',
      '--identity',
      `file:${join(keys, 'age-identity.txt')}`,
    ]);
    expect(withId.code, withId.stderr).toBe(ExitCode.ok);
    expect(withId.stdout).toMatch(
      new RegExp(
        `^OK .*: ${ageBackup.manifest.size} bytes, sha256 ${ageBackup.manifest.sha256}, Raft index ${ageBackup.manifest.raft.index}.*matches its manifest.*decrypted while checking`,
      ),
    );
    const wrong = await cli.run(['backups', 'verify', ageBackup.file, '--identity', `file:${join(keys, 'wrong.txt')}`]);
    expect(wrong.code).toBe(ExitCode.badInput);
    expect(wrong.stderr).toMatch(/None of the given age identities .* opens this file/);
  });

  it('restore refuses a tampered encrypted backup, and one it has no identity for; the cluster is untouched', async () => {
    await withCluster(t.inventory, (c) => kvPut(c, 'canary', changed));
    const badDir = join(t.stateDir, 'tampered');
    mkdirSync(badDir);
    const bad = join(badDir, ageBackup.manifest.file);
    const data = readFileSync(ageBackup.file);
    data[Math.floor(data.length / 2)]! ^= 0x01;
    writeFileSync(bad, data);
    writeFileSync(`${bad}.json`, readFileSync(`${ageBackup.file}.json`));
    const r = await cli.run([
      'restore',
      '-i',
      inv,
      '--from',
      bad,
      '--identity',
      `file:${join(keys, 'age-identity.txt')}`,
      '--confirm',
      name,
      '--non-interactive',
    ]);
    expect(r.code).toBe(ExitCode.failed);
    expect(r.stderr).toMatch(/Refusing to restore .*does not authenticate.*The cluster was not touched/s);
    const noId = await cli.run([
      'restore',
      '-i',
      inv,
      '--from',
      ageBackup.file,
      '--confirm',
      name,
      '--non-interactive',
    ]);
    expect(noId.code).toBe(ExitCode.badInput);
    expect(noId.stderr).toMatch(/is encrypted \(age\) and no identity was given.*The cluster was not touched/s);
    expect(noId.stderr).toMatch(/--identity REF/);
    expect(await canary()).toBe(changed);
    // No safety snapshot was taken: the refusals came before anything else.
    expect(readdirSync(badDir).filter((f) => f.includes('pre-restore'))).toEqual([]);
    expect(readdirSync(dirOf('vault-age')).filter((f) => f.includes('pre-restore'))).toEqual([]);
  });

  it('`restore --latest --identity` decrypts while uploading and brings the data back; the safety snapshot is encrypted too', async () => {
    expect(await canary()).toBe(changed);
    const r = await cli.run(
      [
        'restore',
        '-i',
        inv,
        '--store',
        'vault-age',
        '--latest',
        '--identity',
        `file:${join(keys, 'age-identity.txt')}`,
        '--confirm',
        name,
        '--non-interactive',
        '--json',
      ],
      { timeoutMs: 240_000 },
    );
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect(r.stderr).toMatch(/Verifying .*\.snap\.age/);
    expect(await canary()).toBe(original);
    const safety = (JSON.parse(r.stdout) as { safety_snapshot: string }).safety_snapshot;
    expect(safety).toMatch(/-pre-restore\.snap\.age$/);
    const m = JSON.parse(readFileSync(`${safety}.json`, 'utf8')) as Manifest;
    expect(m.encryption?.recipients).toEqual([ageRecipient]);
    // Nothing but ciphertext was ever written to the store (no plaintext file, no leftovers).
    for (const f of readdirSync(dirOf('vault-age')).filter((x) => !/\.(json|sha256)$/.test(x))) {
      expect(
        readFileSync(join(dirOf('vault-age'), f))
          .subarray(0, 21)
          .toString('latin1'),
        f,
      ).toBe('age-encryption.org/v1');
    }
  });

  it("a bare age backup whose manifest names another recipient: the safety snapshot is never encrypted for it; --encrypt-to encrypts it for the operator's", async () => {
    // The manifest is not signed: whoever can write it must not choose who can read the safety snapshot.
    const intruder = execFileSync('age-keygen', ['-y', join(keys, 'wrong.txt')], { encoding: 'utf8' }).trim();
    const bare = join(t.stateDir, 'bare-age');
    mkdirSync(bare, { recursive: true });
    const f = join(bare, ageBackup.manifest.file);
    copyFileSync(ageBackup.file, f);
    copyFileSync(`${ageBackup.file}.sha256`, `${f}.sha256`);
    writeFileSync(
      `${f}.json`,
      JSON.stringify({
        ...ageBackup.manifest,
        encryption: { ...ageBackup.manifest.encryption!, recipients: [intruder] },
      }),
    );
    const restore = (extra: string[]) =>
      cli.run(
        [
          'restore',
          '-i',
          inv,
          '--from',
          f,
          '--identity',
          `file:${join(keys, 'age-identity.txt')}`,
          '--confirm',
          name,
          '--non-interactive',
          '--json',
          ...extra,
        ],
        { timeoutMs: 240_000 },
      );
    const r = await restore([]);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const safety = (JSON.parse(r.stdout) as { safety_snapshot: string }).safety_snapshot;
    expect(safety).toMatch(/-pre-restore\.snap$/);
    expect(r.stderr).toMatch(/warning: the safety snapshot goes to .* unencrypted/);
    const r2 = await restore(['--encrypt-to', ageRecipient]);
    expect(r2.code, r2.stderr).toBe(ExitCode.ok);
    const safety2 = (JSON.parse(r2.stdout) as { safety_snapshot: string }).safety_snapshot;
    expect(safety2).toMatch(/-pre-restore\.snap\.age$/);
    expect((JSON.parse(readFileSync(`${safety2}.json`, 'utf8')) as Manifest).encryption?.recipients).toEqual([
      ageRecipient,
    ]);
  });

  it('`drill --from` an age store: without the identity nothing starts (exit 2); with it the newest encrypted backup is restored into a scratch cluster and torn down', async () => {
    const reports = join(t.stateDir, 'drill-reports');
    const noId = await cli.run([
      'drill',
      '-i',
      inv,
      '--from',
      'vault-age',
      '--report-dir',
      reports,
      '--non-interactive',
    ]);
    expect(noId.code).toBe(ExitCode.badInput);
    expect(noId.stderr).toMatch(/is encrypted \(age\) and no identity was given.*Nothing was started/s);
    const r = await cli.run(
      [
        'drill',
        '-i',
        inv,
        '--from',
        'vault-age',
        '--identity',
        `file:${join(keys, 'age-identity.txt')}`,
        '--report-dir',
        reports,
        '--non-interactive',
        '--json',
      ],
      { timeoutMs: 400_000 },
    );
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const report = JSON.parse(r.stdout) as DrillReport;
    expect(report.result).toBe('passed');
    expect(report.backup?.file ?? '').toMatch(/\.snap\.age$/);
    expect(
      report.phases.filter((p) => ['verify', 'restore', 'unseal', 'teardown'].includes(p.name)).map((p) => p.result),
    ).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(report.scratch).toMatchObject({ torn_down: true, processes_left: 0 });
    expect(existsSync(report.scratch!.dir)).toBe(false);
  });

  it("an OpenPGP store: `gpg --decrypt` opens the backup, the store's decrypt: verifies it, and a file encrypted by hand with `gpg --encrypt` restores", async () => {
    const { file, manifest } = await backup('vault-pgp');
    expect(manifest.file).toMatch(/\.snap\.pgp$/);
    expect(manifest.encryption?.format).toBe('openpgp');
    expect(manifest.encryption?.recipients).toEqual([
      gpg(['--with-colons', '--fingerprint', 'backups@example.com'])
        .toString()
        .split('\n')
        .find((l) => l.startsWith('fpr:'))!
        .split(':')[9],
    ]);
    const plain = gpg(['--decrypt', file]);
    expect(sha256(plain)).toBe(manifest.sha256);
    // The store's decrypt: identity is used when no --identity is given.
    const v = await cli.run(['backups', 'verify', manifest.file, '-i', inv, '--store', 'vault-pgp']);
    expect(v.code, v.stderr).toBe(ExitCode.ok);

    // By hand: the decrypted snapshot, encrypted again with gpg, restored by vaultops.
    await withCluster(t.inventory, (c) => kvPut(c, 'canary', changed));
    const hand = join(t.stateDir, 'by-hand');
    mkdirSync(hand);
    writeFileSync(join(hand, 'plain.snap'), plain);
    gpg(['-r', 'backups@example.com', '--encrypt', '-o', join(hand, 'snap.pgp'), join(hand, 'plain.snap')]);
    execFileSync('rm', [join(hand, 'plain.snap')]);
    const r = await cli.run(
      [
        'restore',
        '-i',
        inv,
        '--from',
        join(hand, 'snap.pgp'),
        '--identity',
        `file:${join(keys, 'ops-secret.asc')}`,
        '--confirm',
        name,
        '--non-interactive',
      ],
      { timeoutMs: 240_000 },
    );
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect(await canary()).toBe(original);
    // The safety snapshot next to a bare file cannot be encrypted to fingerprints alone: said, not hidden.
    expect(r.stderr).toMatch(/warning: the safety snapshot goes to .* unencrypted/);
  });
});
