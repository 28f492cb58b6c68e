import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SnapshotInvalidError, VaultopsError } from '../../core/errors.js';
import { collectYoungGarbage } from '../../core/young-gc.js';
import { RawGunzip } from './raw-gunzip.js';

/**
 * A Raft snapshot is a gzip-compressed tar of `meta.json`, `state.bin`, `SHA256SUMS` and (Vault and
 * OpenBao add it) `SHA256SUMS.sealed` [hashicorp/raft-snapshot archive.go]. Vault sends the 200 before
 * the snapshot is produced, so a download cut half-way still looks like a success;
 * the Go client refuses a tar without a non-empty `SHA256SUMS.sealed` (api/sys_raft.go). We
 * do that and more, while the bytes stream past: complete gzip, complete tar, every member hashed
 * and checked against SHA256SUMS, meta.json parsed. Memory stays constant: only headers and the
 * three small metadata members are held.
 */

/** Raft's SnapshotMeta as meta.json carries it (Go field names). */
export interface SnapshotMeta {
  version: number;
  id: string;
  index: number;
  term: number;
  size: number;
  configurationIndex?: number | undefined;
  servers: Array<{ id: string; address: string; voter: boolean }>;
}

export interface SnapshotMember {
  name: string;
  size: number;
  sha256: string;
}

export interface VerifiedSnapshot {
  /** sha256 of the whole file, as `sha256sum` prints it. */
  sha256: string;
  /** Bytes of the file (compressed). */
  bytes: number;
  members: SnapshotMember[];
  meta: SnapshotMeta;
}

// Lives in core so the decryption errors (backup/crypto, below the stores) can extend it.
export { SnapshotInvalidError } from '../../core/errors.js';

const BLOCK = 512;
/** meta.json, SHA256SUMS and SHA256SUMS.sealed are a few hundred bytes; refuse absurd sizes instead of buffering them. */
const SMALL_MEMBER_LIMIT = 1 << 20;
const KEPT = new Set(['meta.json', 'SHA256SUMS', 'SHA256SUMS.sealed']);

/** A tar reader fed with arbitrary chunks; hashes member bodies, keeps only the small ones. */
class TarChecker {
  readonly members: SnapshotMember[] = [];
  readonly kept = new Map<string, Buffer>();
  #header = Buffer.alloc(BLOCK);
  #headerFill = 0;
  #state: 'header' | 'body' | 'padding' | 'end' = 'header';
  #remaining = 0;
  #padding = 0;
  #zeroBlocks = 0;
  #current:
    | { name: string; size: number; kind: 'file' | 'pax' | 'longname' | 'skip'; hash?: Hash; chunks?: Buffer[] }
    | undefined;
  #pax: { path?: string; size?: number } = {};
  #longName: string | undefined;
  #offset = 0;

  get ended(): boolean {
    return this.#state === 'end';
  }

