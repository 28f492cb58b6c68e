import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { cacheDir } from '../../src/lab/paths.js';
import { withFileLock } from '../../src/lab/file-lock.js';
import { S3Client } from './s3-raw-client.js';

/**
 * A real S3-compatible server for the S3 store tests: versitygw (Versity S3 Gateway, Apache-2.0) with
 * its POSIX backend, built once per machine from the Go module proxy into the vaultops cache (~1 min),
 * like HashiCorp Vault. It listens on 127.0.0.1 only.
 */
export const VERSITYGW_VERSION = 'v1.8.0';

export function versitygwPath(): string {
  return join(cacheDir(), 'versitygw', VERSITYGW_VERSION, 'versitygw');
}

export async function ensureVersitygw(onProgress: (m: string) => void = () => undefined): Promise<string> {
  const bin = versitygwPath();
  if (existsSync(bin)) return bin;
  const dir = join(cacheDir(), 'versitygw', VERSITYGW_VERSION);
  mkdirSync(dir, { recursive: true });
  return withFileLock(join(dir, '.lock'), onProgress, async () => {
    if (existsSync(bin)) return bin;
    onProgress(`building versitygw ${VERSITYGW_VERSION} with go install (about a minute)...`);
    const r = spawnSync(
      'go',
      ['install', '-trimpath', '-ldflags', '-s -w', `github.com/versity/versitygw/cmd/versitygw@${VERSITYGW_VERSION}`],
      {
        env: { ...process.env, GOBIN: dir, GOTOOLCHAIN: 'local', CGO_ENABLED: '0' },
        encoding: 'utf8',
      },
    );
    if (r.status !== 0 || !existsSync(bin))
      throw new Error(
        `go install versitygw ${VERSITYGW_VERSION} failed: ${(r.stderr || r.error?.message || '').slice(-2000)}`,
      );
    return bin;
  });
}

export interface S3Server {
  endpoint: string;
  root: string;
  accessKey: string;
  secretKey: string;
  client(bucket: string): S3Client;
  stop(): Promise<void>;
}

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

/** Starts versitygw on 127.0.0.1 serving `root` (each directory below it is a bucket). */
export async function startS3Server(root: string, secretKey: string): Promise<S3Server> {
  const bin = await ensureVersitygw();
  mkdirSync(root, { recursive: true });
  const accessKey = 'vaultops-test';
  const port = await freePort();
  const log = openSync(join(root, '..', 'versitygw.log'), 'a');
  // Keys through the environment, never argv (the secret would sit in /proc/PID/cmdline).
  const child: ChildProcess = spawn(bin, ['--port', `127.0.0.1:${port}`, 'posix', root], {
    env: { PATH: process.env['PATH'], ROOT_ACCESS_KEY: accessKey, ROOT_SECRET_KEY: secretKey },
    stdio: ['ignore', log, log],
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const client = (bucket: string) =>
    new S3Client({
      endpoint,
      bucket,
      region: 'us-east-1',
      credentials: async () => ({ accessKeyId: accessKey, secretAccessKey: secretKey }),
    });
  const probe = client('probe-bucket-list');
  try {
    for (let i = 0; ; i++) {
      if (child.exitCode !== null)
        throw new Error(`versitygw exited with ${child.exitCode}; see ${join(root, '..', 'versitygw.log')}`);
      const up = await probe.request('GET', undefined).then(
        () => true,
        () => false,
      );
      if (up) break;
      if (i > 100) throw new Error('versitygw did not answer within 10 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  } finally {
    probe.close();
  }
  return {
    endpoint,
    root,
    accessKey,
    secretKey,
    client,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      }),
  };
}
