import { createWriteStream } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import { join as localJoin } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { VaultopsError } from '../../core/errors.js';
import { backupEntry, newestFirst, sidecarText, storedFileOf, type Manifest } from './manifest.js';
import { assertPlainName } from './local-dir-store.js';
import type { RetentionRule } from './retention.js';
import { S3Client, s3Error, xmlBlocks, xmlText, type S3ClientOptions } from './s3-client.js';
import { escapeMarkup } from '../../core/escape-markup.js';
import type { BackupEntry, BackupStore, SnapshotSink } from './store.js';

/** Bytes per multipart part: S3 wants >= 5 MiB for all but the last. Two parts at most are in memory. */
const PART = 8 << 20;
const SMALL_FILE_LIMIT = 1 << 20;

export interface S3StoreConfig extends S3ClientOptions {
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
 */
export class S3Store implements BackupStore {
  readonly kind = 's3';
  readonly location: string;
  readonly retention: RetentionRule;
  readonly #client: S3Client;
  readonly #prefix: string;

  constructor(config: S3StoreConfig, retention: RetentionRule = {}) {
    this.#client = new S3Client(config);
    this.#prefix = config.prefix === '' || config.prefix.endsWith('/') ? config.prefix : `${config.prefix}/`;
    this.location = `s3://${config.bucket}${this.#prefix ? `/${this.#prefix.replace(/\/$/, '')}` : ''}`;
    this.retention = retention;
  }

  #key(name: string): string {
    return `${this.#prefix}${name}`;
  }

  async #exists(key: string): Promise<boolean> {
    const r = await this.#client.request('HEAD', key);
    if (r.status === 404) return false;
    if (r.status >= 200 && r.status < 300) return true;
    throw s3Error('HEAD', key, r);
  }

