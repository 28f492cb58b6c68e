import { createHash } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createSnapshotVerifier,
  SnapshotInvalidError,
  verifySnapshotFile,
} from '../../../src/backup/stores/snapshot-verify.js';
import { S3Store } from '../../../src/backup/stores/s3-store.js';
import { LocalDirStore } from '../../../src/backup/stores/local-dir-store.js';
import { buildManifest } from '../../../src/backup/stores/manifest.js';
import { getSmall } from '../../../src/backup/stores/sftp-store.js';
import { snapshotFixture, tarMember } from '../../helpers/snapshot-fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'vaultops-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * A gzip bomb shaped like a snapshot: meta.json, then a state.bin of `zeros` zero bytes. Deflate
 * packs zeros ~1000:1, so a few hundred KB inflate to hundreds of MB. Made here, never checked in.
 */
async function bomb(zeros: number): Promise<Buffer> {
  const meta = Buffer.from(
    JSON.stringify({ Version: 1, ID: 'x', Index: 1, Term: 1, Configuration: { Servers: [] }, Size: zeros }),
  );
  const h = tarMember('state.bin', Buffer.alloc(0)).subarray(0, 512);
  // A header that announces `zeros` bytes, then the zeros themselves.
  h.write(`${zeros.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  h.write('        ', 148, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  const zero = Buffer.alloc(1 << 20);
  const parts = function* () {
    yield tarMember('meta.json', meta);
    yield h;
    for (let left = zeros; left > 0; left -= zero.length) yield left >= zero.length ? zero : zero.subarray(0, left);
  };
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(parts()),
    createGzip({ level: 9 }),
    new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }),
  );
  return Buffer.concat(out);
}

describe('the verifier stops a gzip bomb', () => {
  it('fails with a clear error once the inflated size passes the cap, long before the whole bomb is inflated', async () => {
    const b = await bomb(256 << 20);
    expect(b.length).toBeLessThan(1 << 20);
    const v = createSnapshotVerifier({ inflateFloorBytes: 4 << 20 });
    const t0 = Date.now();
    const err = await pipeline(Readable.from([b]), v.stream, new Writable({ write: (_c, _e, cb) => cb() })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SnapshotInvalidError);
    expect((err as Error).message).toMatch(/inflates to more than .* its compressed size.*gzip bomb/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('a real (incompressible) snapshot passes the same cap', async () => {
    const v = createSnapshotVerifier({ inflateFloorBytes: 4 << 20 });
    await pipeline(
      Readable.from([snapshotFixture({ stateBytes: 8 << 20 })]),
      v.stream,
      new Writable({ write: (_c, _e, cb) => cb() }),
    );
    expect(v.result().meta.size).toBe(8 << 20);
  });

  it('the default cap (1 GiB, then 100 x the compressed size) stops a 2 GiB bomb read from a file', async () => {
    const file = join(dir, 'bomb.snap');
    writeFileSync(file, await bomb(2048 * 2 ** 20));
    await expect(verifySnapshotFile(file)).rejects.toThrow(/inflates to more than/);
  }, 60_000);
});

describe('an S3 listing with XML that holds a character reference to no character', () => {
  // A fake server: a real S3 service never answers with such XML; a hostile or broken endpoint can.
  it('`backups list` lists the key as literal text, unverified, instead of crashing', async () => {
    const server = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/xml' });
      res.end(
        '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><IsTruncated>false</IsTruncated>' +
          '<Contents><Key>a&#99999999;b.snap</Key><Size>1</Size><LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents></ListBucketResult>',
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const store = new S3Store({
      endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      bucket: 'bucket',
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: async () => ({ accessKeyId: 'k', secretAccessKey: 's' }),
      checksum: 'CRC32',
      maxAttempts: 1,
      prefix: '',
      label: 'hostile',
    });
    try {
      // The SDK's parser keeps a reference to no character as literal text: the key is listed, as unverified.
      const entries = await store.list();
      expect(entries.map((e) => [e.name, e.manifest])).toEqual([['a&#99999999;b.snap', undefined]]);
    } finally {
      store.close();
      server.close();
    }
  });
});

describe('manifest and sidecar temp files are never written through a symlink', () => {
  it('a symlink planted at the old fixed temp names leaves its target unchanged', async () => {
    const store = new LocalDirStore(join(dir, 'store'));
    const victim = join(dir, 'victim.txt');
    writeFileSync(victim, 'precious\n');
    const bytes = snapshotFixture();
    const sink = await store.begin('c-20261202T000000Z.snap');
    const final = join(store.location, sink.name);
    symlinkSync(victim, `${final}.json.tmp`);
    symlinkSync(victim, `${final}.sha256.tmp`);
    const v = createSnapshotVerifier();
    await pipeline(Readable.from([bytes]), v.stream, sink.stream);
    const now = new Date();
    await sink.commit(
      buildManifest({
        file: sink.name,
        clusterName: 'c',
        leader: { node: 'n1', apiAddr: 'https://n1' },
        snapshot: v.result(),
        startedAt: now,
        finishedAt: now,
      }),
    );
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(readFileSync(`${final}.sha256`, 'utf8')).toBe(
      `${createHash('sha256').update(bytes).digest('hex')}  ${sink.name}\n`,
    );
    expect(lstatSync(`${final}.json`).isSymbolicLink()).toBe(false);
    // No temp file of ours is left behind (the planted links are the operator's to remove).
    expect(
      readdirSync(store.location).filter(
        (f) => f.endsWith('.tmp') && !lstatSync(join(store.location, f)).isSymbolicLink(),
      ),
    ).toEqual([]);
    expect(existsSync(final)).toBe(true);
  });
});

describe('the SFTP store reads a manifest only after checking its size', () => {
  /** The few SFTP calls getSmall makes, answered by a stand-in (the size check needs no real server). */
  function fakeSftp(size: number) {
    const calls: string[] = [];
    const data = Buffer.alloc(size, 0x20);
    const sftp = {
      open: (_p: string, _f: string, cb: (e: Error | undefined, h: Buffer) => void) => (
        calls.push('open'),
        cb(undefined, Buffer.from('h'))
      ),
      fstat: (_h: Buffer, cb: (e: Error | undefined, st: { size: number }) => void) => (
        calls.push('fstat'),
        cb(undefined, { size })
      ),
      read: (
        _h: Buffer,
        buf: Buffer,
        off: number,
        len: number,
        pos: number,
        cb: (e: Error | undefined, n: number) => void,
      ) => {
        calls.push(`read ${len}`);
        const n = data.copy(buf, off, pos, pos + len);
        cb(undefined, n);
      },
      readFile: (_p: string, cb: (e: Error | undefined, b: Buffer) => void) => (
        calls.push('readFile'),
        cb(undefined, data)
      ),
      close: (_h: Buffer, cb: (e?: Error) => void) => (calls.push('close'), cb()),
    };
    return { sftp, calls };
  }

  it('refuses a 64 MiB "manifest" without reading it', async () => {
    const { sftp, calls } = fakeSftp(64 << 20);
    await expect(getSmall(sftp as never, '/srv/x.snap.json')).rejects.toThrow(/too large for a manifest/);
    expect(calls).not.toContain('readFile');
    expect(calls.filter((c) => c.startsWith('read '))).toEqual([]);
    expect(calls).toContain('close');
  });

  it('reads a small one in full', async () => {
    const { sftp } = fakeSftp(3000);
    expect((await getSmall(sftp as never, '/srv/x.snap.json')).length).toBe(3000);
  });
});
