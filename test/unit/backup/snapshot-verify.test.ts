import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32, deflateRawSync, gzipSync } from 'node:zlib';
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

/** A gzip member written by hand (RFC 1952), to set header flags that gzipSync never sets. */
function gzipMember(
  data: Buffer,
  o: { extra?: Buffer; name?: string; comment?: string; hcrc?: boolean; isize?: number } = {},
): Buffer {
  const flags = (o.hcrc ? 2 : 0) | (o.extra ? 4 : 0) | (o.name ? 8 : 0) | (o.comment ? 16 : 0);
  const parts: Buffer[] = [Buffer.from([0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 255])];
  if (o.extra) {
    const len = Buffer.alloc(2);
    len.writeUInt16LE(o.extra.length);
    parts.push(len, o.extra);
  }
  if (o.name) parts.push(Buffer.from(`${o.name}\0`, 'latin1'));
  if (o.comment) parts.push(Buffer.from(`${o.comment}\0`, 'latin1'));
  if (o.hcrc) {
    const crc = Buffer.alloc(2);
    crc.writeUInt16LE(crc32(Buffer.concat(parts)) & 0xffff);
    parts.push(crc);
  }
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32(data), 0);
  trailer.writeUInt32LE(o.isize ?? data.length, 4);
  return Buffer.concat([...parts, deflateRawSync(data), trailer]);
}

/** Verifies `bytes` fed in `chunk`-byte pieces, so the gzip framing falls across write boundaries. */
async function verifyInChunks(bytes: Buffer, chunk: number) {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += chunk) chunks.push(bytes.subarray(i, i + chunk));
  const v = createSnapshotVerifier();
  await pipeline(Readable.from(chunks), v.stream, new Writable({ write: (_c, _e, cb) => cb() }));
  return v.result();
}

describe('the verifier reads the gzip framing as gunzip does, without trusting it', () => {
  const tar = snapshotTar({ stateBytes: 40_000 });

  it('a header with FEXTRA, FNAME, FCOMMENT and FHCRC, cut into pieces of any size', async () => {
    const bytes = gzipMember(tar, { extra: Buffer.from('ab\x02\x00xy'), name: 'snap.tar', comment: 'c', hcrc: true });
    for (const chunk of [1, 7, 13, 4096, bytes.length]) {
      const v = await verifyInChunks(bytes, chunk);
      expect(v.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
      expect(v.meta.size).toBe(40_000);
    }
  });

  it('a header whose FHCRC does not match', async () => {
    const bytes = gzipMember(tar, { name: 'snap.tar', hcrc: true });
    bytes[12] ^= 1; // inside the name, covered by the header crc
    await expect(verifySnapshotFile(file(bytes))).rejects.toThrow(/header crc mismatch/);
  });

  it('reserved header flags set, or a method other than deflate', async () => {
    const flags = gzipMember(tar);
    flags[3] = 0x20;
    await expect(verifySnapshotFile(file(flags))).rejects.toThrow(/unknown header flags/);
    const method = gzipMember(tar);
    method[2] = 7;
    await expect(verifySnapshotFile(file(method))).rejects.toThrow(/unknown compression method/);
  });

  it('a trailer whose ISIZE is not the inflated length', async () => {
    await expect(verifySnapshotFile(file(gzipMember(tar, { isize: tar.length + 1 })))).rejects.toThrow(
      /inflates to \d+ bytes, its trailer says \d+/,
    );
  });

  it('two members, concatenated as `cat a.gz b.gz` makes them, split anywhere', async () => {
    const cut = 20_000;
    const bytes = Buffer.concat([gzipMember(tar.subarray(0, cut), { name: 'a' }), gzipSync(tar.subarray(cut))]);
    for (const chunk of [1, 9, 5000, 65_536, bytes.length]) {
      const v = await verifyInChunks(bytes, chunk);
      expect(v.members.map((m) => m.name)).toEqual(['meta.json', 'state.bin', 'SHA256SUMS', 'SHA256SUMS.sealed']);
    }
  });

  it('three members, split anywhere: each member passes on what it did not use in file order', async () => {
    // Bytes after a member's end come back from its inflater and go on to the next member; with
    // three members a tail that skipped the middle one reached the framing parser out of order.
    const bytes = Buffer.concat([
      gzipMember(tar.subarray(0, 20_000), { name: 'a' }),
      gzipSync(tar.subarray(20_000, 30_000)),
      gzipSync(tar.subarray(30_000)),
    ]);
    for (const chunk of [1, 3, 9, 100, 5000, bytes.length]) {
      const v = await verifyInChunks(bytes, chunk);
      expect(v.members.map((m) => m.name)).toEqual(['meta.json', 'state.bin', 'SHA256SUMS', 'SHA256SUMS.sealed']);
    }
  });

  it('zero padding after the last member is accepted, other trailing bytes are not', async () => {
    const gz = gzipSync(tar);
    await expect(verifySnapshotFile(file(Buffer.concat([gz, Buffer.alloc(1000)])))).resolves.toMatchObject({
      bytes: gz.length + 1000,
    });
    await expect(verifySnapshotFile(file(Buffer.concat([gz, Buffer.from('garbage')])))).rejects.toThrow(
      new RegExp(`data after the end of its gzip stream \\(at byte ${gz.length}\\)`),
    );
    await expect(verifySnapshotFile(file(Buffer.concat([gz, Buffer.alloc(10), Buffer.from('x')])))).rejects.toThrow(
      /data after the end of its gzip stream/,
    );
    await expect(verifySnapshotFile(file(Buffer.concat([gz, Buffer.from([0x1f, 0x00, 1])])))).rejects.toThrow(
      new RegExp(`data after the end of its gzip stream \\(at byte ${gz.length}\\)`),
    );
  });

  it('a trailer cut short, or missing', async () => {
    const gz = gzipSync(tar);
    for (const cut of [1, 4, 8])
      await expect(verifySnapshotFile(file(gz.subarray(0, gz.length - cut)))).rejects.toThrow(/ends early/);
  });

  it('tar padding that is not zeros (no crc32 covers it)', async () => {
    const bad = Buffer.from(tar);
    // meta.json is the first member: its body starts at 512 and is padded to the next block.
    const metaSize = Number.parseInt(bad.subarray(124, 135).toString('latin1'), 8);
    bad[512 + metaSize] = 1;
    await expect(verifySnapshotFile(file(gzipSync(bad)))).rejects.toThrow(/padding holds data/);
  });
});
