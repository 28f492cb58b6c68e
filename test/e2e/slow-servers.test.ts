import { spawn, spawnSync } from 'node:child_process';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ExitCode } from '../../src/core/exit-codes.js';
import { CliRunner } from '../helpers/cli.js';

/**
 * A server that answers its headers and then sends nothing more. A real Vault cannot be made to do
 * that (its handlers write whole bodies), so this is a scripted node:http server: what matters is
 * that the client gives up after `timeouts.request` of silence, not how a real server gets there.
 */
const TOKEN = 's.slowServerToken0123456789';
const health = {
  initialized: true,
  sealed: false,
  standby: false,
  performance_standby: false,
  replication_performance_mode: 'disabled',
  replication_dr_mode: 'disabled',
  server_time_utc: 1,
  version: '1.21.0',
  cluster_name: 'slow',
  cluster_id: '00000000-0000-4000-8000-000000000001',
};

function stall(res: ServerResponse, parked: ServerResponse[]): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.flushHeaders();
  parked.push(res);
}

describe('a server that stalls after its headers', () => {
  let dir: string;
  let cli: CliRunner;
  const servers: Server[] = [];
  const parked: ServerResponse[] = [];
  let stallAll: number;
  let stallSnapshot: number;
  let huge: number;

  const listen = async (handler: (url: string, res: ServerResponse) => void): Promise<number> => {
    const s = createServer((req, res) => handler(req.url ?? '', res));
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return (s.address() as { port: number }).port;
  };
  const inventory = (file: string, port: number, extra: Record<string, unknown> = {}) => {
    writeFileSync(
      join(dir, file),
      stringify({
        clusters: {
          slow: {
            token: 'env:SLOW_TOKEN',
            timeouts: { request: '2s' },
            nodes: [{ name: 'n1', api_addr: `http://127.0.0.1:${port}` }],
            ...extra,
          },
        },
      }),
    );
    return join(dir, file);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vaultops-slow-'));
    cli = new CliRunner({ env: { ...process.env, SLOW_TOKEN: TOKEN }, cwd: dir });
    stallAll = await listen((_u, res) => stall(res, parked));
    stallSnapshot = await listen((url, res) => {
      if (url.startsWith('/v1/sys/health'))
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(health));
      else if (url.startsWith('/v1/sys/storage/raft/snapshot')) stall(res, parked);
      else res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[]}');
    });
    // 20 MiB of JSON whitespace, sent fast: more than any Vault answer the tool reads.
    huge = await listen((_u, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(1 << 20, 0x20);
      let n = 0;
      const more = () => {
        while (n < 20) {
          n++;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end(JSON.stringify(health));
      };
      res.on('error', () => undefined);
      more();
    });
  });
  afterAll(async () => {
    for (const r of parked) r.destroy();
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('`vaultops status` gives up after timeouts.request (2 s) of silence: exit 3 and a message naming the node', async () => {
    const inv = inventory('stall-all.yml', stallAll);
    const t0 = Date.now();
    const r = await cli.run(['status', '-i', inv], { timeoutMs: 30_000 });
    const took = Date.now() - t0;
    expect(r.code, r.stdout + r.stderr).toBe(ExitCode.unreachable);
    expect(took).toBeLessThan(12_000);
    expect(r.stdout + r.stderr).toMatch(/no bytes for 2 s|did not answer/);
  });

  it('`vaultops backup` whose snapshot stream stalls after its headers fails in seconds with exit 3, leaving no partial file', async () => {
    const inv = inventory('stall-snap.yml', stallSnapshot);
    const out = join(dir, 'backups');
    const t0 = Date.now();
    const r = await cli.run(['backup', '-i', inv, '--to', out], { timeoutMs: 30_000 });
    const took = Date.now() - t0;
    expect(r.code, r.stdout + r.stderr).toBe(ExitCode.unreachable);
    expect(took).toBeLessThan(12_000);
    expect(r.stderr).toMatch(/no bytes for 2 s/);
    expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);
  });

  it('a JSON answer larger than 16 MiB is refused with a clear error instead of being buffered', async () => {
    const inv = inventory('huge.yml', huge);
    const r = await cli.run(['status', '-i', inv, '--json'], { timeoutMs: 30_000 });
    expect(r.code).toBe(ExitCode.unreachable);
    expect(r.stdout + r.stderr).toMatch(/more than 16 MiB/);
  });

  it('VAULT_SKIP_VERIFY and an http:// api_addr are warned about on stderr on every run that uses them', async () => {
    const inv = inventory('warn.yml', stallSnapshot);
    // CliRunner strips VAULT_* from its environment, so these runs spawn the CLI themselves.
    const r = await runWith(['status', '-i', inv], { VAULT_SKIP_VERIFY: 'true', BAO_SKIP_VERIFY: '' });
    expect(r.stderr).toMatch(/warning: TLS certificate verification is off \(VAULT_SKIP_VERIFY/);
    expect(r.stderr).toMatch(/warning: .*http:\/\/127\.0\.0\.1:\d+ .*plain HTTP/);
    const b = await runWith(['status', '-i', inv], { BAO_SKIP_VERIFY: '1' });
    expect(b.stderr).toMatch(/warning: TLS certificate verification is off \(BAO_SKIP_VERIFY/);
    const inv2 = inventory('warn-inv.yml', stallSnapshot, { tls: { skip_verify: true } });
    const c = await runWith(['status', '-i', inv2], {});
    expect(c.stderr).toMatch(/warning: TLS certificate verification is off \(tls\.skip_verify/);
    const quiet = await runWith(['status', '-i', inv], {});
    expect(quiet.stderr).not.toMatch(/verification is off/);
    // An S3 store on plain HTTP: warned about when it is used (here it is not even listening).
    const s3 = {
      type: 's3',
      endpoint: 'http://127.0.0.1:9',
      bucket: 'bkt',
      access_key_id: 'AK',
      secret_access_key: 'env:S3_SECRET',
    };
    const inv3 = inventory('warn-s3.yml', stallSnapshot, { stores: { s3 } });
    const l = await runWith(['backups', 'list', '-i', inv3, '--store', 's3'], { S3_SECRET: 'not-a-real-secret' });
    expect(l.stderr).toMatch(/warning: S3 endpoint http:\/\/127\.0\.0\.1:9 is plain HTTP/);
  });

  async function runWith(
    args: string[],
    env: Record<string, string>,
  ): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const { NODE, CLI } = await import('../helpers/cli.js');
    return new Promise((resolve) => {
      const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(VAULT|BAO)_/.test(k)));
      const child = spawn(NODE, [CLI, ...args], {
        cwd: dir,
        env: { ...clean, SLOW_TOKEN: TOKEN, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      child.on('close', (code) => {
        cli.log.push({ args, code, stdout, stderr });
        resolve({ code, stdout, stderr });
      });
    });
  }

  it('the cron line of `schedule backup` is bounded in time and skips a run while the previous one still holds the lock', async () => {
    const inv = inventory('cron.yml', stallSnapshot);
    const out = join(dir, 'cron-backups');
    const s = await cli.run([
      'schedule',
      'backup',
      '-i',
      inv,
      '--to',
      out,
      '--every',
      '1h',
      '--image',
      'registry.example.org/vaultops:0.1.0',
    ]);
    expect(s.code, s.stderr).toBe(ExitCode.ok);
    const line = s.stdout.split('\n').find((l) => /^\d+ \* \* \* \* \//.test(l))!;
    expect(line).toMatch(
      / \/usr\/bin\/flock -n -E 75 \/tmp\/vaultops-backup-slow\.lock \/usr\/bin\/timeout --kill-after=60 3600 \//,
    );
    expect(s.stdout).toMatch(/TimeoutStartSec=1h/);
    expect(s.stdout).toMatch(/concurrencyPolicy: Forbid/);
    expect(s.stdout).toMatch(/activeDeadlineSeconds: 3600/);
    const command = line
      .split(' ')
      .slice(5)
      .join(' ')
      .replace(/ >>.*$/, '');
    // Another run holds the lock: this one must exit at once (75) without starting a backup.
    const holder = spawn('/usr/bin/flock', ['/tmp/vaultops-backup-slow.lock', 'sleep', '20'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      const r = spawnSync('/bin/sh', ['-c', command], {
        env: { PATH: '/usr/bin:/bin' },
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 20_000,
      });
      expect(r.status).toBe(75);
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(existsSync(out)).toBe(false);
    } finally {
      holder.kill();
    }
  });

  it('no output holds the token', () => {
    cli.expectNoSecrets([TOKEN]);
  });
});
