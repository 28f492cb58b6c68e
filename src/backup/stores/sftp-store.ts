import { randomBytes } from 'node:crypto';
import { chmod, writeFile } from 'node:fs/promises';
import { join as localJoin } from 'node:path';
import { posix } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import type { FileEntryWithStats, SFTPWrapper, Stats } from 'ssh2';
import { VaultopsError } from '../../core/errors.js';
import type { SshHost, SshTarget } from '../../ssh/connection.js';
import { backupEntry, newestFirst, sidecarText, storedFileOf, type Manifest } from './manifest.js';
import { assertPlainName, PARTIAL_SUFFIX } from './local-dir-store.js';
import type { RetentionRule } from './retention.js';
import type { BackupEntry, BackupStore, SnapshotSink } from './store.js';

/** SFTP status codes (draft-ietf-secsh-filexfer-02) that ssh2 puts in `err.code`. */
const NO_SUCH_FILE = 2;
/** Writes in flight at once: the round trip per write is what limits a single-request stream. */
const MAX_INFLIGHT = 8;
const SMALL_FILE_LIMIT = 1 << 20;

export interface SftpStoreConfig {
  host: string;
  port?: number | undefined;
  user?: string | undefined;
  keyFile?: string | undefined;
  hostKey?: string | undefined;
  knownHosts?: string | undefined;
  /** The key file's passphrase, resolved only when the store connects (a secret reference's value). */
  passphrase?: (() => Promise<string>) | undefined;
  /** Absolute directory on the server. */
  path: string;
  /** The store's name in the inventory (messages). */
  label?: string | undefined;
}

type Session = { host: SshHost; sftp: SFTPWrapper };

/**
 * A directory on an SFTP server (OpenSSH's sftp-server or internal-sftp), with the same layout and
 * guarantees as LocalDirStore: the snapshot streams into `<name>.partial` on the server with several
 * writes in flight, is fsynced there (fsync@openssh.com) and its size compared with the verified
 * stream, then `<name>.sha256` and `<name>.json` are written (tmp + rename), and only then is the
 * partial renamed to `<name>`. Any failure removes the partial (over a fresh connection if the old
 * one died). The host key must be pinned or in known_hosts, as for every SSH connection.
 */
export class SftpStore implements BackupStore {
  readonly kind = 'sftp';
  readonly location: string;
  readonly retention: RetentionRule;
  readonly #target: SshTarget;
  readonly #dir: string;
  readonly #passphrase: (() => Promise<string>) | undefined;
  #session: Promise<Session> | undefined;

