import { createHash, type Hash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import { join as localJoin } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32 } from 'node:zlib';
import { VaultopsError } from '../../core/errors.js';
import { shrinkHeapAfterLoad } from '../../core/young-gc.js';
import { backupEntry, newestFirst, sidecarText, storedFileOf, type Manifest } from './manifest.js';
import { assertPlainName } from './local-dir-store.js';
import type { RetentionRule } from './retention.js';
import type { S3Api, UploadedPart } from './s3-api.js';
import type { BackupEntry, BackupStore, SnapshotSink } from './store.js';

/**
 * Bytes in multipart part `n` (from 1). S3 wants >= 5 MiB for all but the last part, and at most
 * 10,000 parts. Parts are 5 MiB (the least memory: two part buffers) up to part 9,000 (43.9 GiB), then
 * double every 250 parts (10, 20, 40, 80 MiB), so the largest snapshot is 80.6 GiB. Part sizes change
 * only past 43.9 GiB: services that want equal parts (Cloudflare R2) see equal parts below that.
 */
export function partSize(n: number): number {
  const MiB = 1 << 20;
  if (n <= 9000) return 5 * MiB;
  return 5 * MiB * 2 ** Math.min(4, Math.ceil((n - 9000) / 250));
}
/**
 * Part buffers of one upload: one part is sent while the other fills. A buffer goes back to the pool
 * only once its UploadPart settled, retries included, so a part is never sent with later bytes.
 */
const POOL = 2;
const SMALL_FILE_LIMIT = 1 << 20;

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
}

/** What each part carries so the server can check it received the bytes that were hashed. */
export type S3Checksum = 'CRC32' | 'SHA256' | 'none';

export interface S3Settings {
  /** http(s) URL of an S3-compatible service; none for AWS S3 (the SDK finds the regional endpoint). */
  endpoint?: string | undefined;
  bucket: string;
  region: string;
  /** `<endpoint>/<bucket>/<key>` rather than `<bucket>.<endpoint>/<key>`. */
  forcePathStyle: boolean;
  /** Static keys (resolved secret references); without them the SDK's default credential chain. */
  credentials?: (() => Promise<S3Credentials>) | undefined;
  /** A profile of ~/.aws/config and ~/.aws/credentials for the default chain. */
  profile?: string | undefined;
  /** PEM text of a CA for https endpoints signed by a private CA. */
  ca?: string | undefined;
  sse?: 'AES256' | 'aws:kms' | undefined;
  kmsKeyId?: string | undefined;
  maxAttempts?: number | undefined;
  retryMode?: 'standard' | 'adaptive' | undefined;
  checksum: S3Checksum;
  timeoutMs?: number | undefined;
}

export interface S3StoreConfig extends S3Settings {
  /** Key prefix ("" or "prod/vault/"). */
  prefix: string;
  label: string;
}

/**
 * Snapshots as objects in an S3 bucket: `<prefix><name>`, `<name>.sha256`, `<name>.json`. A snapshot
 * is sent as a multipart upload while it streams; nothing is visible until the upload is completed,
 * which happens only after every byte was verified, the sidecar and the manifest are stored, and the
 * parts add up to the manifest's size. Any failure aborts the upload (the parts are dropped) and
 * removes what was written. Snapshot keys never hold '/' after the prefix.
 *
 * The multipart upload is driven here with the SDK's commands, not with @aws-sdk/lib-storage's
 * Upload: that allocates a fresh buffer per part and copies it again (a 1 GB backup peaked at ~150 MB
 * RSS with it, against ~110 MB with two reused part buffers).
 */
export class S3Store implements BackupStore {
  readonly kind = 's3';
  readonly location: string;
  readonly retention: RetentionRule;
  readonly #settings: S3Settings;
  readonly #prefix: string;
  #api: Promise<S3Api> | undefined;
  #opened: S3Api | undefined;

  constructor(config: S3StoreConfig, retention: RetentionRule = {}) {
    this.#settings = config;
    this.#prefix = config.prefix === '' || config.prefix.endsWith('/') ? config.prefix : `${config.prefix}/`;
    this.location = `s3://${config.bucket}${this.#prefix ? `/${this.#prefix.replace(/\/$/, '')}` : ''}`;
    this.retention = retention;
  }

  /** The SDK client, loaded on first use: a run that never touches S3 never loads the SDK. */
  #s3(): Promise<S3Api> {
    return (this.#api ??= import('./s3-api.js').then(({ S3Api }) => (this.#opened = new S3Api(this.#settings))));
  }

  #key(name: string): string {
    return `${this.#prefix}${name}`;
  }

