import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ExitCode } from '../../src/core/exit-codes.js';
import type { Manifest } from '../../src/backup/stores/manifest.js';
import { CLI, CliRunner, isAlive, labSecrets, NODE, waitFor } from '../helpers/cli.js';
import { connectCluster } from '../../src/cli/cluster-from-inventory.js';
import { LocalDirStore } from '../../src/backup/stores/local-dir-store.js';
import { takeBackup } from '../../src/backup/take-backup.js';
import { restoreSnapshot } from '../../src/backup/restore-snapshot.js';
import { KillOnFirstWriteStore } from '../helpers/backup-lab.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { ensureKv, fillKv, kvGet, kvPut, officialCli, withCluster } from '../helpers/backup-lab.js';

const short = { openbao: 'bao', vault: 'vault' } as const;
const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const snaps = (dir: string) =>
  existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith('.snap'))
        .sort()
    : [];

describe.each(flavorsUnderTest())('backups of a $flavor $version lab', ({ flavor, version }) => {
  const name = `b-snap-${short[flavor]}`;
  let t: TestLab;
  let cli: CliRunner;
  let secrets: string[];
  let dir: string;
  let tmpfs: string | undefined;

  beforeAll(async () => {
    t = await startTestLab({ name, flavor, version });
    cli = new CliRunner({ env: t.env, cwd: t.stateDir });
    secrets = labSecrets(t.lab.initFile);
    dir = join(t.stateDir, 'backups');
    await withCluster(t.inventory, ensureKv);
  });
  afterAll(async () => {
    if (tmpfs && spawnSync('mountpoint', ['-q', tmpfs]).status === 0) execFileSync('umount', [tmpfs]);
    await t?.destroy();
  });

  it('`vaultops backup` writes a verified snapshot with its sha256 sidecar and manifest, from the leader', async () => {
    const leader = await withCluster(t.inventory, async (c) => (await c.findLeader()).node.name);
    const r = await cli.run(['backup', '-i', t.inventory, '--to', dir, '--json']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const res = JSON.parse(r.stdout) as { result: string; file: string; manifest: Manifest };
    expect(res.result).toBe('success');
    const file = res.file;
    expect(existsSync(file)).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir).filter((f) => f.endsWith('.partial'))).toEqual([]);
    expect(readFileSync(`${file}.sha256`, 'utf8')).toBe(`${sha256(file)}  ${res.manifest.file}\n`);
    const manifest = JSON.parse(readFileSync(`${file}.json`, 'utf8')) as Manifest;
    expect(manifest).toEqual(res.manifest);
    expect(manifest.sha256).toBe(sha256(file));
    expect(manifest.size).toBe(statSync(file).size);
    expect(manifest.leader.node).toBe(leader);
    expect(manifest.cluster).toMatchObject({ name, cluster_name: name, flavor });
    expect(manifest.cluster.cluster_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(manifest.server_version).toContain(version);
    expect(manifest.key_set).toBe(`${name}-init`);
    expect(manifest.raft.index).toBeGreaterThan(0);
    expect(manifest.members.map((m) => m.name)).toEqual(['meta.json', 'state.bin', 'SHA256SUMS', 'SHA256SUMS.sealed']);

    const v = await cli.run(['backups', 'verify', file]);
    expect(v.code, v.stderr).toBe(ExitCode.ok);
    expect(v.stdout).toMatch(/^OK .*matches its manifest/);
    const i = await cli.run(['backups', 'inspect', file]);
    expect(i.code).toBe(ExitCode.ok);
    expect(i.stdout).toContain(`Raft index:    ${manifest.raft.index}`);
    expect(i.stdout).toContain(`Key set:       ${name}-init`);
    const l = await cli.run(['backups', 'list', '--to', dir]);
    expect(l.stdout).toMatch(
      new RegExp(`${manifest.file}\\s+${name}\\s+${manifest.size}\\s+\\S+\\s+${manifest.raft.index}`),
    );
  });

  it('a backup asked with standbys first in the inventory still goes to the leader', async () => {
    const leader = await withCluster(t.inventory, async (c) => (await c.findLeader()).node.name);
    const doc = parse(readFileSync(t.inventory, 'utf8')) as {
      clusters: Record<string, { nodes: Array<{ name: string }> }>;
    };
    const c = doc.clusters[name]!;
    c.nodes.sort((a, b) => Number(a.name === leader) - Number(b.name === leader));
    expect(c.nodes[0]!.name).not.toBe(leader);
    const inv = join(t.stateDir, 'standby-first.yml');
    writeFileSync(inv, stringify(doc));
    const r = await cli.run(['backup', '-i', inv, '--to', join(t.stateDir, 'standby-first'), '--json']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect((JSON.parse(r.stdout) as { manifest: Manifest }).manifest.leader.node).toBe(leader);
  });

  it('a truncated snapshot is refused by verify and by restore, and the cluster is untouched', async () => {
    const good = join(dir, snaps(dir)[0]!);
    const bad = join(t.stateDir, 'truncated', 'cut.snap');
    mkdirSync(join(t.stateDir, 'truncated'), { recursive: true });
    writeFileSync(bad, readFileSync(good).subarray(0, Math.floor(statSync(good).size / 2)));
    await withCluster(t.inventory, (c) => kvPut(c, 'untouched', 'after-the-backup'));

    const v = await cli.run(['backups', 'verify', bad]);
    expect(v.code).toBe(ExitCode.failed);
    expect(v.stderr).toMatch(/incomplete|truncated/);

    const r = await cli.run(['restore', '-i', t.inventory, '--from', bad, '--confirm', name, '--non-interactive']);
    expect(r.code).toBe(ExitCode.failed);
    expect(r.stderr).toMatch(/Refusing to restore .*cut\.snap.*The cluster was not touched/s);
    expect(readdirSync(join(t.stateDir, 'truncated'))).toEqual(['cut.snap']); // no safety snapshot: nothing was started
    expect(await withCluster(t.inventory, (c) => kvGet(c, 'untouched'))).toBe('after-the-backup');
  });

  it('restore without the typed confirmation changes nothing and says which flag answers', async () => {
    const good = join(dir, snaps(dir)[0]!);
    const r = await cli.run(['restore', '-i', t.inventory, '--from', good, '--non-interactive']);
    expect(r.code).toBe(ExitCode.badInput);
    expect(r.stderr).toContain(`--confirm ${name}`);
    const wrong = await cli.run([
      'restore',
      '-i',
      t.inventory,
      '--from',
      good,
      '--confirm',
      'another',
      '--non-interactive',
    ]);
    expect(wrong.code).toBe(ExitCode.badInput);
    expect(await withCluster(t.inventory, (c) => kvGet(c, 'untouched'))).toBe('after-the-backup');
  });

  it('`vaultops restore` restores a file saved by the official CLI, and the cluster comes back healthy', async () => {
    const odir = join(t.stateDir, 'official');
    mkdirSync(odir, { recursive: true });
    const file = join(odir, 'official.snap');
    await withCluster(t.inventory, (c) => kvPut(c, 'marker', 'before'));
    const save = await officialCli(t, ['operator', 'raft', 'snapshot', 'save', file]);
    expect(save.code, save.stderr).toBe(0);
    await withCluster(t.inventory, (c) => kvPut(c, 'marker', 'after'));

    const r = await cli.run([
      'restore',
      '-i',
      t.inventory,
      '--from',
      file,
      '--confirm',
      name,
      '--non-interactive',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const res = JSON.parse(r.stdout) as { forced: boolean; safety_snapshot: string; status: { health: string } };
    expect(res.forced).toBe(false);
    expect(res.status.health).toBe('healthy');
    expect(existsSync(res.safety_snapshot)).toBe(true);
    expect(r.stderr).toMatch(/Everything written to .* since then is lost/);
    expect(await withCluster(t.inventory, (c) => kvGet(c, 'marker'))).toBe('before');

    const st = await cli.run(['status', '-i', t.inventory]);
    expect(st.code).toBe(ExitCode.ok);
  });

  it('a file swapped between verification and upload is caught: the upload stops before its end and the cluster keeps its data', async () => {
    const sdir = join(t.stateDir, 'swap');
    const take = async () => {
      const r = await cli.run(['backup', '-i', t.inventory, '--to', sdir, '--json', '--quiet']);
      expect(r.code, r.stderr).toBe(ExitCode.ok);
      return (JSON.parse(r.stdout) as { file: string }).file;
    };
    await withCluster(t.inventory, (c) => kvPut(c, 'swap', 'one'));
    const first = await take();
    await withCluster(t.inventory, (c) => kvPut(c, 'swap', 'two'));
    const second = await take();
    await withCluster(t.inventory, (c) => kvPut(c, 'swap', 'three'));
    const conn = await connectCluster(t.inventory, undefined);
    let swapped = false;
    try {
      const err = await restoreSnapshot({
        cluster: conn.client,
        clusterName: conn.name,
        file: first,
        forceOtherCluster: false,
        confirmed: true,
        prompter: { confirm: async () => undefined } as never,
        safetyStore: new LocalDirStore(join(t.stateDir, 'swap-safety')),
        keysFor: async () => {
          throw new Error('no keys needed for a same-cluster restore');
        },
        // The window: verified, safety snapshot taken, upload about to open the file again.
        log: (m) => {
          if (m.startsWith('Uploading the snapshot')) {
            copyFileSync(second, first);
            swapped = true;
          }
        },
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(swapped).toBe(true);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/changed after it was verified.*the cluster was not restored/);
    } finally {
      conn.client.close();
    }
    // Vault got no complete snapshot: the data is what it was, not the swapped-in file's.
    await new Promise((r) => setTimeout(r, 2000));
    expect(await withCluster(t.inventory, (c) => kvGet(c, 'swap'))).toBe('three');
    expect((await withCluster(t.inventory, (c) => c.status())).health).toBe('healthy');
  });

  it('retention keeps the last N, never the newest verified one, and --dry-run only lists', async () => {
    const rdir = join(t.stateDir, 'retention');
    for (let i = 0; i < 3; i++) {
      const r = await cli.run(['backup', '-i', t.inventory, '--to', rdir, '--no-prune', '--quiet']);
      expect(r.code, r.stderr).toBe(ExitCode.ok);
    }
    // Newest last (within one second the names get -2, -3, which also sort in order).
    const all = snaps(rdir).sort(
      (a, b) =>
        Date.parse(JSON.parse(readFileSync(join(rdir, `${a}.json`), 'utf8')).finished_at) -
        Date.parse(JSON.parse(readFileSync(join(rdir, `${b}.json`), 'utf8')).finished_at),
    );
    expect(all).toHaveLength(3);
    const dry = await cli.run(['backups', 'prune', '--to', rdir, '--keep-last', '1', '--dry-run']);
    expect(dry.code).toBe(ExitCode.ok);
    expect(dry.stdout).toContain(`would remove ${all[0]}`);
    expect(dry.stdout).toContain(`would remove ${all[1]}`);
    expect(dry.stdout).toMatch(new RegExp(`keep ${all[2]} \\(newest`));
    expect(snaps(rdir)).toEqual([...all].sort());
    const real = await cli.run(['backups', 'prune', '--to', rdir, '--keep-last', '1']);
    expect(real.code).toBe(ExitCode.ok);
    expect(snaps(rdir)).toEqual([all[2]]);
    expect(readdirSync(rdir).sort()).toEqual([all[2], `${all[2]}.json`, `${all[2]}.sha256`]);
  });

  it('with keep_last 1, the prune after each `vaultops backup` keeps the new backup, even next to a file whose manifest claims 2099', async () => {
    const kdir = join(t.stateDir, 'keep-last-1');
    mkdirSync(kdir, { recursive: true });
    // A 1-byte "backup" whose manifest (and sidecar) match its byte and claim it finished in 2099.
    const fake = `${name}-20990101T000000Z.snap`;
    writeFileSync(join(kdir, fake), 'x');
    const x = createHash('sha256').update('x').digest('hex');
    writeFileSync(join(kdir, `${fake}.sha256`), `${x}  ${fake}\n`);
    const claim = {
      format: 'vaultops-backup/1',
      file: fake,
      reason: 'backup',
      cluster: { name },
      leader: { node: 'n1', api_addr: 'https://n1' },
      raft: { index: 1, term: 1, servers: [] },
      size: 1,
      sha256: x,
      members: [],
      started_at: '2099-01-01T00:00:00.000Z',
      finished_at: '2099-01-01T00:00:00.000Z',
      duration_ms: 0,
    };
    writeFileSync(join(kdir, `${fake}.json`), JSON.stringify(claim));
    let previous: string | undefined;
    for (let i = 0; i < 3; i++) {
      const r = await cli.run(['backup', '-i', t.inventory, '--to', kdir, '--keep-last', '1', '--json']);
      expect(r.code, r.stderr).toBe(ExitCode.ok);
      const res = JSON.parse(r.stdout) as { file: string; retention: { removed: string[]; kept: string[] } };
      const made = res.file.split('/').pop()!;
      expect(existsSync(res.file)).toBe(true);
      expect(res.retention.kept).toEqual([made]);
      expect(res.retention.removed).toEqual(previous ? [previous] : []);
      // The fake is reported and left alone, never counted.
      expect(r.stderr).toContain(fake);
      expect(snaps(kdir)).toEqual([made, fake].sort());
      const v = await cli.run(['backups', 'verify', res.file]);
      expect(v.code, v.stderr).toBe(ExitCode.ok);
      previous = made;
    }
  });

  it('a full disk fails the backup with a non-zero exit, removes the partial file and leaves earlier backups intact', async () => {
    await withCluster(t.inventory, (c) => fillKv(c, 600 * 1024));
    tmpfs = join(t.stateDir, 'tmpfs');
    mkdirSync(tmpfs, { recursive: true });
    // Room for one backup (~600 KB of random data) but not two.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1000k', 'tmpfs', tmpfs]);
    const first = await cli.run(['backup', '-i', t.inventory, '--to', tmpfs, '--quiet', '--json']);
    expect(first.code, first.stderr).toBe(ExitCode.ok);
    const earlier = (JSON.parse(first.stdout) as { file: string }).file;
    const before = sha256(earlier);
    expect(statSync(earlier).size).toBeGreaterThan(500 * 1024);

    const second = await cli.run(['backup', '-i', t.inventory, '--to', tmpfs]);
    expect(second.code).toBe(ExitCode.failed);
    expect(second.stderr).toMatch(
      /No space left on the device .*partial file was removed, earlier backups are untouched/,
    );
    expect(readdirSync(tmpfs).filter((f) => f.endsWith('.partial') || f.endsWith('.tmp'))).toEqual([]);
    expect(snaps(tmpfs)).toEqual([earlier.split('/').pop()]);
    expect(sha256(earlier)).toBe(before);
    const v = await cli.run(['backups', 'verify', earlier]);
    expect(v.code).toBe(ExitCode.ok);
  });

  it('the cron line from `schedule backup` runs with no TTY and an empty environment, and exits 0', async () => {
    const cdir = join(t.stateDir, 'cron');
    const s = await cli.run([
      'schedule',
      'backup',
      '-i',
      t.inventory,
      '--to',
      cdir,
      '--every',
      '1h',
      '--image',
      'registry.example.org/vaultops:0.1.0',
    ]);
    expect(s.code, s.stderr).toBe(ExitCode.ok);
    expect(s.stdout).toContain('[Timer]');
    expect(s.stdout).toContain('kind: CronJob');
    expect(s.stdout).toContain('image: registry.example.org/vaultops:0.1.0');
    const line = s.stdout.split('\n').find((l) => /^\d+ \* \* \* \* /.test(l))!;
    expect(line).toBeDefined();
    const command = line
      .split(' ')
      .slice(5)
      .join(' ')
      .replace(/ >>.*$/, '');
    const r = spawnSync('/bin/sh', ['-c', command], {
      env: { PATH: '/usr/bin:/bin' },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 120_000,
    });
    cli.log.push({ args: ['(cron line)'], code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() });
    expect(r.status, r.stderr.toString()).toBe(0);
    expect(snaps(cdir)).toHaveLength(1);
  });

  it('reports every run to a webhook and a Prometheus textfile, keeping the last success on failure', async () => {
    const got: Array<Record<string, unknown>> = [];
    const server: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        got.push(JSON.parse(body) as Record<string, unknown>);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const hookFile = join(t.stateDir, 'hook-url');
    writeFileSync(hookFile, `http://127.0.0.1:${port}/hook`, { mode: 0o600 });
    const prom = join(t.stateDir, 'vaultops.prom');
    try {
      const ok = await cli.run([
        'backup',
        '-i',
        t.inventory,
        '--to',
        join(t.stateDir, 'notify'),
        '--notify-url',
        `file:${hookFile}`,
        '--notify-on',
        'success,failure',
        '--textfile',
        prom,
        '--quiet',
      ]);
      expect(ok.code, ok.stderr).toBe(ExitCode.ok);
      const okText = readFileSync(prom, 'utf8');
      expect(okText).toMatch(new RegExp(`vaultops_backup_last_result\\{cluster="${name}"\\} 1`));
      const lastSuccess = /vaultops_backup_last_success_timestamp_seconds\{[^}]*\} (\S+)/.exec(okText)![1];

      const blocked = join(t.stateDir, 'not-a-dir');
      writeFileSync(blocked, 'a file where the store directory should be');
      const bad = await cli.run([
        'backup',
        '-i',
        t.inventory,
        '--to',
        blocked,
        '--notify-url',
        `file:${hookFile}`,
        '--notify-on',
        'success,failure',
        '--textfile',
        prom,
        '--quiet',
      ]);
      expect(bad.code).toBe(ExitCode.failed);
      const badText = readFileSync(prom, 'utf8');
      expect(badText).toMatch(new RegExp(`vaultops_backup_last_result\\{cluster="${name}"\\} 0`));
      expect(badText).toContain(`vaultops_backup_last_success_timestamp_seconds{cluster="${name}"} ${lastSuccess}`);
      expect(got.map((g) => g['result'])).toEqual(['success', 'failure']);
      expect(got[0]).toMatchObject({ event: 'vaultops.backup', cluster: name });
      expect(typeof got[1]!['error']).toBe('string');
      expect(JSON.stringify(got)).not.toMatch(
        new RegExp(secrets.map((x) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')),
      );
    } finally {
      server.close();
    }
  });

  it('the leader killed during a backup: a clear failure, no partial file, and the next backup goes to the new leader', async () => {
    // Bigger than the kernel's socket buffers, so the kill lands mid-stream.
    await withCluster(t.inventory, (c) => fillKv(c, 24 * 1024 * 1024, 512 * 1024, 'big'));
    const kdir = join(t.stateDir, 'killed');
    const { client } = await connectCluster(t.inventory, undefined);
    let killed: string | undefined;
    try {
      const leader = (await client.findLeader()).node.name;
      const pid = t.lab.nodes.find((n) => n.name === leader)!.pid!;
      // The real server is killed for real; the store only decides when: as the first bytes arrive.
      const store = new KillOnFirstWriteStore(new LocalDirStore(kdir), async () => {
        process.kill(pid, 'SIGKILL');
        killed = leader;
        await waitFor('the killed leader to be gone', () => (isAlive(pid) ? undefined : true), 10_000, 50);
      });
      const err = await takeBackup({ cluster: client, clusterName: name, store }).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(killed).toBe(leader);
      expect(err, 'the backup must fail').toBeInstanceOf(Error);
      expect(err!.message).toMatch(/broke off|incomplete|ends early|end-of-archive/);
      expect(err!.message).not.toMatch(/^\s*at /m);
    } finally {
      client.close();
    }
    expect(existsSync(kdir) ? readdirSync(kdir) : []).toEqual([]);
    await waitFor(
      'a new leader',
      () => withCluster(t.inventory, async (c) => ((await c.findLeader()).node.name !== killed ? true : undefined)),
      60_000,
      500,
    );
    const next = await cli.run(['backup', '-i', t.inventory, '--to', kdir, '--json']);
    expect(next.code, next.stderr).toBe(ExitCode.ok);
    expect((JSON.parse(next.stdout) as { manifest: Manifest }).manifest.leader.node).not.toBe(killed);
  });

  it('SIGTERM during a backup (a scheduler stopping it): exit 130, the partial file removed, earlier backups intact', async () => {
    const sdir = join(t.stateDir, 'stopped');
    mkdirSync(sdir, { recursive: true });
    const first = await cli.run(['backup', '-i', t.inventory, '--to', sdir, '--json']);
    expect(first.code, first.stderr).toBe(ExitCode.ok);
    const kept = snaps(sdir);
    const keptSum = sha256(join(sdir, kept[0]!));
    const env = Object.fromEntries(Object.entries(t.env).filter(([k]) => !/^(VAULT|BAO)_/.test(k)));
    const child = spawn(NODE, [CLI, 'backup', '-i', t.inventory, '--to', sdir], {
      cwd: t.stateDir,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const closed = new Promise<number | null>((r) => child.on('close', r));
    // The store creates <name>.partial before it asks for the snapshot: freeze the process the moment
    // it exists, queue SIGTERM, and let it go on, so the signal lands while the backup is under way.
    await waitFor(
      'the partial file',
      () => (readdirSync(sdir).some((f) => f.endsWith('.partial')) ? true : undefined),
      30_000,
      2,
    );
    child.kill('SIGSTOP');
    child.kill('SIGTERM');
    child.kill('SIGCONT');
    const code = await closed;
    cli.log.push({ args: ['backup', '(SIGTERM)'], code, stdout, stderr });
    expect(code, stderr).toBe(ExitCode.interrupted);
    expect(stderr).toMatch(/SIGTERM: stopping the backup/);
    expect(stderr).toMatch(/interrupted; the partial file was removed/);
    expect(readdirSync(sdir).filter((f) => f.endsWith('.partial'))).toEqual([]);
    expect(snaps(sdir)).toEqual(kept);
    expect(sha256(join(sdir, kept[0]!))).toBe(keptSum);
  });

  it('no output of this file holds an unseal key or the root token', () => {
    cli.expectNoSecrets(secrets);
  });
});