  async begin(name: string): Promise<SnapshotSink> {
    assertPlainName(name);
    let finalName = name;
    for (let k = 2; await this.#exists(this.#key(finalName)); k++) {
      if (k > 99) throw new VaultopsError(`Too many backups named ${name} in ${this.location}.`);
      finalName = name.replace(/(\.snap(?:\.age|\.pgp)?)?$/, `-${k}$1`);
    }
    const key = this.#key(finalName);
    const created = await this.#client.ok('POST', key, { uploads: '' }, undefined, {
      'content-type': 'application/octet-stream',
    });
    const uploadId = xmlText(created.body.toString('utf8'), 'UploadId');
    if (!uploadId) throw new VaultopsError(`S3 did not start a multipart upload for ${this.location}/${finalName}.`);
    const upload = new S3Upload(this.#client, key, uploadId, `${this.location}/${finalName}`);
    let done = false;
    const client = this.#client;
    const abortUpload = async () => {
      if (!upload.destroyed) upload.destroy();
      await upload.idle();
      await client.request('DELETE', key, { uploadId }).catch(() => undefined);
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
          await client.ok(
            'PUT',
            `${key}.sha256`,
            {},
            Buffer.from(sidecarText(storedFileOf(manifest).sha256, finalName)),
            { 'content-type': 'text/plain' },
          );
          written.push(`${key}.sha256`);
          await client.ok('PUT', `${key}.json`, {}, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`), {
            'content-type': 'application/json',
          });
          written.push(`${key}.json`);
          // The commit point: before it the object does not exist, after it it is complete.
          const xml = `<CompleteMultipartUpload>${parts.map((p, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${escapeMarkup(p)}</ETag></Part>`).join('')}</CompleteMultipartUpload>`;
          const r = await client.ok('POST', key, { uploadId }, Buffer.from(xml), { 'content-type': 'application/xml' });
          // S3 may answer 200 and put the error in the body.
          if (/<Error>/.test(r.body.toString('utf8'))) throw s3Error('POST (complete)', key, { ...r, status: 500 });
        } catch (e) {
          for (const k of written) await client.request('DELETE', k).catch(() => undefined);
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
    const objects = new Map<string, { size: number; modified: Date }>();
    let token: string | undefined;
    do {
      const r = await this.#client.ok('GET', undefined, {
        'list-type': '2',
        prefix: this.#prefix,
        ...(token ? { 'continuation-token': token } : {}),
      });
      const xml = r.body.toString('utf8');
      for (const c of xmlBlocks(xml, 'Contents')) {
        const key = xmlText(c, 'Key') ?? '';
        const name = key.slice(this.#prefix.length);
        if (!key.startsWith(this.#prefix) || name === '' || name.includes('/')) continue;
        objects.set(name, {
          size: Number(xmlText(c, 'Size') ?? 0),
          modified: new Date(xmlText(c, 'LastModified') ?? 0),
        });
      }
      token = xmlText(xml, 'IsTruncated') === 'true' ? xmlText(xml, 'NextContinuationToken') : undefined;
    } while (token);
    const entries: BackupEntry[] = [];
    for (const [n, o] of objects) {
      if (n.endsWith('.json') || n.endsWith('.sha256') || n.startsWith('.')) continue;
      const json = objects.get(`${n}.json`);
      const text =
        json && json.size <= SMALL_FILE_LIMIT
          ? await this.#getText(this.#key(`${n}.json`)).catch(() => undefined)
          : undefined;
      entries.push(backupEntry(n, o.size, o.modified, text));
    }
    return newestFirst(entries);
  }

  async #getText(key: string): Promise<string> {
    // Manifests and sidecars are kilobytes: a larger object is refused before it is all read.
    return (await this.#client.ok('GET', key, {}, undefined, {}, SMALL_FILE_LIMIT)).body.toString('utf8');
  }

  async open(name: string): Promise<Readable> {
    assertPlainName(name);
    return this.#client.getStream(this.#key(name));
  }

  localPath(): undefined {
    return undefined;
  }

  /** Copies snapshot, manifest and sidecar into a local directory (restore and verify read local files). */
  async download(name: string, dir: string): Promise<string> {
    assertPlainName(name);
    const local = localJoin(dir, name);
    await pipeline(await this.#client.getStream(this.#key(name)), createWriteStream(local, { mode: 0o600 }));
    await chmod(local, 0o600);
    for (const ext of ['.json', '.sha256']) {
      const text = await this.#getText(this.#key(`${name}${ext}`)).catch(() => undefined);
      if (text !== undefined) await writeFile(`${local}${ext}`, text, { mode: 0o600 });
    }
    return local;
  }

  async remove(name: string): Promise<void> {
    assertPlainName(name);
    // Manifest first, as in the other stores: a crash in between leaves an unverified object, never a manifest without data.
    for (const k of [`${name}.json`, `${name}.sha256`, name]) {
      const r = await this.#client.request('DELETE', this.#key(k));
      if (r.status !== 404 && (r.status < 200 || r.status >= 300)) throw s3Error('DELETE', this.#key(k), r);
    }
  }

  close(): void {
    this.#client.close();
  }
}

/**
 * The multipart upload as a Writable: bytes are copied into an 8 MiB part (so a writer may reuse its
 * buffers once a write is acknowledged), a full part is sent while the next fills, and a write waits
 * only when a second part is full before the first is stored. `finished()` gives the parts' ETags.
 */
class S3Upload extends Writable {
  bytes = 0;
  #part: Buffer = Buffer.allocUnsafe(PART);
  #spare: Buffer | undefined;
  #fill = 0;
  #etags: string[] = [];
  #inflight: Promise<void> | undefined;
  #failed: Error | undefined;
  #ended: Promise<string[]>;
  #resolveEnded!: (etags: string[]) => void;
  #rejectEnded!: (e: Error) => void;

  constructor(
    private readonly client: S3Client,
    private readonly key: string,
    private readonly uploadId: string,
    private readonly where: string,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.#ended = new Promise((res, rej) => {
      this.#resolveEnded = res;
      this.#rejectEnded = rej;
    });
    this.#ended.catch(() => undefined);
  }

  /** The ETags in part order, once every part is stored (after end()). */
  finished(): Promise<string[]> {
    return this.#ended;
  }

  /** Resolves when no part is being sent. */
  async idle(): Promise<void> {
    await this.#inflight?.catch(() => undefined);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    void this.#take(chunk).then(
      () => cb(),
      (e: Error) => cb(e),
    );
  }

  override _final(cb: (e?: Error | null) => void): void {
    void (async () => {
      if (this.#fill > 0 || this.#etags.length === 0) await this.#sendPart();
      await this.#inflight;
      if (this.#failed) throw this.#failed;
      return this.#etags;
    })().then(
      (etags) => {
        this.#resolveEnded(etags);
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

  async #take(chunk: Buffer): Promise<void> {
    let i = 0;
    while (i < chunk.length) {
      const n = Math.min(PART - this.#fill, chunk.length - i);
      chunk.copy(this.#part, this.#fill, i, i + n);
      this.#fill += n;
      i += n;
      this.bytes += n;
      if (this.#fill === PART) await this.#sendPart();
    }
  }

  /** Waits for the part in flight, then starts sending the filled one and gives the buffer back. */
  async #sendPart(): Promise<void> {
    await this.#inflight;
    if (this.#failed) throw this.#failed;
    const sending = this.#part;
    const body = sending.subarray(0, this.#fill);
    const number = this.#etags.length + 1;
    this.#etags.push('');
    // Two buffers in turn: the part in flight keeps its own, the next one fills the other. (A fresh
    // 8 MiB buffer per part cost ~2 s of GC per GB and ~40 MB of RSS: they live long enough to age.)
    this.#part = this.#spare ?? Buffer.allocUnsafe(PART);
    this.#spare = undefined;
    this.#fill = 0;
    this.#inflight = this.client
      .ok('PUT', this.key, { partNumber: String(number), uploadId: this.uploadId }, body)
      .then(
        (r) => {
          this.#spare = sending;
          const etag = r.headers['etag'];
          if (typeof etag !== 'string')
            throw new VaultopsError(`S3 stored part ${number} of ${this.where} without an ETag.`);
          this.#etags[number - 1] = etag;
        },
        (e: Error) => {
          this.#failed = e;
          throw e;
        },
      );
    this.#inflight.catch(() => undefined);
  }
}
