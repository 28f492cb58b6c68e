import { crc32, createInflateRaw, type InflateRaw } from 'node:zlib';
import { SnapshotInvalidError } from '../../core/errors.js';

/**
 * gunzip without the crc32: the gzip framing (RFC 1952 header, trailer, concatenated members) is
 * parsed here and only the deflate data goes to zlib, as raw deflate. zlib's gunzip spends about a
 * third of its time on the crc32 of the inflated bytes; a snapshot does not need it, because every
 * inflated byte is checked by something stronger or stricter further on: member bodies by sha256
 * against SHA256SUMS, tar headers by their checksums, padding and end blocks must be zeros. The
 * trailer's ISIZE (inflated length mod 2^32) is still checked, and a header's FHCRC when present.
 *
 * Like Node's gunzip: members may follow one another, and zero bytes after the last one are padding.
 * Anything else after a member is refused (Node's gunzip calls it an incorrect header check).
 *
 * Buffers are lent as SnapshotCheck lends them: `done` is called once zlib is finished with `buf`.
 */

/** FNAME/FCOMMENT/FEXTRA together: Go's writer sets none of them; refuse a header that never ends. */
const HEADER_LIMIT = 64 << 10;

interface Member {
  inflater: InflateRaw;
  /** Bytes written to the inflater (some of them, after the deflate end, not consumed). */
  written: number;
  /** Writes whose callback has not come yet. */
  pending: number;
  /** The deflate stream ended (seen as input it did not consume). */
  deflateEnded: boolean;
  inflated: number;
  isize?: number;
  /** Byte offset of the member in the file, for messages. */
  offset: number;
  closed: Promise<void>;
}

type Mode = 'header' | 'body' | 'trailer' | 'after' | 'zeros';

export function truncatedGzipError(cause?: unknown): SnapshotInvalidError {
  return new SnapshotInvalidError(
    'Snapshot gzip stream ends early: the snapshot is incomplete (truncated download or file).',
    cause === undefined ? {} : { cause },
  );
}

export class RawGunzip {
  readonly #chunkSize: number;
  readonly #onData: (chunk: Buffer) => void;
  readonly #onError: (e: Error) => void;
  #mode: Mode = 'header';
  #header = Buffer.alloc(0);
  #trailer = Buffer.alloc(8);
  #trailerFill = 0;
  /** Bytes of the file taken by the framing parser so far plus those written to inflaters. */
  #offset = 0;
  readonly #members: Member[] = [];
  /** While set, every write goes to this member's inflater, in order (see #toInflater). */
  #route: Member | undefined;
  #pending = 0;
  #idle: (() => void) | undefined;
  #failed = false;

  constructor(o: { chunkSize: number; onData: (chunk: Buffer) => void; onError: (e: Error) => void }) {
    this.#chunkSize = o.chunkSize;
    this.#onData = o.onData;
    this.#onError = o.onError;
  }

