import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pumpSnapshot } from '../../../src/backup/pump.js';
import { SnapshotCheck, SnapshotInvalidError } from '../../../src/backup/stores/snapshot-verify.js';
import { RawDownload } from '../../../src/vault/raw-download.js';
import { snapshotFixture } from '../../helpers/snapshot-fixture.js';

// The pump's contract with its destination (buffers lent until the write callback, failures that
// only end() reports, interrupts) is exercised here with an in-process HTTP server serving generated
// snapshots and Writables that misbehave on purpose: a real store cannot fail at chosen moments. The
// real path (Vault -> local or SFTP store) is covered by the backup integration tests.

let body: Buffer = Buffer.alloc(0);
let server: Server;
let url = '';

beforeAll(async () => {
  server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/gzip' });
    // Odd-sized writes, so views and pool buffers never line up.
    let i = 0;
    const next = () => {
      while (i < body.length) {
        const n = Math.min(7777, body.length - i);
        const more = res.write(body.subarray(i, i + n));
        i += n;
        if (!more) return void res.once('drain', next);
      }
      res.end();
    };
    next();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/v1/sys/storage/raft/snapshot`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const open = () => RawDownload.open({ url: new URL(url), headers: {}, headTimeoutMs: 5000 });
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A destination that keeps a copy of everything, acknowledging after a delay, like a slow disk. */
function slowCopy(): { dest: Writable; bytes: () => Buffer } {
  const parts: Buffer[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _e, cb) {
      parts.push(Buffer.from(chunk));
      setTimeout(cb, 1);
    },
  });
  return { dest, bytes: () => Buffer.concat(parts) };
}

describe('pumpSnapshot (download -> pooled buffers -> store and verifier)', () => {
  it('delivers every byte in order through a pool much smaller than the snapshot, and verifies it', async () => {
    body = snapshotFixture({ stateBytes: 3_000_000 });
    const { dest, bytes } = slowCopy();
    const v = await pumpSnapshot(await open(), new SnapshotCheck(), dest, { bufferSize: 64 * 1024 + 3, buffers: 2 });
    expect(bytes().equals(body)).toBe(true);
    expect(v.sha256).toBe(sha256(body));
    expect(v.bytes).toBe(body.length);
    expect(v.meta.index).toBe(1234);
  });

  it('a destination that fails only when ended (a flush after a full disk) fails the pump', async () => {
    body = snapshotFixture({ stateBytes: 200_000 });
    const dest = new Writable({
      write: (_c, _e, cb) => cb(),
      final: (cb) =>
        void setTimeout(() => cb(Object.assign(new Error('No space left on device'), { code: 'ENOSPC' })), 5),
    });
    await expect(pumpSnapshot(await open(), new SnapshotCheck(), dest)).rejects.toMatchObject({ code: 'ENOSPC' });
  });

  it('a corrupt snapshot fails the pump and destroys the destination', async () => {
    body = snapshotFixture({ stateBytes: 2_000_000, corruptState: true });
    const { dest } = slowCopy();
    await expect(pumpSnapshot(await open(), new SnapshotCheck(), dest)).rejects.toBeInstanceOf(SnapshotInvalidError);
    expect(dest.destroyed).toBe(true);
  });

  it('an interrupt stops it at once with an AbortError', async () => {
    body = snapshotFixture({ stateBytes: 4_000_000 });
    const abort = new AbortController();
    const dest = new Writable({
      write(_c, _e, cb) {
        abort.abort();
        setTimeout(cb, 5);
      },
    });
    await expect(pumpSnapshot(await open(), new SnapshotCheck(), dest, { signal: abort.signal })).rejects.toMatchObject(
      { name: 'AbortError' },
    );
    expect(dest.destroyed).toBe(true);
  });
});
