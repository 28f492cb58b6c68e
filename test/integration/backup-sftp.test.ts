import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ExitCode } from '../../src/core/exit-codes.js';
import type { Manifest } from '../../src/backup/stores/manifest.js';
import { SSH_PORT } from '../../src/lab/ssh-hosts.js';
import { CliRunner, labSecrets } from '../helpers/cli.js';
import { ensureKv, fillKv, kvGet, kvPut, withCluster } from '../helpers/backup-lab.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';

/**
 * The SFTP backup store against the real OpenSSH sshd that `lab up --ssh` runs on each lab node
 * (internal-sftp), and the restore canary check. One flavour is enough here: the store only talks
 * to sshd, and the snapshot it receives goes through the same streaming verifier that
 * backup-snapshot.test.ts runs against both flavours. OpenBao is used because it needs no 8-minute
 * build; the canary check reads a KV v1 secret, which both flavours serve identically.
 * The sshd is on this machine, so the test can look at the "remote" directory on disk.
 */
const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const flavor = flavorsUnderTest().find((f) => f.flavor === 'openbao') ?? flavorsUnderTest()[0]!;

describe(`the SFTP backup store and restore canaries on a ${flavor.flavor} ${flavor.version} lab with sshd`, () => {
  const name = 'i-sftp';
  let t: TestLab;
  let cli: CliRunner;
  let secrets: string[];
  let inv: string;
  let remote: string;
  let full: string | undefined;
  let tmp: string;
  const canaryValue = `canary-${sha256(String(Date.now())).slice(0, 16)}`;
  const changedValue = `changed-${sha256(String(Math.random())).slice(0, 16)}`;

  /** The lab's inventory plus SFTP stores and canaries, written next to it. */
  const writeInventory = (file: string, canaries: Array<Record<string, string>>) => {
    const doc = parse(readFileSync(t.inventory, 'utf8')) as { clusters: Record<string, Record<string, unknown>> };
    const n1 = t.lab.nodes[0]!;
    const sftp = (path: string, hostKey = t.lab.ssh!.nodes[n1.name]!.hostKey) => ({
      type: 'sftp',
      host: n1.ip,
      port: SSH_PORT,
      user: 'root',
      key_file: t.lab.ssh!.keyFile,
      host_key: hostKey,
      path,
    });
    doc.clusters[name]!['stores'] = {
      offsite: sftp(remote),
      full: sftp(join(t.stateDir, 'sftp-full')),
      // n2's host key pinned for n1's sshd: an impostor server.
      impostor: sftp(join(t.stateDir, 'impostor'), t.lab.ssh!.nodes[t.lab.nodes[1]!.name]!.hostKey),
    };
    doc.clusters[name]!['canaries'] = canaries;
    writeFileSync(file, stringify(doc));
    return file;
  };
  const remoteFiles = () => (existsSync(remote) ? readdirSync(remote).sort() : []);

  beforeAll(async () => {
    t = await startTestLab({ name, flavor: flavor.flavor, version: flavor.version, ssh: true });
    // A private TMPDIR, so the test can see that the restore's download copy is removed.
    tmp = join(t.stateDir, 'tmp');
    mkdirSync(tmp, { recursive: true });
    cli = new CliRunner({ env: { ...t.env, TMPDIR: tmp }, cwd: t.stateDir });
    secrets = [...labSecrets(t.lab.initFile), canaryValue, changedValue];
    remote = join(t.stateDir, 'offsite', 'vault');
    await withCluster(t.inventory, async (c) => {
      await ensureKv(c);
      await kvPut(c, 'canary', canaryValue);
    });
    inv = writeInventory(join(t.stateDir, 'sftp.yml'), [
      { path: 'kv/canary', field: 'value', expect_sha256: sha256(canaryValue) },
    ]);
  });
  afterAll(async () => {
    if (full && spawnSync('mountpoint', ['-q', full]).status === 0) execFileSync('umount', [full]);
    await t?.destroy();
  });

  it('`vaultops backup --store offsite` streams over SFTP into a verified snapshot with sidecar and manifest, no partial left', async () => {
    const r = await cli.run(['backup', '-i', inv, '--store', 'offsite', '--json']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const res = JSON.parse(r.stdout) as { file: string; manifest: Manifest };
    expect(res.file).toBe(`sftp://root@${t.lab.nodes[0]!.ip}:${SSH_PORT}${remote}/${res.manifest.file}`);
    const file = join(remote, res.manifest.file);
    expect(remoteFiles()).toEqual([res.manifest.file, `${res.manifest.file}.json`, `${res.manifest.file}.sha256`]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(remote).mode & 0o777).toBe(0o700);
    expect(sha256(readFileSync(file))).toBe(res.manifest.sha256);
    expect(statSync(file).size).toBe(res.manifest.size);
    expect(readFileSync(`${file}.sha256`, 'utf8')).toBe(`${res.manifest.sha256}  ${res.manifest.file}\n`);
    expect(JSON.parse(readFileSync(`${file}.json`, 'utf8'))).toEqual(res.manifest);
    expect(res.manifest.cluster.name).toBe(name);

    // The same file, checked by the local verifier straight from disk.
    const v = await cli.run(['backups', 'verify', file]);
    expect(v.code, v.stderr).toBe(ExitCode.ok);
  });

  it('`backups list|verify|inspect` work through the store', async () => {
    const l = await cli.run(['backups', 'list', '-i', inv, '--store', 'offsite', '--json']);
    expect(l.code, l.stderr).toBe(ExitCode.ok);
    const listed = JSON.parse(l.stdout) as { store: string; backups: Array<{ name: string; verified: boolean }> };
    expect(listed.store).toMatch(/^sftp:\/\//);
    expect(listed.backups).toHaveLength(1);
    expect(listed.backups[0]!.verified).toBe(true);
    const snap = listed.backups[0]!.name;
    const table = await cli.run(['backups', 'list', '-i', inv, '--store', 'offsite']);
    expect(table.stdout).toMatch(new RegExp(`${snap}\\s+${name}\\s+\\d+\\s+\\S+\\s+\\d+\\s+\\S+\\s+verified`));

    const v = await cli.run(['backups', 'verify', snap, '-i', inv, '--store', 'offsite']);
    expect(v.code, v.stderr).toBe(ExitCode.ok);
    expect(v.stdout).toMatch(/^OK .*matches its manifest/);
    const i = await cli.run(['backups', 'inspect', snap, '-i', inv, '--store', 'offsite']);
    expect(i.code, i.stderr).toBe(ExitCode.ok);
    expect(i.stdout).toContain(`Key set:       ${name}-init`);

    // A corrupted copy on the server is refused through the store as well.
    const bad = `${snap.replace(/\.snap$/, '')}-bad.snap`;
    const data = readFileSync(join(remote, snap));
    data[Math.floor(data.length / 2)] ^= 0xff;
    writeFileSync(join(remote, bad), data);
    const vb = await cli.run(['backups', 'verify', bad, '-i', inv, '--store', 'offsite']);
    expect(vb.code).toBe(ExitCode.failed);
    execFileSync('rm', ['-f', join(remote, bad)]);
  });

  it('an SFTP server whose host key does not match the pin is refused before anything is written', async () => {
    const r = await cli.run(['backup', '-i', inv, '--store', 'impostor']);
    expect(r.code).not.toBe(ExitCode.ok);
    expect(r.stderr).toMatch(/does not match the pinned key: refused/);
    expect(existsSync(join(t.stateDir, 'impostor'))).toBe(false);
  });

  it('a full disk on the SFTP server fails the backup, removes the remote partial file and keeps earlier backups', async () => {
    await withCluster(t.inventory, (c) => fillKv(c, 600 * 1024));
    full = join(t.stateDir, 'sftp-full');
    mkdirSync(full, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1000k,mode=0700', 'tmpfs', full]);
    const first = await cli.run(['backup', '-i', inv, '--store', 'full', '--json', '--quiet']);
    expect(first.code, first.stderr).toBe(ExitCode.ok);
    const earlier = (JSON.parse(first.stdout) as { manifest: Manifest }).manifest;
    expect(earlier.size).toBeGreaterThan(500 * 1024);

    const second = await cli.run(['backup', '-i', inv, '--store', 'full']);
    expect(second.code).toBe(ExitCode.failed);
    expect(second.stderr).toMatch(
      /SFTP failed while writing .*partial file was removed, earlier backups are untouched/,
    );
    expect(readdirSync(full).sort()).toEqual([earlier.file, `${earlier.file}.json`, `${earlier.file}.sha256`]);
    expect(sha256(readFileSync(join(full, earlier.file)))).toBe(earlier.sha256);
  });

  it('`restore --latest --store offsite` fetches, verifies and restores the remote backup, then checks the canary by sha256', async () => {
    await withCluster(t.inventory, (c) => kvPut(c, 'canary', changedValue));
    const before = remoteFiles().filter((f) => f.endsWith('.snap'));
    const r = await cli.run([
      'restore',
      '-i',
      inv,
      '--latest',
      '--store',
      'offsite',
      '--confirm',
      name,
      '--non-interactive',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const res = JSON.parse(r.stdout) as {
      safety_snapshot: string;
      status: { health: string };
      canaries: Array<{ path: string; result: string; expected_from: string }>;
    };
    expect(res.status.health).toBe('healthy');
    expect(res.canaries).toEqual([
      expect.objectContaining({ path: 'kv/canary', result: 'match', expected_from: 'inventory' }),
    ]);
    expect(r.stderr).toContain('Canaries: kv/canary#value matches');
    // The safety snapshot of the state before went to the same SFTP store.
    expect(res.safety_snapshot).toMatch(/^sftp:\/\/.*-pre-restore\.snap$/);
    const after = remoteFiles().filter((f) => f.endsWith('.snap'));
    expect(after).toHaveLength(before.length + 1);
    expect(await withCluster(t.inventory, (c) => kvGet(c, 'canary'))).toBe(canaryValue);
    // The temp copy of the download is gone.
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('`drill --from offsite` restores the newest remote backup into a scratch cluster, checks the canary and leaves no copy behind', async () => {
    const r = await cli.run(['drill', '-i', inv, '--from', 'offsite', '--non-interactive']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect(r.stdout + r.stderr).toMatch(/PASSED/);
    // The drill downloaded the snapshot into a private temp dir and removed it afterwards.
    expect(readdirSync(tmp).filter((f) => f.startsWith('vaultops-restore-'))).toEqual([]);
  });

  it('a canary whose value differs from expect_sha256 fails the restore naming the path, never the value', async () => {
    const wrong = writeInventory(join(t.stateDir, 'sftp-wrong-canary.yml'), [
      { path: 'kv/canary', field: 'value', expect_sha256: sha256(changedValue) },
    ]);
    const r = await cli.run([
      'restore',
      '-i',
      wrong,
      '--latest',
      '--store',
      'offsite',
      '--confirm',
      name,
      '--non-interactive',
    ]);
    expect(r.code).toBe(ExitCode.failed);
    expect(r.stderr).toMatch(/canary kv\/canary#value does not hold the value the inventory expects/);
    expect(r.stderr + r.stdout).not.toContain(canaryValue);
    expect(r.stderr + r.stdout).not.toContain(changedValue);
  });

  it('retention through the store: --dry-run lists, a real prune removes remote files and keeps the newest', async () => {
    const snaps = () => remoteFiles().filter((f) => f.endsWith('.snap'));
    const all = snaps();
    expect(all.length).toBeGreaterThanOrEqual(3);
    const dry = await cli.run(['backups', 'prune', '-i', inv, '--store', 'offsite', '--keep-last', '1', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(ExitCode.ok);
    expect(dry.stdout.match(/^would remove /gm)).toHaveLength(all.length - 1);
    expect(snaps()).toEqual(all);
    const real = await cli.run(['backups', 'prune', '-i', inv, '--store', 'offsite', '--keep-last', '1', '--json']);
    expect(real.code, real.stderr).toBe(ExitCode.ok);
    const kept = (JSON.parse(real.stdout) as { keep: Array<{ name: string }> }).keep.map((k) => k.name);
    expect(kept).toHaveLength(1);
    expect(remoteFiles()).toEqual([kept[0], `${kept[0]}.json`, `${kept[0]}.sha256`]);
  });

  it('a key file with a passphrase works through key_passphrase (a file: reference next to the inventory); a wrong one is refused before anything is written', async () => {
    const passphrase = `pass-${sha256(String(Math.random())).slice(0, 20)}`;
    secrets.push(passphrase);
    const keyFile = join(t.stateDir, 'id_sftp_locked');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-C', 'locked', '-f', keyFile]);
    const authorized = join(t.lab.dir, 'ssh', 'authorized_keys');
    writeFileSync(authorized, readFileSync(authorized, 'utf8') + readFileSync(`${keyFile}.pub`, 'utf8'));
    const doc = parse(readFileSync(inv, 'utf8')) as { clusters: Record<string, { stores: Record<string, object> }> };
    const dir = join(t.stateDir, 'sftp-locked');
    doc.clusters[name]!.stores['locked'] = {
      ...doc.clusters[name]!.stores['offsite'],
      key_file: keyFile,
      key_passphrase: 'file:locked-passphrase',
      path: dir,
    };
    const lockedInv = join(t.stateDir, 'locked.yml');
    writeFileSync(lockedInv, stringify(doc));

    writeFileSync(join(t.stateDir, 'locked-passphrase'), 'not-the-passphrase\n', { mode: 0o600 });
    const wrong = await cli.run(['backup', '-i', lockedInv, '--store', 'locked']);
    expect(wrong.code, wrong.stderr).not.toBe(ExitCode.ok);
    expect(wrong.stderr).toMatch(/passphrase/i);
    expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);

    writeFileSync(join(t.stateDir, 'locked-passphrase'), `${passphrase}\n`, { mode: 0o600 });
    const r = await cli.run(['backup', '-i', lockedInv, '--store', 'locked', '--json']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const res = JSON.parse(r.stdout) as { manifest: Manifest };
    expect(sha256(readFileSync(join(dir, res.manifest.file)))).toBe(res.manifest.sha256);
  });

  it('no output of this file holds an unseal key, the root token or a canary value', () => {
    cli.expectNoSecrets(secrets);
  });
});