  write(buf: Buffer): void {
    let i = 0;
    while (i < buf.length) {
      switch (this.#state) {
        case 'end':
          // Go's tar writer ends with two zero blocks; gzip may carry more zero padding. Anything else is not ours.
          for (; i < buf.length; i++)
            if (buf[i] !== 0)
              throw new SnapshotInvalidError(
                `Snapshot has data after the tar end-of-archive marker (tar offset ${this.#offset + i}).`,
              );
          break;
        case 'header': {
          const n = Math.min(BLOCK - this.#headerFill, buf.length - i);
          buf.copy(this.#header, this.#headerFill, i, i + n);
          this.#headerFill += n;
          i += n;
          if (this.#headerFill === BLOCK) {
            this.#headerFill = 0;
            this.#onHeader();
          }
          break;
        }
        case 'body': {
          const n = Math.min(this.#remaining, buf.length - i);
          const part = buf.subarray(i, i + n);
          const cur = this.#current!;
          cur.hash?.update(part);
          if (cur.chunks) cur.chunks.push(Buffer.from(part));
          this.#remaining -= n;
          i += n;
          if (this.#remaining === 0) this.#onBodyEnd();
          break;
        }
        case 'padding': {
          const n = Math.min(this.#padding, buf.length - i);
          // Go's tar writer pads with zeros; checked because nothing else covers these bytes (no crc32, see raw-gunzip).
          for (let k = i; k < i + n; k++)
            if (buf[k] !== 0)
              throw new SnapshotInvalidError(
                `Snapshot tar padding holds data (tar offset ${this.#offset + k}): corrupt archive.`,
              );
          this.#padding -= n;
          i += n;
          if (this.#padding === 0) this.#state = 'header';
          break;
        }
      }
    }
    this.#offset += buf.length;
  }

  #onHeader(): void {
    const h = this.#header;
    if (h.every((b) => b === 0)) {
      this.#zeroBlocks++;
      if (this.#zeroBlocks === 2) this.#state = 'end';
      return;
    }
    if (this.#zeroBlocks > 0)
      throw new SnapshotInvalidError('Snapshot tar has a single zero block in the middle: corrupt archive.');
    const stored = parseOctal(h.subarray(148, 156));
    let sum = 0;
    for (let k = 0; k < BLOCK; k++) sum += k >= 148 && k < 156 ? 0x20 : h[k]!;
    if (stored === undefined || stored !== sum)
      throw new SnapshotInvalidError('Snapshot tar header checksum does not match: corrupt archive.');
    const type = String.fromCharCode(h[156]!);
    let name = cString(h.subarray(0, 100));
    const magic = h.subarray(257, 263).toString('latin1');
    if (magic === 'ustar\0') {
      const prefix = cString(h.subarray(345, 500));
      if (prefix) name = `${prefix}/${name}`;
    }
    let size = parseSize(h.subarray(124, 136));
    if (size === undefined)
      throw new SnapshotInvalidError('Snapshot tar header has an unreadable size: corrupt archive.');
    let kind: 'file' | 'pax' | 'longname' | 'skip';
    if (type === 'x') kind = 'pax';
    else if (type === 'L') kind = 'longname';
    else if (type === '0' || type === '\0' || type === '7') {
      kind = 'file';
      if (this.#pax.path !== undefined) name = this.#pax.path;
      if (this.#longName !== undefined) name = this.#longName;
      if (this.#pax.size !== undefined) size = this.#pax.size;
      this.#pax = {};
      this.#longName = undefined;
    } else kind = 'skip';
    if ((kind === 'pax' || kind === 'longname') && size > SMALL_MEMBER_LIMIT)
      throw new SnapshotInvalidError('Snapshot tar has an oversized extended header: corrupt archive.');
    name = name.replace(/^\.\//, '');
    const keep = kind === 'pax' || kind === 'longname' || (kind === 'file' && KEPT.has(name));
    if (keep && size > SMALL_MEMBER_LIMIT)
      throw new SnapshotInvalidError(
        `Snapshot member ${name} is ${size} bytes; a Raft snapshot's ${name} is tiny: not a Raft snapshot.`,
      );
    this.#current = {
      name,
      size,
      kind,
      ...(kind === 'file' ? { hash: createHash('sha256') } : {}),
      ...(keep ? { chunks: [] } : {}),
    };
    this.#remaining = size;
    this.#padding = (BLOCK - (size % BLOCK)) % BLOCK;
    if (size === 0) this.#onBodyEnd();
    else this.#state = 'body';
  }

  #onBodyEnd(): void {
    const cur = this.#current!;
    this.#current = undefined;
    const body = cur.chunks ? Buffer.concat(cur.chunks) : undefined;
    if (cur.kind === 'file') {
      if (this.members.some((m) => m.name === cur.name))
        throw new SnapshotInvalidError(`Snapshot tar holds ${cur.name} twice: not a Raft snapshot.`);
      this.members.push({ name: cur.name, size: cur.size, sha256: cur.hash!.digest('hex') });
      if (body) this.kept.set(cur.name, body);
    } else if (cur.kind === 'pax' && body) {
      this.#pax = parsePax(body);
    } else if (cur.kind === 'longname' && body) {
      this.#longName = cString(body);
    }
    this.#state = this.#padding > 0 ? 'padding' : 'header';
  }
}

function cString(b: Buffer): string {
  const z = b.indexOf(0);
  return b.subarray(0, z === -1 ? b.length : z).toString('utf8');
}

function parseOctal(b: Buffer): number | undefined {
  const s = cString(b).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) return undefined;
  return Number.parseInt(s, 8);
}

/** Sizes over 8 GiB use GNU base-256 (high bit of the first byte set), as Go's writer does. */
function parseSize(b: Buffer): number | undefined {
  if ((b[0]! & 0x80) !== 0) {
    let v = b[0]! & 0x7f;
    for (let k = 1; k < b.length; k++) v = v * 256 + b[k]!;
    return Number.isSafeInteger(v) ? v : undefined;
  }
  return parseOctal(b);
}

function parsePax(body: Buffer): { path?: string; size?: number } {
  const out: { path?: string; size?: number } = {};
  let i = 0;
  while (i < body.length) {
    const sp = body.indexOf(0x20, i);
    if (sp === -1) break;
    const len = Number.parseInt(body.subarray(i, sp).toString('latin1'), 10);
    if (!Number.isFinite(len) || len <= 0)
      throw new SnapshotInvalidError('Snapshot tar has a malformed PAX header: corrupt archive.');
    const rec = body.subarray(sp + 1, i + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    const key = rec.slice(0, eq);
    const value = rec.slice(eq + 1);
    if (key === 'path') out.path = value;
    if (key === 'size') out.size = Number.parseInt(value, 10);
    i += len;
  }
  return out;
}

/** Parses SHA256SUMS (`<hex>  <name>` per line, as sha256sum writes it). */
function parseSums(text: string): Map<string, string> {
  const sums = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const m = /^([0-9a-fA-F]{64}) [ *]?(.+)$/.exec(line.trimEnd());
    if (!m)
      throw new SnapshotInvalidError(
        'Snapshot SHA256SUMS has a line that is not "<sha256>  <name>": corrupt snapshot.',
      );
    sums.set(m[2]!.replace(/^\.\//, ''), m[1]!.toLowerCase());
  }
  return sums;
}

function parseMeta(body: Buffer): SnapshotMeta {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new SnapshotInvalidError('Snapshot meta.json is not JSON: corrupt snapshot.');
  }
  const num = (k: string): number => {
    const v = raw[k];
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new SnapshotInvalidError(`Snapshot meta.json has no numeric ${k}: not a Raft snapshot.`);
    return v;
  };
  const config = raw['Configuration'] as
    { Servers?: Array<{ ID?: string; Address?: string; Suffrage?: number }> } | undefined;
  return {
    version: num('Version'),
    id: typeof raw['ID'] === 'string' ? raw['ID'] : '',
    index: num('Index'),
    term: num('Term'),
    size: num('Size'),
    configurationIndex: typeof raw['ConfigurationIndex'] === 'number' ? raw['ConfigurationIndex'] : undefined,
    // Suffrage 0 = Voter in hashicorp/raft.
    servers: (config?.Servers ?? []).map((s) => ({
      id: String(s.ID ?? ''),
      address: String(s.Address ?? ''),
      voter: (s.Suffrage ?? 0) === 0,
    })),
  };
}

/** The checks that can only be made once the last byte is in. */
function conclude(tar: TarChecker): Omit<VerifiedSnapshot, 'sha256' | 'bytes'> {
  if (!tar.ended) {
    throw new SnapshotInvalidError(
      'Snapshot tar ends without its end-of-archive marker: the snapshot is incomplete (truncated download?).',
    );
  }
  const names = new Set(tar.members.map((m) => m.name));
  const sealed = tar.members.find((m) => m.name === 'SHA256SUMS.sealed');
  // Same rule as the Go client's ErrIncompleteSnapshot (api/sys_raft.go).
  if (!sealed || sealed.size === 0)
    throw new SnapshotInvalidError('Incomplete snapshot: SHA256SUMS.sealed is missing or empty.');
  const sumsBody = tar.kept.get('SHA256SUMS');
  if (!sumsBody) throw new SnapshotInvalidError('Snapshot has no SHA256SUMS: not a Raft snapshot.');
  const sums = parseSums(sumsBody.toString('utf8'));
  for (const required of ['meta.json', 'state.bin']) {
    if (!names.has(required))
      throw new SnapshotInvalidError(`Snapshot has no ${required}: not a complete Raft snapshot.`);
    if (!sums.has(required))
      throw new SnapshotInvalidError(`Snapshot SHA256SUMS does not list ${required}: corrupt snapshot.`);
  }
  for (const [name, expected] of sums) {
    const m = tar.members.find((x) => x.name === name);
    if (!m) throw new SnapshotInvalidError(`Snapshot SHA256SUMS lists ${name}, which the archive does not hold.`);
    if (m.sha256 !== expected)
      throw new SnapshotInvalidError(`Snapshot member ${name} does not match its SHA256SUMS entry: corrupt snapshot.`);
  }
  for (const m of tar.members) {
    if (m.name !== 'SHA256SUMS' && m.name !== 'SHA256SUMS.sealed' && !sums.has(m.name)) {
      throw new SnapshotInvalidError(`Snapshot member ${m.name} is not covered by SHA256SUMS.`);
    }
  }
  const meta = parseMeta(tar.kept.get('meta.json')!);
  const state = tar.members.find((m) => m.name === 'state.bin')!;
  if (meta.size !== state.size)
    throw new SnapshotInvalidError(
      `Snapshot meta.json says state.bin is ${meta.size} bytes, the archive holds ${state.size}: corrupt snapshot.`,
    );
  return { members: tar.members, meta };
}

/**
 * The decompression cap: past INFLATE_FLOOR bytes, the inflated stream may be at most `ratio`
 * times the compressed bytes read so far. Vault encrypts every value with its barrier key, so real
 * snapshots compress a few times at most (a fresh, nearly empty one more, which the floor covers);
 * deflate's limit is ~1032:1, which is what a bomb uses. VAULTOPS_SNAPSHOT_MAX_INFLATE_RATIO
 * changes the ratio.
 */
export interface InflateLimits {
  inflateFloorBytes?: number | undefined;
  maxInflateRatio?: number | undefined;
  /**
   * Inflated bytes between two forced young-generation collections (default GC_EVERY), or
   * `Infinity` to leave the dead buffers to V8. The forced collections keep a backup's peak RSS under
   * its goal but cost CPU on the main thread, which bounds the throughput; a check with no memory goal
   * (a file verified before a restore, `backups verify`) runs without them.
   */
  youngGcEveryBytes?: number | undefined;
}
const INFLATE_FLOOR = 1 << 30;
const RATIO_ENV = 'VAULTOPS_SNAPSHOT_MAX_INFLATE_RATIO';
function defaultInflateRatio(): number {
  const v = Number(process.env[RATIO_ENV]);
  return Number.isFinite(v) && v >= 1 ? v : 100;
}

/**
 * Verifies a Raft snapshot from buffers handed to it in order: the whole-file sha256 on the main
 * thread, gunzip in libuv's threadpool (in parallel), the tar walk and member hashes as gunzip's
 * output arrives. It fails on the first sign of trouble: not gzip, a bad tar header, a checksum
 * mismatch, or, at the end, a missing end-of-archive or SHA256SUMS.sealed.
 *
 * The caller lends each buffer until `done` is called (gunzip reads it from another thread), so a
 * caller with a pool of buffers can keep memory and allocations constant whatever the size.
 */
export class SnapshotCheck {
  readonly #fileHash = createHash('sha256');
  #bytes = 0;
  readonly #tar = new TarChecker();
  readonly #gunzip: RawGunzip;
  #failure: Error | undefined;
  #sinceGc = 0;
  #inflated = 0;
  readonly #floor: number;
  readonly #ratio: number;
  readonly #gcEvery: number;

  constructor(limits: InflateLimits = {}) {
    this.#floor = limits.inflateFloorBytes ?? INFLATE_FLOOR;
    this.#gcEvery = limits.youngGcEveryBytes ?? GC_EVERY;
    this.#ratio = limits.maxInflateRatio ?? defaultInflateRatio();
    // 256 KB output slices (zlib allocates one fresh buffer per chunkSize of output; see GC_EVERY).
    this.#gunzip = new RawGunzip({
      chunkSize: 256 << 10,
      onData: (chunk) => this.#onInflated(chunk),
      onError: (e) => this.#fail(e),
    });
  }

  #onInflated(chunk: Buffer): void {
    this.#sinceGc += chunk.length;
    if (this.#sinceGc >= this.#gcEvery) {
      this.#sinceGc = 0;
      collectYoungGarbage();
    }
    if (this.#failure) return;
    this.#inflated += chunk.length;
    if (this.#inflated > Math.max(this.#floor, this.#ratio * this.#bytes)) {
      this.#fail(
        new SnapshotInvalidError(
          `Snapshot inflates to more than ${this.#ratio} times its compressed size (${this.#inflated} bytes from the first ${this.#bytes}): a gzip bomb, or not a Raft snapshot; stopped there.`,
          {
            hint: `Vault's snapshots hold barrier-encrypted data and compress little. If this one really is that compressible, raise ${RATIO_ENV} (now ${this.#ratio}).`,
          },
        ),
      );
      return;
    }
    try {
      this.#tar.write(chunk);
    } catch (e) {
      this.#fail(e as Error);
    }
  }

  /** The first problem found, if any. */
  get failure(): Error | undefined {
    return this.#failure;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Takes the next bytes of the file. `buf` must stay unchanged until `done` is called. */
  write(buf: Buffer, done: (error?: Error | null) => void): void {
    if (this.#failure) return queueMicrotask(() => done(this.#failure));
    this.#bytes += buf.length;
    // Inflate first: the threadpool starts on it while this thread hashes the same bytes.
    this.#gunzip.write(buf, (e) => done(this.#failure ?? e));
    this.#fileHash.update(buf);
  }

  /** After the last write: waits for gunzip to finish and makes the checks that need the whole file. */
  async end(): Promise<VerifiedSnapshot> {
    if (this.#failure) throw this.#failure;
    if (this.#bytes === 0) throw new SnapshotInvalidError('The snapshot is empty (0 bytes).');
    try {
      await this.#gunzip.end();
    } catch (e) {
      this.#fail(e as Error);
    }
    // Read again after the await: the gunzip's 'error' may have set it meanwhile.
    const failure: Error | undefined = this.#failure;
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- it is an Error; with the TS 6 API the rule cannot tell after the await
    if (failure) throw failure;
    try {
      return { sha256: this.#fileHash.digest('hex'), bytes: this.#bytes, ...conclude(this.#tar) };
    } catch (e) {
      this.#fail(e as Error);
      throw e;
    }
  }

  destroy(): void {
    this.#gunzip.destroy();
  }

  #fail(e: Error): void {
    if (this.#failure) return;
    this.#failure = e;
    this.#gunzip.destroy();
  }
}

export interface SnapshotVerifier {
  /** Pass-through: what goes in comes out unchanged, so it sits between the source and the file. */
  stream: Transform;
  /** The verified snapshot. Only call after the pipeline finished. */
  result(): VerifiedSnapshot;
}

/**
 * Inflated bytes between two young-generation collections (see core/young-gc.ts). Measured on a
 * 1 GB snapshot: every 8 MB -> peak RSS ~110 MB, every 2 MB (with 256 KB gunzip output and a 4 x 512 KB
 * pump pool) -> ~95 MB. The cost is CPU: verifying a 1 GB file (`backups verify`, 2026-12-03) took
 * 4.6-5.3 CPU-s with a collection every 2 MB (~480 scavenges, ~110 mark-compacts: buffers still in
 * flight survive the scavenges and are promoted) and 3.5 CPU-s with none (3 scavenges, 44
 * mark-compacts), at a peak RSS of 110 against 149 MB.
 */
const GC_EVERY = 2 << 20;

/** For checks with no memory goal: V8 frees the inflated buffers when it decides (see GC_EVERY). */
export const UNHURRIED_GC: InflateLimits = { youngGcEveryBytes: Infinity };

/** Chunks a Transform lets gunzip hold at once: each is a threadpool round trip, so keep several in flight. */
const IN_FLIGHT = 8;

/**
 * SnapshotCheck as a pass-through Transform, for pipelines (files, decryption). Input chunks are
 * passed on at once and acknowledged while fewer than IN_FLIGHT are still with gunzip.
 */
export function createSnapshotVerifier(limits: InflateLimits = {}): SnapshotVerifier {
  const check = new SnapshotCheck(limits);
  let verified: VerifiedSnapshot | undefined;
  let inFlight = 0;
  let waiting: (() => void) | undefined;
  const release = () => {
    inFlight--;
    const w = waiting;
    waiting = undefined;
    w?.();
  };
  const stream = new Transform({
    transform(chunk: Buffer, _enc, callback: TransformCallback) {
      if (check.failure) return callback(check.failure);
      inFlight++;
      check.write(chunk, () => release());
      this.push(chunk);
      if (inFlight < IN_FLIGHT) return callback(check.failure);
      waiting = () => callback(check.failure);
    },
    flush(callback: TransformCallback) {
      check.end().then(
        (v) => {
          verified = v;
          callback();
        },
        (e: Error) => callback(e),
      );
    },
    destroy(error, callback) {
      check.destroy();
      callback(error);
    },
  });
  return {
    stream,
    result() {
      if (!verified) throw check.failure ?? new SnapshotInvalidError('The snapshot was not read to its end.');
      return verified;
    },
  };
}

/** Reads a snapshot file from disk and verifies it (no cluster needed). Throws SnapshotInvalidError. */
export async function verifySnapshotFile(path: string, signal?: AbortSignal): Promise<VerifiedSnapshot> {
  const v = createSnapshotVerifier(UNHURRIED_GC);
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  try {
    await pipeline(
      createReadStream(path, { highWaterMark: 1 << 20 }),
      v.stream,
      sink,
      ...(signal ? ([{ signal }] as const) : []),
    );
  } catch (e) {
    if (e instanceof VaultopsError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR')
      throw new VaultopsError(`Cannot read snapshot ${path}: ${code}.`, { hint: 'Check the path.' });
    throw e;
  }
  return v.result();
}