  constructor(config: SftpStoreConfig, retention: RetentionRule = {}) {
    if (!posix.isAbsolute(config.path)) throw new VaultopsError(`SFTP store path ${config.path} is not absolute.`);
    this.#dir = posix.normalize(config.path).replace(/(.)\/$/, '$1');
    this.#passphrase = config.passphrase;
    this.#target = {
      host: config.host,
      port: config.port ?? 22,
      user: config.user,
      keyFile: config.keyFile,
      hostKey: config.hostKey,
      knownHosts: config.knownHosts,
      label: config.label ? `store ${config.label}` : `sftp ${config.host}`,
    };
    this.retention = retention;
    const port = config.port ?? 22;
    this.location = `sftp://${config.user ?? 'root'}@${config.host}${port === 22 ? '' : `:${port}`}${this.#dir}`;
  }

  #connect(): Promise<Session> {
    if (!this.#session) {
      const s = (async () => {
        // ssh2 is loaded only when an SFTP store is used: a backup to a local directory does not pay for it.
        const { SshHost } = await import('../../ssh/connection.js');
        const passphrase = this.#passphrase ? await this.#passphrase() : undefined;
        const host = await SshHost.connect({ ...this.#target, passphrase });
        try {
          return { host, sftp: await host.sftp() };
        } catch (e) {
          host.close();
          throw e;
        }
      })();
      this.#session = s;
      s.catch(() => {
        if (this.#session === s) this.#session = undefined;
      });
    }
    return this.#session;
  }

  /** Drops the connection; the next call opens a new one. */
  close(): void {
    const s = this.#session;
    this.#session = undefined;
    s?.then(
      (x) => x.host.close(),
      () => undefined,
    );
  }

  #path(name: string): string {
    return posix.join(this.#dir, name);
  }

  async begin(name: string): Promise<SnapshotSink> {
    assertPlainName(name);
    const { sftp } = await this.#connect();
    await mkdirs(sftp, this.#dir).catch((e: unknown) => {
      throw sftpError(e, `creating ${this.location}`);
    });
    let final = this.#path(name);
    for (let k = 2; (await exists(sftp, final)) || (await exists(sftp, `${final}${PARTIAL_SUFFIX}`)); k++) {
      if (k > 99) throw new VaultopsError(`Too many backups named ${name} in ${this.location}.`);
      final = this.#path(name.replace(/(\.snap(?:\.age|\.pgp)?)?$/, `-${k}$1`));
    }
    const finalName = posix.basename(final);
    const partial = `${final}${PARTIAL_SUFFIX}`;
    let handle: Buffer;
    try {
      // wx: exclusive create, never another run's partial file.
      handle = await call<Buffer>((cb) => sftp.open(partial, 'wx', { mode: 0o600 }, cb));
    } catch (e) {
      throw sftpError(
        e,
        `creating ${this.location}/${posix.basename(partial)}`,
        'Check that the directory exists on the server and that the SSH user may write there.',
      );
    }
    const upload = new SftpUpload(sftp, handle, `${this.location}/${finalName}`);
    let done = false;
    const cleanup = async () => {
      if (!upload.destroyed) upload.destroy();
      await upload.handleClosed.catch(() => undefined);
      await this.#removeQuietly([partial]);
    };
    return {
      name: finalName,
      stream: upload,
      commit: async (manifest: Manifest) => {
        if (done) throw new VaultopsError('Snapshot sink committed twice.');
        done = true;
        const written: string[] = [];
        try {
          // final() of the upload waited for every write, fsynced and closed the handle.
          await upload.handleClosed;
          const st = await call<Stats>((cb) => sftp.stat(partial, cb));
          if (st.size !== storedFileOf(manifest).size)
            throw new VaultopsError(
              `${this.location}/${posix.basename(partial)} holds ${st.size} bytes after the upload, not the ${storedFileOf(manifest).size} that were written; removed.`,
            );
          await putSmall(sftp, `${final}.sha256`, sidecarText(storedFileOf(manifest).sha256, finalName));
          written.push(`${final}.sha256`);
          await putSmall(sftp, `${final}.json`, `${JSON.stringify(manifest, null, 2)}\n`);
          written.push(`${final}.json`);
          // The commit point. Plain SFTP rename refuses an existing target, which is what we want here.
          await call((cb) => sftp.rename(partial, final, cb));
        } catch (e) {
          await this.#removeQuietly(written);
          await cleanup();
          throw sftpError(e, `storing ${this.location}/${finalName}`);
        }
      },
      abort: async () => {
        done = true;
        await cleanup();
      },
    };
  }

  /** Removes files, ignoring the missing; when the connection broke (the usual reason for an abort), over a new one. */
  async #removeQuietly(paths: string[]): Promise<void> {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const { sftp } = await this.#connect();
        for (const p of paths) await unlinkIfThere(sftp, p);
        return;
      } catch {
        this.close();
      }
    }
  }

  async list(): Promise<BackupEntry[]> {
    const { sftp } = await this.#connect();
    let items: FileEntryWithStats[];
    try {
      items = await call<FileEntryWithStats[]>((cb) => sftp.readdir(this.#dir, cb));
    } catch (e) {
      if ((e as { code?: number }).code === NO_SUCH_FILE) return [];
      throw sftpError(e, `listing ${this.location}`);
    }
    const byName = new Map(items.map((i) => [i.filename, i]));
    const entries: BackupEntry[] = [];
    for (const it of items) {
      const n = it.filename;
      if (
        n.endsWith('.json') ||
        n.endsWith('.sha256') ||
        n.endsWith(PARTIAL_SUFFIX) ||
        n.endsWith('.tmp') ||
        n.startsWith('.')
      )
        continue;
      if (((it.attrs.mode ?? 0) & 0o170000) !== 0o100000) continue;
      const size = it.attrs.size ?? 0;
      const json = byName.get(`${n}.json`);
      const text =
        json && (json.attrs.size ?? 0) <= SMALL_FILE_LIMIT
          ? await getSmall(sftp, this.#path(`${n}.json`)).catch(() => undefined)
          : undefined;
      entries.push(backupEntry(n, size, new Date((it.attrs.mtime ?? 0) * 1000), text));
    }
    return newestFirst(entries);
  }

  async open(name: string): Promise<Readable> {
    assertPlainName(name);
    const { sftp } = await this.#connect();
    return sftp.createReadStream(this.#path(name));
  }

  localPath(): undefined {
    return undefined;
  }

  /**
   * Copies the snapshot with its manifest and sidecar into a local directory (restore and verify read
   * local files); the caller verifies the copy like any file. Returns the local snapshot path.
   */
  async download(name: string, dir: string): Promise<string> {
    assertPlainName(name);
    const { sftp } = await this.#connect();
    const local = localJoin(dir, name);
    await call((cb) => sftp.fastGet(this.#path(name), local, { concurrency: 16, chunkSize: 128 * 1024 }, cb)).catch(
      (e: unknown) => {
        throw sftpError(e, `downloading ${this.location}/${name}`);
      },
    );
    await chmod(local, 0o600);
    for (const ext of ['.json', '.sha256']) {
      const text = await getSmall(sftp, this.#path(`${name}${ext}`)).catch(() => undefined);
      if (text !== undefined) await writeFile(`${local}${ext}`, text, { mode: 0o600 });
    }
    return local;
  }

  async remove(name: string): Promise<void> {
    assertPlainName(name);
    const { sftp } = await this.#connect();
    const path = this.#path(name);
    // Manifest first, as in the local store: a crash in between leaves an unverified file, never a manifest without data.
    try {
      for (const p of [`${path}.json`, `${path}.sha256`, path]) await unlinkIfThere(sftp, p);
    } catch (e) {
      throw sftpError(e, `removing ${this.location}/${name}`);
    }
  }
}

/**
 * A Writable onto an open SFTP handle with up to MAX_INFLIGHT writes outstanding (ssh2's own
 * WriteStream waits for each reply). final(): waits for every reply, fsyncs, closes the handle.
 */
class SftpUpload extends Writable {
  readonly handleClosed: Promise<void>;
  #pos = 0;
  #inflight = 0;
  #failed: Error | undefined;
  #onSlot: (() => void) | undefined;
  #onIdle: (() => void) | undefined;
  #handleOpen = true;
  #resolveClosed!: () => void;
  #rejectClosed!: (e: Error) => void;

  constructor(
    private readonly sftp: SFTPWrapper,
    private readonly handle: Buffer,
    private readonly where: string,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.handleClosed = new Promise((res, rej) => {
      this.#resolveClosed = res;
      this.#rejectClosed = rej;
    });
    this.handleClosed.catch(() => undefined);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.#failed) return cb(this.#failed);
    this.#inflight++;
    // The write is acknowledged before the server has it (up to MAX_INFLIGHT at once), and ssh2 sends
    // what exceeds one packet only after the first is answered: so it gets its own copy, since a
    // writer may reuse a chunk once it is acknowledged (the backup pump does).
    const data = Buffer.from(chunk);
    this.sftp.write(this.handle, data, 0, data.length, this.#pos, (e) => {
      this.#inflight--;
      if (e && !this.#failed) this.#failed = sftpError(e, `writing ${this.where}`);
      const slot = this.#onSlot;
      this.#onSlot = undefined;
      slot?.();
      if (this.#inflight === 0) {
        const idle = this.#onIdle;
        this.#onIdle = undefined;
        idle?.();
      }
    });
    this.#pos += data.length;
    if (this.#inflight < MAX_INFLIGHT) cb();
    else this.#onSlot = () => cb(this.#failed);
  }

  override _final(cb: (e?: Error | null) => void): void {
    const finish = () => {
      if (this.#failed) return cb(this.#failed);
      fsync(this.sftp, this.handle)
        .then(() => this.#close())
        .then(
          () => cb(),
          (e: unknown) => cb(sftpError(e, `flushing ${this.where}`)),
        );
    };
    if (this.#inflight === 0) finish();
    else this.#onIdle = finish;
  }

  override _destroy(error: Error | null, cb: (e?: Error | null) => void): void {
    this.#close().then(
      () => cb(error),
      () => cb(error),
    );
  }

  async #close(): Promise<void> {
    if (!this.#handleOpen) return;
    this.#handleOpen = false;
    try {
      await call((cb) => this.sftp.close(this.handle, cb));
      this.#resolveClosed();
    } catch (e) {
      this.#rejectClosed(e as Error);
      throw e;
    }
  }
}

function call<T = void>(fn: (cb: (err: Error | null | undefined, value?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    try {
      fn((err, value) => (err ? reject(err) : resolve(value as T)));
    } catch (e) {
      reject(e as Error);
    }
  });
}

async function exists(sftp: SFTPWrapper, path: string): Promise<boolean> {
  try {
    await call<Stats>((cb) => sftp.stat(path, cb));
    return true;
  } catch (e) {
    if ((e as { code?: number }).code === NO_SUCH_FILE) return false;
    throw e;
  }
}

async function mkdirs(sftp: SFTPWrapper, dir: string): Promise<void> {
  const parts = dir.split('/').filter(Boolean);
  for (let i = 1; i <= parts.length; i++) {
    const p = `/${parts.slice(0, i).join('/')}`;
    if (await exists(sftp, p)) continue;
    await call((cb) => sftp.mkdir(p, { mode: 0o700 }, cb)).catch(async (e: unknown) => {
      if (!(await exists(sftp, p))) throw e; // another run made it meanwhile: fine
    });
  }
}

async function fsync(sftp: SFTPWrapper, handle: Buffer): Promise<void> {
  try {
    await call((cb) => sftp.ext_openssh_fsync(handle, cb));
  } catch (e) {
    // A server without fsync@openssh.com: the close below is all we can ask for.
    if (/does not support/i.test((e as Error).message)) return;
    throw e;
  }
}

async function unlinkIfThere(sftp: SFTPWrapper, path: string): Promise<void> {
  await call((cb) => sftp.unlink(path, cb)).catch((e: unknown) => {
    if ((e as { code?: number }).code !== NO_SUCH_FILE) throw e;
  });
}

/**
 * Writes a small file durably: a temp file with a random name created exclusively (`wx`: SFTP's
 * CREAT|EXCL, which OpenSSH's server opens without following a symlink at the name), fsync, then
 * renamed over `<path>`.
 */
async function putSmall(sftp: SFTPWrapper, path: string, text: string): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const data = Buffer.from(text, 'utf8');
  const h = await call<Buffer>((cb) => sftp.open(tmp, 'wx', { mode: 0o600 }, cb));
  try {
    await call((cb) => sftp.write(h, data, 0, data.length, 0, cb));
    await fsync(sftp, h);
  } finally {
    await call((cb) => sftp.close(h, cb)).catch(() => undefined);
  }
  try {
    // posix-rename@openssh.com replaces a leftover target atomically; plain SFTP rename would refuse it.
    await call((cb) => sftp.ext_openssh_rename(tmp, path, cb)).catch(async (e: unknown) => {
      if (!/does not support/i.test((e as Error).message)) throw e;
      await unlinkIfThere(sftp, path);
      await call((cb) => sftp.rename(tmp, path, cb));
    });
  } catch (e) {
    await unlinkIfThere(sftp, tmp).catch(() => undefined);
    throw e;
  }
}

/**
 * Reads a manifest or sidecar: its size is checked on the open handle first, and never more than
 * SMALL_FILE_LIMIT bytes are read, so a huge or growing file at that name costs nothing.
 */
export async function getSmall(sftp: SFTPWrapper, path: string): Promise<string> {
  const h = await call<Buffer>((cb) => sftp.open(path, 'r', cb));
  try {
    const st = await call<Stats>((cb) => sftp.fstat(h, cb));
    if ((st.size ?? 0) > SMALL_FILE_LIMIT)
      throw new VaultopsError(`${path} is too large for a manifest (${st.size} bytes; at most ${SMALL_FILE_LIMIT}).`);
    const buf = Buffer.alloc(SMALL_FILE_LIMIT + 1);
    let got = 0;
    for (;;) {
      const n = await call<number>((cb) => sftp.read(h, buf, got, buf.length - got, got, (e, bytes) => cb(e, bytes)));
      if (!n) break;
      got += n;
      if (got > SMALL_FILE_LIMIT)
        throw new VaultopsError(
          `${path} is too large for a manifest (it grew past ${SMALL_FILE_LIMIT} bytes while read).`,
        );
    }
    return buf.subarray(0, got).toString('utf8');
  } finally {
    await call((cb) => sftp.close(h, cb)).catch(() => undefined);
  }
}

/** An SFTP failure as a message a person can act on (the server says little: "Failure" covers a full disk). */
function sftpError(e: unknown, what: string, hint?: string): Error {
  if (e instanceof VaultopsError) return e;
  const err = e as Error & { code?: number | string };
  const reason =
    err.code === 4 ? `the server answered "${err.message}" (a full disk or quota gives this)` : err.message;
  const writing = /^(writing|flushing|storing|creating) /.test(what);
  return new VaultopsError(
    `SFTP failed while ${what}: ${reason}${writing ? '; the partial file was removed, earlier backups are untouched' : ''}.`,
    {
      hint: hint ?? 'Check free space and permissions on the SFTP server, then run again.',
      cause: e,
    },
  );
}
