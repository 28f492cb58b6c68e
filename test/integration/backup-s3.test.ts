import { execFileSync, spawnSync } from 'node:child_process';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ExitCode } from '../../src/core/exit-codes.js';
import type { Manifest } from '../../src/backup/stores/manifest.js';
import type { S3Client } from '../helpers/s3-raw-client.js';
import type { DrillReport } from '../../src/drill/run-drill.js';
import { CliRunner, labSecrets } from '../helpers/cli.js';
import { ensureKv, fillKv, kvGet, kvPut, withCluster } from '../helpers/backup-lab.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { startS3Server, type S3Server } from '../helpers/s3-server.js';
import { generateAgeIdentity } from '../../src/backup/crypto/age.js';

/**
 * The S3 backup store against a real S3-compatible server (versitygw with its POSIX backend, built
 * from the Go module proxy: see test/helpers/s3-server.ts), on one lab. One flavour is enough: the
 * store only talks to the S3 server, and the snapshot it receives goes through the same streaming
 * verifier that backup-snapshot.test.ts runs against both flavours. The server's files are on this
 * machine, so a full disk is a small tmpfs under its root.
 */
const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const flavor = flavorsUnderTest().find((f) => f.flavor === 'openbao') ?? flavorsUnderTest()[0]!;

describe(`the S3 backup store on a ${flavor.flavor} ${flavor.version} lab with a real S3 server (versitygw)`, () => {
  const name = 'i-s3';
  let t: TestLab;
  let s3: S3Server;
  let bucket: S3Client;
  let cli: CliRunner;
  let secrets: string[];
  let inv: string;
  let fullRoot: string | undefined;
  const secretKey = `s3secret-${randomBytes(12).toString('hex')}`;
  const canaryValue = `canary-${randomBytes(8).toString('hex')}`;
  const age = generateAgeIdentity();
  let flaky: Server;
  /** Part numbers the flaky proxy answered 503 SlowDown, in order. */
  const slowedDown: number[] = [];
  /** How many times each part number is refused before the proxy lets it through. */
  let refusals: (part: number) => number = () => 0;

  /** Object keys in the bucket under `prefix`, sorted. */
  const keys = async (client: S3Client, prefix: string): Promise<string[]> => {
    const r = await client.ok('GET', undefined, { 'list-type': '2', prefix });
    return [...r.body.toString('utf8').matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]!).sort();
  };
  const pendingUploads = async (client: S3Client): Promise<number> =>
    (await client.ok('GET', undefined, { uploads: '' })).body.toString('utf8').split('<Upload>').length - 1;

  beforeAll(async () => {
    t = await startTestLab({ name, flavor: flavor.flavor, version: flavor.version });
    s3 = await startS3Server(join(t.stateDir, 's3', 'root'), secretKey);
    bucket = s3.client('vault-backups');
    await bucket.ok('PUT', undefined);
    flaky = await startFlakyProxy(new URL(s3.endpoint), (part, seen) => {
      if (seen >= refusals(part)) return false;
      slowedDown.push(part);
      return true;
    });
    cli = new CliRunner({ env: { ...t.env, S3_SECRET: secretKey }, cwd: t.stateDir });
    secrets = [...labSecrets(t.lab.initFile), secretKey, canaryValue];
    await withCluster(t.inventory, async (c) => {
      await ensureKv(c);
      await kvPut(c, 'canary', canaryValue);
    });
    const doc = parse(readFileSync(t.inventory, 'utf8')) as { clusters: Record<string, Record<string, unknown>> };
    const store = (b: string, extra: Record<string, unknown> = {}) => ({
      type: 's3',
      endpoint: s3.endpoint,
      bucket: b,
      prefix: 'prod/vault',
      access_key_id: s3.accessKey,
      secret_access_key: 'env:S3_SECRET',
      ...extra,
    });
    doc.clusters[name]!['stores'] = {
      offsite: store('vault-backups', { keep_last: 2 }),
      full: store('full-bucket'),
      wrongkey: { ...store('vault-backups'), secret_access_key: 'env:S3_WRONG' },
      flaky: {
        ...store('vault-backups'),
        endpoint: `http://127.0.0.1:${(flaky.address() as AddressInfo).port}`,
        prefix: 'prod/flaky',
      },
      sha256parts: { ...store('vault-backups'), prefix: 'prod/sha256', checksum: 'SHA256' },
      nochecksum: { ...store('vault-backups'), prefix: 'prod/none', checksum: 'none' },
      flakyonce: {
        ...store('vault-backups'),
        endpoint: `http://127.0.0.1:${(flaky.address() as AddressInfo).port}`,
        prefix: 'prod/flaky-once',
        max_attempts: 1,
      },
      // No keys in the store: the AWS SDK's credential chain finds them.
      chainprofile: {
        type: 's3',
        endpoint: s3.endpoint,
        bucket: 'vault-backups',
        prefix: 'prod/chain-profile',
        profile: 'backup',
      },
      chain: { type: 's3', endpoint: s3.endpoint, bucket: 'vault-backups', prefix: 'prod/chain' },
      sealed: {
        ...store('vault-backups'),
        prefix: 'prod/encrypted',
        encrypt: { age: [age.recipient] },
        decrypt: { identity: `file:${join(t.stateDir, 'age-identity.txt')}` },
      },
    };
    doc.clusters[name]!['canaries'] = [{ path: 'kv/canary', field: 'value', expect_sha256: sha256(canaryValue) }];
    writeFileSync(join(t.stateDir, 'age-identity.txt'), `${age.identity}\n`, { mode: 0o600 });
    secrets.push(age.identity);
    inv = join(t.stateDir, 's3.yml');
    writeFileSync(inv, stringify(doc));
  });
  afterAll(async () => {
    cli?.expectNoSecrets(secrets);
    bucket?.close();
    await new Promise((resolve) => (flaky ? flaky.close(resolve) : resolve(undefined)));
    await s3?.stop();
    if (fullRoot && spawnSync('mountpoint', ['-q', fullRoot]).status === 0) execFileSync('umount', [fullRoot]);
    await t?.destroy();
  });

  it('`vaultops backup --store offsite` sends a verified snapshot as a multipart upload, with sidecar and manifest, nothing pending', async () => {
    const r = await cli.run(['backup', '-i', inv, '--store', 'offsite', '--json']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const res = JSON.parse(r.stdout) as { file: string; manifest: Manifest };
    expect(res.file).toBe(`s3://vault-backups/prod/vault/${res.manifest.file}`);
    const key = `prod/vault/${res.manifest.file}`;
    expect(await keys(bucket, 'prod/vault/')).toEqual([key, `${key}.json`, `${key}.sha256`]);
    const object = (await bucket.ok('GET', key)).body;
    expect(sha256(object)).toBe(res.manifest.sha256);
    expect(object.length).toBe(res.manifest.size);
    expect((await bucket.ok('GET', `${key}.sha256`)).body.toString()).toBe(
      `${res.manifest.sha256}  ${res.manifest.file}\n`,
    );
    expect(JSON.parse((await bucket.ok('GET', `${key}.json`)).body.toString())).toEqual(res.manifest);
    expect(await pendingUploads(bucket)).toBe(0);
  });

  it('`backups list|verify|inspect` work through the store, and a tampered object fails verify', async () => {
    const l = await cli.run(['backups', 'list', '-i', inv, '--store', 'offsite', '--json']);
    expect(l.code, l.stderr).toBe(ExitCode.ok);
    const listed = JSON.parse(l.stdout) as { store: string; backups: Array<{ name: string; verified: boolean }> };
    expect(listed.store).toBe('s3://vault-backups/prod/vault');
    expect(listed.backups.map((b) => b.verified)).toEqual([true]);
    const snap = listed.backups[0]!.name;
    const v = await cli.run(['backups', 'verify', snap, '-i', inv, '--store', 'offsite']);
    expect(v.code, v.stderr).toBe(ExitCode.ok);
    expect(v.stdout).toMatch(/^OK .*matches its manifest/);
    const i = await cli.run(['backups', 'inspect', snap, '-i', inv, '--store', 'offsite']);
    expect(i.code, i.stderr).toBe(ExitCode.ok);
    expect(i.stdout).toContain(`Key set:       ${name}-init`);

    const bad = snap.replace(/\.snap$/, '-bad.snap');
    const data = Buffer.from((await bucket.ok('GET', `prod/vault/${snap}`)).body);
    data[Math.floor(data.length / 2)]! ^= 0xff;
    await bucket.ok('PUT', `prod/vault/${bad}`, {}, data);
    const vb = await cli.run(['backups', 'verify', bad, '-i', inv, '--store', 'offsite']);
    expect(vb.code).toBe(ExitCode.failed);
    await bucket.ok('DELETE', `prod/vault/${bad}`);
  });

  it("an age-encrypted S3 store: only ciphertext is uploaded, and `backups verify` opens it with the store's identity", async () => {
    const r = await cli.run(['backup', '-i', inv, '--store', 'sealed', '--json']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const m = (JSON.parse(r.stdout) as { manifest: Manifest }).manifest;
    expect(m.file).toMatch(/\.snap\.age$/);
    const object = (await bucket.ok('GET', `prod/encrypted/${m.file}`)).body;
    expect(object.subarray(0, 21).toString('latin1')).toBe('age-encryption.org/v1');
    expect(m.encryption).toMatchObject({
      format: 'age',
      recipients: [age.recipient],
      stored_size: object.length,
      stored_sha256: sha256(object),
    });
    expect(await pendingUploads(bucket)).toBe(0);
    const v = await cli.run(['backups', 'verify', m.file, '-i', inv, '--store', 'sealed']);
    expect(v.code, v.stderr).toBe(ExitCode.ok);
    expect(v.stdout).toMatch(/^OK /);
  });

  it('a wrong secret key is refused by the server with a clear error; nothing is stored', async () => {
    const before = await keys(bucket, 'prod/vault/');
    const r = await cli.run(['backup', '-i', inv, '--store', 'wrongkey'], {});
    expect(r.code).toBe(ExitCode.badInput);
    const withWrong = await new CliRunner({
      env: { ...t.env, S3_SECRET: secretKey, S3_WRONG: 'not-the-key' },
      cwd: t.stateDir,
    }).run(['backup', '-i', inv, '--store', 'wrongkey']);
    cli.log.push(withWrong);
    expect(withWrong.code).toBe(ExitCode.failed);
    expect(withWrong.stderr).toMatch(/S3 .* failed: HTTP 403/);
    expect(withWrong.stderr).toMatch(/access_key_id \/ secret_access_key/);
    expect(`${withWrong.stdout}${withWrong.stderr}`).not.toContain('not-the-key');
    expect(await keys(bucket, 'prod/vault/')).toEqual(before);
  });

  it('a full disk on the S3 server fails the backup, leaves no object and no pending upload, and keeps earlier backups', async () => {
    await withCluster(t.inventory, (c) => fillKv(c, 3 * 1024 * 1024, 512 * 1024, 'big'));
    fullRoot = join(s3.root, 'full-bucket');
    mkdirSync(fullRoot, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', fullRoot]);
    const full = s3.client('full-bucket');
    try {
      const r = await cli.run(['backup', '-i', inv, '--store', 'full']);
      expect(r.code).not.toBe(ExitCode.ok);
      expect(r.stderr).toMatch(/S3 .* failed/);
      expect(await keys(full, 'prod/vault/')).toEqual([]);
      expect(await pendingUploads(full)).toBe(0);
      expect((await keys(bucket, 'prod/vault/')).filter((k) => k.endsWith('.snap'))).toHaveLength(1);
    } finally {
      full.close();
    }
  });

  it('`restore --latest --store offsite` downloads, verifies and restores from S3, and the canary comes back', async () => {
    await withCluster(t.inventory, (c) => kvPut(c, 'canary', 'changed after the backup'));
    const r = await cli.run(
      ['restore', '-i', inv, '--latest', '--store', 'offsite', '--confirm', name, '--non-interactive', '--json'],
      { timeoutMs: 240_000 },
    );
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const res = JSON.parse(r.stdout) as { safety_snapshot: string; canaries: Array<{ path: string; result: string }> };
    expect(res.safety_snapshot).toMatch(/^s3:\/\/vault-backups\/prod\/vault\/.*-pre-restore\.snap$/);
    expect(res.canaries).toEqual([expect.objectContaining({ path: 'kv/canary', result: 'match' })]);
    expect(await withCluster(t.inventory, (c) => kvGet(c, 'canary'))).toBe(canaryValue);
  });

  it('`drill --from offsite` restores the newest S3 backup into a scratch cluster, checks the canary and tears it down', async () => {
    const r = await cli.run(
      [
        'drill',
        '-i',
        inv,
        '--from',
        'offsite',
        '--report-dir',
        join(t.stateDir, 'drills'),
        '--non-interactive',
        '--json',
      ],
      { timeoutMs: 400_000 },
    );
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const report = JSON.parse(r.stdout) as DrillReport;
    expect(report.result).toBe('passed');
    expect(report.backup?.location).toBe('s3://vault-backups/prod/vault');
    expect(report.canaries.map((c) => [c.path, c.result])).toEqual([['kv/canary', 'match']]);
    expect(report.scratch).toMatchObject({ torn_down: true, processes_left: 0 });
  });

  it('retention through the store: keep_last 2 after a third backup removes exactly the oldest, --dry-run first only lists', async () => {
    const r = await cli.run(['backup', '-i', inv, '--store', 'offsite', '--no-prune', '--json']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const snaps = async () => (await keys(bucket, 'prod/vault/')).filter((k) => /\.snap$/.test(k));
    const all = await snaps();
    expect(all).toHaveLength(3);
    const dry = await cli.run(['backups', 'prune', '-i', inv, '--store', 'offsite', '--dry-run', '--json']);
    expect(dry.code, dry.stderr).toBe(ExitCode.ok);
    expect(await snaps()).toEqual(all);
    const p = await cli.run(['backups', 'prune', '-i', inv, '--store', 'offsite', '--json']);
    expect(p.code, p.stderr).toBe(ExitCode.ok);
    const left = await snaps();
    expect(left).toHaveLength(2);
    const removed = all.filter((k) => !left.includes(k));
    expect(removed).toHaveLength(1);
    expect(await keys(bucket, removed[0]!)).toEqual([]);
    expect(existsSync(join(s3.root, 'vault-backups', removed[0]!))).toBe(false);
  });

  it('parts the S3 service answers 503 SlowDown are sent again: the backup completes, and the stored snapshot verifies', async () => {
    // About 20 MB of data: a snapshot of four or five 5 MiB parts.
    await withCluster(t.inventory, (c) => fillKv(c, 17 * 1024 * 1024, 512 * 1024, 'parts'));
    slowedDown.length = 0;
    // Every part is refused once, part 2 twice (the SDK makes 3 attempts by default).
    refusals = (part) => (part === 2 ? 2 : 1);
    const r = await cli.run(['backup', '-i', inv, '--store', 'flaky', '--json'], { timeoutMs: 240_000 });
    refusals = () => 0;
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const m = (JSON.parse(r.stdout) as { manifest: Manifest }).manifest;
    expect(m.size).toBeGreaterThan(15 << 20);
    expect(slowedDown.filter((p) => p === 2)).toHaveLength(2);
    const parts = Math.ceil(m.size / (5 << 20));
    expect(new Set(slowedDown)).toEqual(new Set(Array.from({ length: parts }, (_, i) => i + 1)));
    const object = (await bucket.ok('GET', `prod/flaky/${m.file}`, {}, undefined, {}, 64 << 20)).body;
    expect(object.length).toBe(m.size);
    expect(sha256(object)).toBe(m.sha256);
    expect(await pendingUploads(bucket)).toBe(0);
    const v = await cli.run(['backups', 'verify', m.file, '-i', inv, '--store', 'flaky']);
    expect(v.code, v.stderr).toBe(ExitCode.ok);
    expect(v.stdout).toMatch(/^OK .*matches its manifest/);
  });

  it('`checksum: SHA256` and `checksum: none` stores keep a multipart snapshot that matches its manifest', async () => {
    for (const [store, prefix] of [
      ['sha256parts', 'prod/sha256'],
      ['nochecksum', 'prod/none'],
    ] as const) {
      const r = await cli.run(['backup', '-i', inv, '--store', store, '--json'], { timeoutMs: 240_000 });
      expect(r.code, `${store}: ${r.stderr}`).toBe(ExitCode.ok);
      const m = (JSON.parse(r.stdout) as { manifest: Manifest }).manifest;
      expect(m.size, store).toBeGreaterThan(5 << 20);
      const object = (await bucket.ok('GET', `${prefix}/${m.file}`, {}, undefined, {}, 64 << 20)).body;
      expect(sha256(object), store).toBe(m.sha256);
    }
    expect(await pendingUploads(bucket)).toBe(0);
  });

  it('a store without keys takes them from the AWS credential chain: a named profile, the environment, a container credentials endpoint', async () => {
    // Every source this machine can really serve; instance metadata (IMDSv2) and web identity need AWS itself.
    const none = join(t.stateDir, 'no-such-aws-file');
    const isolated = { AWS_CONFIG_FILE: none, AWS_SHARED_CREDENTIALS_FILE: none, AWS_EC2_METADATA_DISABLED: 'true' };
    const credentialsFile = join(t.stateDir, 'aws-credentials');
    writeFileSync(
      credentialsFile,
      `[default]\naws_access_key_id = WRONGKEY\naws_secret_access_key = wrong\n\n[backup]\naws_access_key_id = ${s3.accessKey}\naws_secret_access_key = ${secretKey}\n`,
      { mode: 0o600 },
    );
    // The container endpoint (ECS, EKS Pod Identity) answers with short-lived keys; the SDK asks it on
    // loopback over http, as it asks the real one inside a task.
    let asked = 0;
    const endpoint = createServer((_req, res) => {
      asked++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          AccessKeyId: s3.accessKey,
          SecretAccessKey: secretKey,
          Token: '',
          Expiration: new Date(Date.now() + 3600_000).toISOString(),
        }),
      );
    });
    await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
    const runs: Array<[string, string, NodeJS.ProcessEnv]> = [
      ['chainprofile', 'prod/chain-profile/', { ...isolated, AWS_SHARED_CREDENTIALS_FILE: credentialsFile }],
      ['chain', 'prod/chain/', { ...isolated, AWS_ACCESS_KEY_ID: s3.accessKey, AWS_SECRET_ACCESS_KEY: secretKey }],
      [
        'chain',
        'prod/chain/',
        {
          ...isolated,
          AWS_CONTAINER_CREDENTIALS_FULL_URI: `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/creds`,
        },
      ],
    ];
    try {
      for (const [storeName, prefix, env] of runs) {
        const before = (await keys(bucket, prefix)).length;
        const runner = new CliRunner({ env: { ...t.env, ...env }, cwd: t.stateDir });
        const r = await runner.run(['backup', '-i', inv, '--store', storeName, '--json']);
        cli.log.push(r);
        expect(r.code, `${storeName} ${Object.keys(env).join(',')}: ${r.stderr}`).toBe(ExitCode.ok);
        const res = JSON.parse(r.stdout) as { manifest: Manifest };
        // Read back through the same chain: the stored object verifies against its manifest.
        const v = await runner.run(['backups', 'verify', res.manifest.file, '-i', inv, '--store', storeName]);
        cli.log.push(v);
        expect(v.code, v.stderr).toBe(ExitCode.ok);
        expect((await keys(bucket, prefix)).length).toBe(before + 3);
      }
      expect(asked).toBeGreaterThan(0);
    } finally {
      await new Promise((resolve) => endpoint.close(resolve));
    }
  });

  it('a part refused more often than max_attempts fails the backup: no object, no pending upload', async () => {
    slowedDown.length = 0;
    refusals = (part) => (part === 2 ? 1 : 0);
    const r = await cli.run(['backup', '-i', inv, '--store', 'flakyonce'], { timeoutMs: 240_000 });
    refusals = () => 0;
    expect(r.code).toBe(ExitCode.failed);
    expect(r.stderr).toMatch(/S3 PUT prod\/flaky-once\/\S+ \(part 2\) failed: HTTP 503 SlowDown/);
    expect(slowedDown).toEqual([2]);
    expect(await keys(bucket, 'prod/flaky-once/')).toEqual([]);
    expect(await pendingUploads(bucket)).toBe(0);
  });
});

/**
 * A reverse proxy in front of versitygw that answers 503 SlowDown to UploadPart requests while
 * `refuse(partNumber, timesSeenBefore)` says so (counted per upload), and passes everything else through unchanged (the
 * client signed the proxy's Host, which reaches the server as sent). A fake only for this fault: a
 * real S3 service slows a client down when it is overloaded, not on demand.
 */
async function startFlakyProxy(upstream: URL, refuse: (part: number, seen: number) => boolean): Promise<Server> {
  /** Attempts per part of each upload. */
  const seen = new Map<string, number>();
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const part =
      req.method === 'PUT' && url.searchParams.has('uploadId') ? Number(url.searchParams.get('partNumber')) : 0;
    if (part > 0) {
      const id = `${url.searchParams.get('uploadId')} ${part}`;
      const n = seen.get(id) ?? 0;
      seen.set(id, n + 1);
      if (refuse(part, n)) {
        req.resume();
        req.on('end', () => {
          res.writeHead(503, { 'content-type': 'application/xml' });
          res.end(
            '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>',
          );
        });
        return;
      }
    }
    const up = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}