  async begin(name: string): Promise<SnapshotSink> {
    assertPlainName(name);
    const s3 = await this.#s3();
    let finalName = name;
    for (let k = 2; await s3.exists(this.#key(finalName)); k++) {
      if (k > 99) throw new VaultopsError(`Too many backups named ${name} in ${this.location}.`);
      finalName = name.replace(/(\.snap(?:\.age|\.pgp)?)?$/, `-${k}$1`);
    }
    const key = this.#key(finalName);
    const uploadId = await s3.createUpload(key);
    // The SDK is loaded and its first request made: give back the young generation its loading grew.
    shrinkHeapAfterLoad();
    const upload = new S3Upload(s3, key, uploadId, `${this.location}/${finalName}`);
    let done = false;
    const abortUpload = async () => {
      if (!upload.destroyed) upload.destroy();
      await upload.idle();
      await s3.abortUpload(key, uploadId).catch(() => undefined);
    };
    return {
      name: finalName,
      stream: upload,
      commit: async (manifest: Manifest) => {
        if (done) throw new VaultopsError('Snapshot sink committed twice.');
        done = true;
        const written: string[] = [];
        try {
          const parts = await upload.finished();
          const size = storedFileOf(manifest).size;
          if (upload.bytes !== size)
            throw new VaultopsError(
              `${this.location}/${finalName}: ${upload.bytes} bytes were uploaded, the manifest says ${size}.`,
            );
          await s3.putText(`${key}.sha256`, sidecarText(storedFileOf(manifest).sha256, finalName), 'text/plain');
          written.push(`${key}.sha256`);
          await s3.putText(`${key}.json`, `${JSON.stringify(manifest, null, 2)}\n`, 'application/json');
          written.push(`${key}.json`);
          // The commit point: before it the object does not exist, after it it is complete.
          await s3.completeUpload(key, uploadId, parts);
        } catch (e) {
          for (const k of written) await s3.remove(k).catch(() => undefined);
          await abortUpload();
          throw e;
        }
      },
      abort: async () => {
        done = true;
        await abortUpload();
      },
    };
  }

  async list(): Promise<BackupEntry[]> {
    const s3 = await this.#s3();
    const objects = new Map<string, { size: number; modified: Date }>();
    for (const o of await s3.list(this.#prefix)) {
      const name = o.key.slice(this.#prefix.length);
      if (!o.key.startsWith(this.#prefix) || name === '' || name.includes('/')) continue;
      objects.set(name, { size: o.size, modified: o.modified });
    }
    const entries: BackupEntry[] = [];
    for (const [n, o] of objects) {
      if (n.endsWith('.json') || n.endsWith('.sha256') || n.startsWith('.')) continue;
      const json = objects.get(`${n}.json`);
      const text =
        json && json.size <= SMALL_FILE_LIMIT
          ? await s3.getText(this.#key(`${n}.json`), SMALL_FILE_LIMIT).catch(() => undefined)
          : undefined;
      entries.push(backupEntry(n, o.size, o.modified, text));
    }
    return newestFirst(entries);
  }

  async open(name: string): Promise<Readable> {
    assertPlainName(name);
    return (await this.#s3()).getStream(this.#key(name));
  }

  localPath(): undefined {
    return undefined;
  }

  /** Copies snapshot, manifest and sidecar into a local directory (restore and verify read local files). */
  async download(name: string, dir: string): Promise<string> {
    assertPlainName(name);
    const s3 = await this.#s3();
    const local = localJoin(dir, name);
    await pipeline(await s3.getStream(this.#key(name)), createWriteStream(local, { mode: 0o600 }));
    await chmod(local, 0o600);
    for (const ext of ['.json', '.sha256']) {
      const text = await s3.getText(this.#key(`${name}${ext}`), SMALL_FILE_LIMIT).catch(() => undefined);
      if (text !== undefined) await writeFile(`${local}${ext}`, text, { mode: 0o600 });
    }
    return local;
  }

  async remove(name: string): Promise<void> {
    assertPlainName(name);
    const s3 = await this.#s3();
    // Manifest first, as in the other stores: a crash in between leaves an unverified object, never a manifest without data.
    for (const k of [`${name}.json`, `${name}.sha256`, name]) await s3.remove(this.#key(k));
  }

  close(): void {
    this.#opened?.close();
  }
}

/** A running checksum of one part, fed with the bytes as they are copied into the part's buffer. */
interface PartSum {
  update(data: Buffer): void;
  digest(): string | undefined;
}

function partSum(kind: S3Checksum): PartSum {
  if (kind === 'CRC32') {
    let crc = 0;
    return {
      update: (d) => (crc = crc32(d, crc)),
      digest: () => {
        const b = Buffer.alloc(4);
        b.writeUInt32BE(crc >>> 0);
        return b.toString('base64');
      },
    };
  }
  if (kind === 'SHA256') {
    const h: Hash = createHash('sha256');
    return { update: (d) => h.update(d), digest: () => h.digest('base64') };
  }
  return { update: () => undefined, digest: () => undefined };
}

/**
 * The multipart upload as a Writable. Bytes are copied into a part buffer of the store's own pool
 * (the backup pipeline reuses its buffers once a write is acknowledged), and the part's checksum is
 * computed from the same bytes as they are copied; the server checks each part against it. A full
 * part is sent while the next fills; a write waits only when every pool buffer is full or in flight.
 * `finished()` gives the stored parts in order.
 */
class S3Upload extends Writable {
  bytes = 0;
  readonly #free: Buffer[] = [];
  #allocated = 0;
  #part: Buffer | undefined;
  #fill = 0;
  #sum: PartSum;
  #parts: UploadedPart[] = [];
  /** Parts being sent, oldest first. */
  #inflight: Array<Promise<void>> = [];
  #failed: Error | undefined;
  #ended: Promise<UploadedPart[]>;
  #resolveEnded!: (parts: UploadedPart[]) => void;
  #rejectEnded!: (e: Error) => void;

  constructor(
    private readonly s3: S3Api,
    private readonly key: string,
    private readonly uploadId: string,
    private readonly where: string,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.#sum = partSum(s3.checksum);
    this.#ended = new Promise((res, rej) => {
      this.#resolveEnded = res;
      this.#rejectEnded = rej;
    });
    this.#ended.catch(() => undefined);
  }

  /** The stored parts in order, once every part is stored (after end()). */
  finished(): Promise<UploadedPart[]> {
    return this.#ended;
  }

  /** Resolves when no part is being sent. */
  async idle(): Promise<void> {
    await Promise.allSettled(this.#inflight);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    void this.#take(chunk).then(
      () => cb(),
      (e: Error) => cb(e),
    );
  }

  override _final(cb: (e?: Error | null) => void): void {
    void (async () => {
      if (this.#fill > 0 || this.#parts.length === 0) await this.#sendPart();
      await Promise.allSettled(this.#inflight);
      if (this.#failed) throw this.#failed;
      return this.#parts;
    })().then(
      (parts) => {
        this.#resolveEnded(parts);
        cb();
      },
      (e: Error) => {
        this.#rejectEnded(e);
        cb(e);
      },
    );
  }

  override _destroy(error: Error | null, cb: (e?: Error | null) => void): void {
    this.#rejectEnded(error ?? new VaultopsError(`Upload of ${this.where} was stopped.`));
    cb(error);
  }

  /**
   * A free buffer of at least `size` bytes: from the pool, a new one while the pool is not full, else
   * once the oldest part is stored. A pool buffer too small for the part size it is asked for is dropped.
   */
  async #buffer(size: number): Promise<Buffer> {
    for (;;) {
      if (this.#failed) throw this.#failed;
      const b = this.#free.pop();
      if (b && b.length >= size) return b;
      if (b) this.#allocated--;
      if (this.#allocated < POOL) {
        this.#allocated++;
        return Buffer.allocUnsafe(size);
      }
      await this.#inflight[0]?.catch(() => undefined);
    }
  }

  async #take(chunk: Buffer): Promise<void> {
    let i = 0;
    while (i < chunk.length) {
      const size = partSize(this.#parts.length + 1);
      this.#part ??= await this.#buffer(size);
      const n = Math.min(size - this.#fill, chunk.length - i);
      const piece = chunk.subarray(i, i + n);
      piece.copy(this.#part, this.#fill);
      this.#sum.update(piece);
      this.#fill += n;
      i += n;
      this.bytes += n;
      if (this.#fill === size) await this.#sendPart();
    }
  }

  /** Starts sending the filled part; its buffer returns to the pool once S3 stored it. */
  async #sendPart(): Promise<void> {
    if (this.#failed) throw this.#failed;
    const buffer = this.#part ?? (await this.#buffer(0));
    const body = buffer.subarray(0, this.#fill);
    const checksum = this.#sum.digest();
    const number = this.#parts.length + 1;
    this.#parts.push({ etag: '' });
    this.#part = undefined;
    this.#fill = 0;
    this.#sum = partSum(this.s3.checksum);
    const sending: Promise<void> = this.s3.uploadPart(this.key, this.uploadId, number, body, checksum).then(
      (stored) => {
        this.#parts[number - 1] = stored;
        this.#free.push(buffer);
      },
      (e: Error) => {
        this.#failed ??= e;
      },
    );
    this.#inflight.push(sending);
    void sending.finally(() => this.#inflight.splice(this.#inflight.indexOf(sending), 1));
  }
}
