import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createSnapshotVerifier,
  SnapshotInvalidError,
  verifySnapshotFile,
} from '../../../src/backup/stores/snapshot-verify.js';
import { snapshotFixture, snapshotTar } from '../../helpers/snapshot-fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'vaultops-verify-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(bytes: Buffer): string {
  const p = join(dir, `s${n++}.snap`);
  writeFileSync(p, bytes);
  return p;
}

describe('the verifier accepts a complete Raft snapshot and reports what it holds', () => {
  it('hashes the whole file and every member, and parses meta.json', async () => {
    const bytes = snapshotFixture({ stateBytes: 100_000 });
    const v = await verifySnapshotFile(file(bytes));
    expect(v.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(v.bytes).toBe(bytes.length);
    expect(v.members.map((m) => m.name)).toEqual(['meta.json', 'state.bin', 'SHA256SUMS', 'SHA256SUMS.sealed']);
    expect(v.meta).toMatchObject({ index: 1234, term: 7, version: 1, size: 100_000 });
    expect(v.meta.servers).toEqual([{ id: 'n1', address: '127.0.0.1:8201', voter: true }]);
  });

  it('passes the bytes through unchanged, whatever the chunk sizes', async () => {
    const bytes = snapshotFixture({ stateBytes: 70_001 });
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += 333) chunks.push(bytes.subarray(i, i + 333));
    const v = createSnapshotVerifier();
    const got: Buffer[] = [];
    await pipeline(
      Readable.from(chunks),
      v.stream,
      new Writable({
        write: (c: Buffer, _e, cb) => {
          got.push(c);
          cb();
        },
      }),
    );
    expect(Buffer.concat(got).equals(bytes)).toBe(true);
    expect(v.result().meta.index).toBe(1234);
  });
});

describe('the verifier refuses a truncated snapshot, wherever it was cut', () => {
  const bytes = snapshotFixture({ stateBytes: 60_000 });
  for (const at of [1, 10, 100, 1000, Math.floor(bytes.length / 2), bytes.length - 20, bytes.length - 1]) {
    it(`cut after ${at} of ${bytes.length} bytes`, async () => {
      await expect(verifySnapshotFile(file(bytes.subarray(0, at)))).rejects.toBeInstanceOf(SnapshotInvalidError);
    });
  }

  it('a complete gzip of an incomplete tar (no end-of-archive blocks)', async () => {
    await expect(verifySnapshotFile(file(snapshotFixture({ omitEndBlocks: true })))).rejects.toThrow(/end-of-archive/);
  });

  it('a complete gzip of a tar cut inside state.bin', async () => {
    const tar = snapshotTar();
    await expect(verifySnapshotFile(file(gzipSync(tar.subarray(0, 20_000))))).rejects.toThrow(
      /incomplete|end-of-archive/,
    );
  });

  it('an empty file', async () => {
    await expect(verifySnapshotFile(file(Buffer.alloc(0)))).rejects.toThrow(/empty/);
  });
});

describe('the verifier refuses a snapshot whose sums do not hold', () => {
  it('SHA256SUMS.sealed missing (what the Go client calls an incomplete snapshot)', async () => {
    await expect(verifySnapshotFile(file(snapshotFixture({ omitSealed: true })))).rejects.toThrow(
      /SHA256SUMS\.sealed is missing or empty/,
    );
  });

  it('SHA256SUMS.sealed empty', async () => {
    await expect(verifySnapshotFile(file(snapshotFixture({ emptySealed: true })))).rejects.toThrow(
      /SHA256SUMS\.sealed is missing or empty/,
    );
  });

  it('state.bin does not match its SHA256SUMS line', async () => {
    await expect(verifySnapshotFile(file(snapshotFixture({ corruptState: true })))).rejects.toThrow(
      /state\.bin does not match/,
    );
  });

  it('SHA256SUMS with a wrong hash', async () => {
    const bad = snapshotFixture({ sums: (s) => s.replace(/^[0-9a-f]/, (c) => (c === '0' ? '1' : '0')) });
    await expect(verifySnapshotFile(file(bad))).rejects.toThrow(/does not match its SHA256SUMS entry/);
  });

  it('SHA256SUMS that does not list meta.json', async () => {
    const bad = snapshotFixture({
      sums: (s) =>
        s
          .split('\n')
          .filter((l) => !l.endsWith('meta.json'))
          .join('\n'),
    });
    await expect(verifySnapshotFile(file(bad))).rejects.toThrow(/does not list meta\.json/);
  });

  it('SHA256SUMS that is not sha256sum format', async () => {
    await expect(verifySnapshotFile(file(snapshotFixture({ sums: () => 'garbage\n' })))).rejects.toThrow(
      /not "<sha256> {2}<name>"/,
    );
  });

  it("meta.json that disagrees with state.bin's size", async () => {
    const bad = snapshotFixture({ meta: { Version: 1, ID: 'x', Index: 1, Term: 1, Size: 5 } });
    await expect(verifySnapshotFile(file(bad))).rejects.toThrow(/meta\.json says state\.bin is 5 bytes/);
  });
});

describe('the verifier refuses what is not a Raft snapshot at all', () => {
  it('a text file', async () => {
    await expect(verifySnapshotFile(file(Buffer.from('clusters:\n  lab: {}\n')))).rejects.toThrow(/not a gzip file/);
  });

  it('gzip data corrupted in the middle', async () => {
    const bytes = Buffer.from(snapshotFixture({ stateBytes: 50_000 }));
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    await expect(verifySnapshotFile(file(bytes))).rejects.toBeInstanceOf(SnapshotInvalidError);
  });

  it('a gzip of something that is not a tar', async () => {
    await expect(verifySnapshotFile(file(gzipSync(Buffer.alloc(4096, 7))))).rejects.toThrow(/checksum|corrupt/);
  });
});
