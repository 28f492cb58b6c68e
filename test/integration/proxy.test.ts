import { spawn, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer, connect } from 'node:net';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { Transport } from '../../src/vault/transport.js';
import { sendWebhook } from '../../src/notify/notify.js';
import { VaultopsError } from '../../src/core/errors.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { CliRunner, waitFor } from '../helpers/cli.js';
import { startS3Server, type S3Server } from '../helpers/s3-server.js';

/**
 * HTTPS_PROXY / HTTP_PROXY / NO_PROXY for every HTTP client of the tool, through a real proxy
 * (Debian's tinyproxy) that this file runs on 127.0.0.1 with its own config: the Vault API (https,
 * CONNECT tunnel), the raw snapshot download, S3 (versitygw, plain http: a forward proxy) and a
 * webhook. The proxy's own log is the witness that a request went through it.
 */
const flavor = flavorsUnderTest()[0]!;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe(`HTTPS_PROXY and NO_PROXY through a real tinyproxy (${flavor.flavor} lab)`, () => {
  let t: TestLab;
  let s3: S3Server;
  let proxy: ChildProcess;
  let proxyUrl: string;
  let proxyLog: string;
  let hook: Server;
  let hookUrl: string;
  const hookBodies: string[] = [];
  const saved: Record<string, string | undefined> = {};
  const setEnv = (vars: Record<string, string | undefined>) => {
    for (const [name, value] of Object.entries(vars)) {
      if (!(name in saved)) saved[name] = process.env[name];
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
  const PROXY_VARS = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy'];
  const clearProxyEnv = () => setEnv(Object.fromEntries(PROXY_VARS.map((v) => [v, undefined])));
  /** Lines the proxy logged since `from` (a length of the log). */
  const logSince = (from: number) => readFileSync(proxyLog, 'utf8').slice(from);
  const logSize = () => readFileSync(proxyLog, 'utf8').length;
  const node = () => t.lab.nodes[0]!;
  const api = () => new URL(node().apiAddr);

  beforeAll(async () => {
    t = await startTestLab({
      name: `c-proxy-${flavor.flavor}`,
      flavor: flavor.flavor,
      version: flavor.version,
      nodes: 1,
    });
    s3 = await startS3Server(join(t.stateDir, 's3', 'root'), `s3-secret-${Date.now()}`);
    const port = await freePort();
    const hookPort = await freePort();
    const dir = join(t.stateDir, 'tinyproxy');
    mkdirSync(dir, { recursive: true });
    proxyLog = join(dir, 'tinyproxy.log');
    const conf = join(dir, 'tinyproxy.conf');
    writeFileSync(
      conf,
      [
        `Port ${port}`,
        'Listen 127.0.0.1',
        'Timeout 60',
        `LogFile "${proxyLog}"`,
        'LogLevel Connect',
        'MaxClients 50',
        'Allow 127.0.0.0/8',
        // CONNECT only to the Vault API port: a tunnel anywhere else is refused (403).
        `ConnectPort ${api().port || 443}`,
        'DisableViaHeader Yes',
        '',
      ].join('\n'),
    );
    proxy = spawn('tinyproxy', ['-d', '-c', conf], { stdio: 'ignore' });
    proxyUrl = `http://127.0.0.1:${port}`;
    await waitFor(
      'tinyproxy to listen',
      () =>
        new Promise<true | undefined>((resolve) => {
          const s = connect(port, '127.0.0.1', () => {
            s.end();
            resolve(true);
          });
          s.once('error', () => resolve(undefined));
        }),
      15_000,
      100,
    );
    expect(existsSync(proxyLog)).toBe(true);
    // The webhook receiver: a plain HTTP server standing in for Slack or an alerting endpoint.
    hook = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        hookBodies.push(body);
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => hook.listen(hookPort, '127.0.0.1', resolve));
    hookUrl = `http://127.0.0.1:${hookPort}/hooks/backup`;
  });

  afterAll(async () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    if (process.env['PROXY_TEST_DEBUG'] && proxyLog) writeFileSync('/tmp/ssh-tp-last.log', readFileSync(proxyLog));
    proxy?.kill('SIGTERM');
    await new Promise<void>((resolve) => (hook ? hook.close(() => resolve()) : resolve()));
    await s3?.stop();
    await t?.destroy();
  });

  it('vaultops status and backup reach Vault through HTTPS_PROXY (a CONNECT tunnel); NO_PROXY sends them direct', async () => {
    const env = { ...t.env };
    for (const v of PROXY_VARS) delete env[v];
    // A one-node lab reports itself degraded (exit 5: no fault tolerance); through the proxy it must say the same.
    const baseline = (await new CliRunner({ env, cwd: t.stateDir }).run(['status', '-i', t.inventory])).code;
    expect([0, 5]).toContain(baseline);
    const via = new CliRunner({ env: { ...env, HTTPS_PROXY: proxyUrl }, cwd: t.stateDir });
    let from = logSize();
    const status = await via.run(['status', '-i', t.inventory]);
    expect(status.code, status.stdout + status.stderr).toBe(baseline);
    const tunnel = `CONNECT ${api().host} HTTP/1.1`;
    expect(logSince(from)).toContain(tunnel);

    from = logSize();
    const backup = await via.run([
      'backup',
      '-i',
      t.inventory,
      '--to',
      join(t.stateDir, 'backups'),
      '--json',
      '--quiet',
    ]);
    expect(backup.code, backup.stderr).toBe(0);
    expect(logSince(from)).toContain(tunnel);

    // NO_PROXY as curl reads it: by address, by CIDR range, by host:port, and * (lower-case names too).
    for (const noProxy of [
      { NO_PROXY: node().ip },
      { no_proxy: '127.0.0.0/8' },
      { NO_PROXY: api().host },
      { NO_PROXY: '*' },
    ]) {
      const direct = new CliRunner({ env: { ...env, HTTPS_PROXY: proxyUrl, ...noProxy }, cwd: t.stateDir });
      from = logSize();
      const r = await direct.run(['status', '-i', t.inventory]);
      expect(r.code, `${JSON.stringify(noProxy)}: ${r.stdout}${r.stderr}`).toBe(baseline);
      expect(logSince(from), JSON.stringify(noProxy)).not.toContain('CONNECT');
    }
    // A NO_PROXY entry for another port does not apply.
    const otherPort = new CliRunner({
      env: { ...env, https_proxy: proxyUrl, NO_PROXY: `${node().ip}:1` },
      cwd: t.stateDir,
    });
    from = logSize();
    expect((await otherPort.run(['status', '-i', t.inventory])).code).toBe(baseline);
    expect(logSince(from)).toContain(tunnel);
    for (const secret of t.secrets) expect(via.allOutput()).not.toContain(secret);
  });

  it('the raw snapshot download goes through the tunnel and arrives whole', async () => {
    clearProxyEnv();
    setEnv({ HTTPS_PROXY: proxyUrl });
    const transport = new Transport({ tls: { caCert: t.lab.caCert } });
    try {
      const from = logSize();
      const url = new URL('/v1/sys/storage/raft/snapshot', node().apiAddr);
      const d = await transport.download({ url, headers: { 'X-Vault-Token': t.init.root_token } });
      expect(d.status).toBe(200);
      const body = await d.readAll(512 << 20);
      // A Raft snapshot is a gzip'd tar: the gzip magic proves the bytes came through TLS intact.
      expect(body.subarray(0, 2).toString('hex')).toBe('1f8b');
      expect(logSince(from)).toContain(`CONNECT ${api().host} HTTP/1.1`);
    } finally {
      transport.close();
      clearProxyEnv();
    }
  });

  it('S3 requests and webhooks to http:// endpoints go through HTTP_PROXY (absolute URLs), and NO_PROXY bypasses it', async () => {
    clearProxyEnv();
    const s3Url = new URL(s3.endpoint);
    // The bucket is made and read back directly, by a client of the tests' own (not the store's).
    const bucket = s3.client('proxied-bucket');
    const env: NodeJS.ProcessEnv = { ...t.env, S3_SECRET: s3.secretKey };
    for (const v of PROXY_VARS) delete env[v];
    const inventory = join(t.stateDir, 'proxy-s3.yml');
    const doc = parse(readFileSync(t.inventory, 'utf8')) as { clusters: Record<string, Record<string, unknown>> };
    for (const c of Object.values(doc.clusters))
      c['stores'] = {
        offsite: {
          type: 's3',
          endpoint: s3.endpoint,
          bucket: 'proxied-bucket',
          prefix: 'prod',
          access_key_id: s3.accessKey,
          secret_access_key: 'env:S3_SECRET',
        },
      };
    writeFileSync(inventory, stringify(doc));
    const via = new CliRunner({ env: { ...env, HTTP_PROXY: proxyUrl }, cwd: t.stateDir });
    try {
      await bucket.ok('PUT', undefined);
      let from = logSize();
      const r = await via.run(['backup', '-i', inventory, '--store', 'offsite', '--json', '--quiet']);
      expect(r.code, r.stderr).toBe(0);
      const file = (JSON.parse(r.stdout) as { manifest: { file: string; sha256: string } }).manifest;
      const seen = logSince(from);
      const target = `http://${s3Url.host}/proxied-bucket/prod/${file.file}`;
      expect(seen).toContain(`POST ${target}?uploads`);
      expect(seen).toMatch(new RegExp(`PUT ${target.replace(/[.?]/g, '\\$&')}\\?\\S*partNumber=1\\S* HTTP/1.1`));
      expect(seen).toContain(`PUT ${target}.json`);
      const stored = (await bucket.ok('GET', `prod/${file.file}`)).body;
      expect(createHash('sha256').update(stored).digest('hex')).toBe(file.sha256);

      from = logSize();
      setEnv({ HTTP_PROXY: proxyUrl });
      await sendWebhook(hookUrl, {
        cluster: 'c1',
        result: 'success',
        startedAt: new Date(),
        finishedAt: new Date(),
        file: 'x.snap',
        size: 1,
        exitCode: 0,
      });
      expect(logSince(from)).toContain(`POST ${hookUrl} HTTP/1.1`);

      // NO_PROXY sends the store's requests and webhooks direct.
      setEnv({ no_proxy: 'localhost,127.0.0.1' });
      from = logSize();
      const direct = new CliRunner({
        env: { ...env, HTTP_PROXY: proxyUrl, no_proxy: 'localhost,127.0.0.1' },
        cwd: t.stateDir,
      });
      const l = await direct.run(['backups', 'list', '-i', inventory, '--store', 'offsite', '--json']);
      expect(l.code, l.stderr).toBe(0);
      expect((JSON.parse(l.stdout) as { backups: Array<{ name: string }> }).backups.map((b) => b.name)).toEqual([
        file.file,
      ]);
      await sendWebhook(hookUrl, {
        cluster: 'c2',
        result: 'success',
        startedAt: new Date(),
        finishedAt: new Date(),
        exitCode: 0,
      });
      expect(hookBodies.at(-1)).toContain('"cluster":"c2"');
      expect(logSince(from)).toBe('');
      for (const out of [via.allOutput(), direct.allOutput()]) expect(out).not.toContain(s3.secretKey);
    } finally {
      bucket.close();
      clearProxyEnv();
    }
  });

  it('a proxy that is down or refuses the port gives an error naming the proxy, not the server', async () => {
    const env = { ...t.env };
    for (const v of PROXY_VARS) delete env[v];
    const down = `http://127.0.0.1:${await freePort()}`;
    const cli = new CliRunner({ env: { ...env, HTTPS_PROXY: down }, cwd: t.stateDir });
    const r = await cli.run(['status', '-i', t.inventory]);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toContain(`Cannot reach the proxy ${down} (from HTTPS_PROXY)`);

    clearProxyEnv();
    setEnv({ HTTPS_PROXY: down });
    const transport = new Transport({ tls: { caCert: t.lab.caCert }, retries: 0 });
    try {
      const e = await transport.download({ url: new URL('/v1/sys/health', node().apiAddr) }).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(VaultopsError);
      expect((e as VaultopsError).message).toContain(`Cannot reach the proxy ${down}`);
      expect((e as VaultopsError).hint).toContain('NO_PROXY');

      // tinyproxy allows CONNECT to the Vault port only: a tunnel to another port is refused with 403.
      setEnv({ HTTPS_PROXY: proxyUrl });
      const refused = await transport
        .request({ method: 'GET', url: new URL(`https://${node().ip}:1/v1/sys/health`) })
        .then(
          () => undefined,
          (x: unknown) => x,
        );
      expect(refused).toBeInstanceOf(VaultopsError);
      expect((refused as VaultopsError).message).toMatch(
        /proxy http:\/\/127\.0\.0\.1:\d+ \(from HTTPS_PROXY\) refused to open a tunnel to .*:1: HTTP\/1\.[01] 403/,
      );

      // Credentials in the proxy URL never show in a message.
      setEnv({ HTTPS_PROXY: down.replace('http://', 'http://ops:pr0xy-pa55@') });
      const withCreds = await transport.request({ method: 'GET', url: new URL('/v1/sys/health', node().apiAddr) }).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(JSON.stringify([(withCreds as VaultopsError).message, (withCreds as VaultopsError).hint])).not.toContain(
        'pr0xy-pa55',
      );
    } finally {
      transport.close();
      clearProxyEnv();
    }
  });
});