  write(buf: Buffer, done: (error?: Error | null) => void): void {
    if (this.#route) return this.#toInflater(this.#route, buf, done);
    this.#consume(buf, false, done);
  }

  /** After the last write: resolves once everything is inflated and the framing is complete. */
  async end(): Promise<void> {
    if (this.#pending > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
    if (this.#failed) return;
    if (this.#mode !== 'after' && this.#mode !== 'zeros') throw truncatedGzipError();
    for (const m of this.#members) m.inflater.end();
    await Promise.all(this.#members.map((m) => m.closed));
    if (this.#failed) return;
    for (const m of this.#members) {
      if (m.isize !== m.inflated % 2 ** 32)
        throw new SnapshotInvalidError(
          `Snapshot gzip data is corrupt: the member at byte ${m.offset} inflates to ${m.inflated} bytes, its trailer says ${m.isize} (mod 2^32).`,
        );
    }
  }

  destroy(): void {
    this.#failed = true;
    for (const m of this.#members) m.inflater.destroy();
    this.#wake();
  }

  #fail(e: Error): void {
    if (this.#failed) return;
    this.#onError(e);
    this.destroy();
  }

  #wake(): void {
    if (this.#pending > 0 && !this.#failed) return;
    const idle = this.#idle;
    this.#idle = undefined;
    idle?.();
  }

  /** Framing bytes (header, trailer, what follows a member) are parsed here; deflate data goes on to zlib. */
  #consume(buf: Buffer, isTail: boolean, done: (error?: Error | null) => void): void {
    let i = 0;
    try {
      while (i < buf.length && !this.#failed) {
        switch (this.#mode) {
          case 'header': {
            const before = this.#header.length;
            this.#header = Buffer.concat([this.#header, buf.subarray(i, i + HEADER_LIMIT - before + 1)]);
            // After a member, bytes that do not start another one are trailing data, not "not gzip".
            if (this.#members.length > 0 && this.#header.length >= 2 && this.#header[1] !== 0x8b)
              throw trailingDataError(this.#offset);
            const length = gzipHeaderLength(this.#header);
            if (length === undefined) {
              if (this.#header.length > HEADER_LIMIT)
                throw new SnapshotInvalidError('Snapshot gzip header never ends: corrupt snapshot.');
              i = buf.length;
              break;
            }
            i += length - before;
            this.#offset += length;
            this.#header = Buffer.alloc(0);
            this.#mode = 'body';
            this.#members.push(this.#newMember());
            break;
          }
          case 'body': {
            const member = this.#members.at(-1)!;
            this.#route ??= member;
            // A tail comes from a buffer its owner takes back as soon as this returns: copy it.
            const rest = isTail ? Buffer.from(buf.subarray(i)) : buf.subarray(i);
            if (isTail) this.#toInflater(member, rest, () => undefined);
            else return this.#toInflater(member, rest, done);
            i = buf.length;
            break;
          }
          case 'trailer': {
            const n = Math.min(8 - this.#trailerFill, buf.length - i);
            buf.copy(this.#trailer, this.#trailerFill, i, i + n);
            this.#trailerFill += n;
            this.#offset += n;
            i += n;
            if (this.#trailerFill === 8) {
              this.#members.at(-1)!.isize = this.#trailer.readUInt32LE(4);
              this.#mode = 'after';
            }
            break;
          }
          case 'after':
            if (buf[i] === 0x1f) this.#mode = 'header';
            else if (buf[i] === 0) this.#mode = 'zeros';
            else throw trailingDataError(this.#offset);
            break;
          case 'zeros':
            for (; i < buf.length; i++, this.#offset++) if (buf[i] !== 0) throw trailingDataError(this.#offset);
            break;
        }
      }
    } catch (e) {
      this.#fail(e as Error);
    }
    if (!isTail) queueMicrotask(() => done(this.#failed ? new Error('gunzip failed') : null));
  }

  #newMember(): Member {
    const inflater = createInflateRaw({ chunkSize: this.#chunkSize });
    const member: Member = {
      inflater,
      written: 0,
      pending: 0,
      deflateEnded: false,
      inflated: 0,
      offset: this.#offset,
      closed: new Promise<void>((resolve) => {
        inflater.once('end', resolve);
        inflater.once('close', resolve);
      }),
    };
    inflater.on('data', (chunk: Buffer) => {
      member.inflated += chunk.length;
      this.#onData(chunk);
    });
    inflater.on('error', (e: Error) =>
      this.#fail(new SnapshotInvalidError(`Snapshot gzip data is corrupt (${e.message}).`, { cause: e })),
    );
    return member;
  }

  /**
   * zlib reports where the deflate stream ended only as input it did not consume (bytesWritten stops
   * growing), and writes already queued behind that point come back unconsumed too. Each write's
   * callback hands its unconsumed tail, in order, to the next member's inflater or, after the last
   * member, to the framing parser (trailer, next member).
   */
  #toInflater(m: Member, buf: Buffer, done: (error?: Error | null) => void): void {
    const start = m.written;
    m.written += buf.length;
    m.pending++;
    this.#pending++;
    m.inflater.write(buf, (e) => {
      m.pending--;
      this.#pending--;
      if (!this.#failed && !e) {
        const consumed = m.inflater.bytesWritten;
        const end = start + buf.length;
        this.#offset += Math.max(0, Math.min(consumed, end) - start);
        if (consumed < end) {
          if (!m.deflateEnded) {
            m.deflateEnded = true;
            this.#mode = 'trailer';
            this.#trailerFill = 0;
          }
          // Unconsumed bytes go on to the next member's inflater when there is one (behind the bytes it
          // still holds; an ended one hands them back unconsumed, in order), else to the framing
          // parser. Member by member, in order: a tail that skipped a member still holding earlier
          // bytes would reach the parser before them (a trailer assembled out of order).
          const rest = buf.subarray(Math.max(0, consumed - start));
          const next = this.#members[this.#members.indexOf(m) + 1];
          if (next) this.#toInflater(next, Buffer.from(rest), () => undefined);
          else this.#consume(rest, true, () => undefined);
        }
        // New writes enter at the first member still holding bytes, for the same reason.
        this.#route =
          this.#members.find((x) => x.pending > 0) ?? (this.#mode === 'body' ? this.#members.at(-1) : undefined);
      }
      done(this.#failed ? new Error('gunzip failed') : (e ?? null));
      this.#wake();
    });
  }
}

function trailingDataError(offset: number): SnapshotInvalidError {
  return new SnapshotInvalidError(
    `Snapshot has data after the end of its gzip stream (at byte ${offset}): not a Raft snapshot as a server writes it.`,
  );
}

const FHCRC = 2;
const FEXTRA = 4;
const FNAME = 8;
const FCOMMENT = 16;

/** The length of the gzip member header at the start of `h`, undefined while incomplete; throws if it is not one. */
export function gzipHeaderLength(h: Buffer): number | undefined {
  if (h.length >= 1 && h[0] !== 0x1f) throw notGzip();
  if (h.length >= 2 && h[1] !== 0x8b) throw notGzip();
  if (h.length < 10) return undefined;
  if (h[2] !== 8) throw new SnapshotInvalidError(`Snapshot gzip data is corrupt (unknown compression method ${h[2]}).`);
  const flags = h[3]!;
  if ((flags & 0xe0) !== 0) throw new SnapshotInvalidError('Snapshot gzip data is corrupt (unknown header flags set).');
  let p = 10;
  if (flags & FEXTRA) {
    if (h.length < p + 2) return undefined;
    p += 2 + h.readUInt16LE(p);
    if (h.length < p) return undefined;
  }
  for (const flag of [FNAME, FCOMMENT]) {
    if (flags & flag) {
      const z = h.indexOf(0, p);
      if (z === -1) return undefined;
      p = z + 1;
    }
  }
  if (flags & FHCRC) {
    if (h.length < p + 2) return undefined;
    if ((crc32(h.subarray(0, p)) & 0xffff) !== h.readUInt16LE(p))
      throw new SnapshotInvalidError('Snapshot gzip data is corrupt (header crc mismatch).');
    p += 2;
  }
  return p;
}

function notGzip(): SnapshotInvalidError {
  return new SnapshotInvalidError(
    'This is not a gzip file, so not a Raft snapshot (the first bytes are not the gzip magic 1f 8b).',
  );
}
