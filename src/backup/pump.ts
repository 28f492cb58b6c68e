import type { Writable } from 'node:stream';
import type { RawDownload } from '../vault/raw-download.js';
import type { SnapshotCheck, VerifiedSnapshot } from './stores/snapshot-verify.js';

export interface PumpOptions {
  /** Bytes per pooled buffer: one file write and one gunzip request each. */
  bufferSize?: number | undefined;
  /** Buffers in the pool; the download pauses when all are out with the file or gunzip. */
  buffers?: number | undefined;
  signal?: AbortSignal | undefined;
  /** Told the size of every piece read from the download (progress). */
  onBytes?: ((n: number) => void) | undefined;
}

/**
 * Moves a snapshot download into `dest` (the store's file, or an encryption stage in front of it)
 * and through `check` at the same time. The socket's views are copied once into a small pool of
 * large buffers; each full buffer goes to the file and to gunzip together and returns to the pool
 * when both are done with it. So a backup of any size allocates nothing per chunk, holds at most
 * `buffers x bufferSize` bytes, and the disk write, the inflate (both in the threadpool) and the
 * hashing (main thread) overlap. Resolves with the verified snapshot once `dest` has taken every byte
 * and ended; rejects on the first failure of the download, the check or `dest`.
 *
 * `dest` must be done with a buffer when it calls a write's callback (fs and ssh2 streams are; an
 * encryption stage that queues chunks must copy them), because the buffer is then reused.
 */
export function pumpSnapshot(
  download: RawDownload,
  check: SnapshotCheck,
  dest: Writable,
  o: PumpOptions = {},
): Promise<VerifiedSnapshot> {
  const size = o.bufferSize ?? 512 << 10;
  const free: Buffer[] = Array.from({ length: o.buffers ?? 4 }, () => Buffer.allocUnsafe(size));
  let current = free.pop()!;
  let fill = 0;
  let outstanding = 0;
  let sourceDone = false;
  let failed = false;

  return new Promise<VerifiedSnapshot>((resolve, reject) => {
    const fail = (e: unknown) => {
      if (failed) return;
      failed = true;
      o.signal?.removeEventListener('abort', onAbort);
      download.destroy();
      check.destroy();
      if (!dest.destroyed) dest.destroy();
      reject(e instanceof Error ? e : new Error(String(e)));
    };
    const onAbort = () => fail(Object.assign(new Error('The backup was interrupted.'), { name: 'AbortError' }));
    if (o.signal?.aborted) return onAbort();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    dest.on('error', fail);

    const finish = () => {
      check.end().then((verified) => {
        if (failed) return;
        // end()'s callback also carries a failure of the last writes or of the final flush (an SFTP
        // store reports a full disk there). The 'error' listener stays: fail() is a no-op once settled.
        dest.end((e?: Error | null) => {
          if (e) return fail(e);
          if (failed) return;
          failed = true; // settled
          o.signal?.removeEventListener('abort', onAbort);
          resolve(verified);
        });
      }, fail);
    };

    /** Sends `buf` (the first `n` bytes of a pool buffer) to gunzip and the file; back to the pool when both are done. */
    const dispatch = (buf: Buffer, n: number) => {
      const view = n === buf.length ? buf : buf.subarray(0, n);
      let users = 2;
      outstanding++;
      const done = (e?: Error | null) => {
        if (e) return fail(e);
        if (--users > 0 || failed) return;
        outstanding--;
        free.push(buf);
        download.resume();
        if (sourceDone && outstanding === 0) finish();
      };
      // The file write first: it goes to the threadpool, and check.write hashes on this thread.
      dest.write(view, done);
      check.write(view, done);
    };

    const consume = (view: Buffer): boolean => {
      o.onBytes?.(view.length);
      let i = 0;
      while (i < view.length) {
        const n = Math.min(size - fill, view.length - i);
        view.copy(current, fill, i, i + n);
        fill += n;
        i += n;
        if (fill === size) {
          dispatch(current, fill);
          // A view that was already read may still come after a pause: never drop bytes, grow the pool instead.
          current = free.pop() ?? Buffer.allocUnsafe(size);
          fill = 0;
        }
      }
      // Pause while no spare buffer is left and the current one could not take another read.
      return free.length > 0 || size - fill >= 64 * 1024;
    };

    download.pipe(consume).then(() => {
      if (failed) return;
      sourceDone = true;
      if (fill > 0) {
        dispatch(current, fill);
        fill = 0;
      } else if (outstanding === 0) finish();
    }, fail);
  });
}
