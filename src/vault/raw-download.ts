import net from 'node:net';
import tls from 'node:tls';
import { connectProxy, openTunnel, proxyHeaders, requestPath, type ProxyRoute } from './proxy.js';

/**
 * One HTTP/1.1 GET whose body is read into a single reused buffer (the socket's `onread` option)
 * and handed to a consumer as views, without a Buffer, a stream chunk or an event per TLS record.
 *
 * Why not node:http: a 1 GB Raft snapshot arrives as ~80,000 TLS records; node:http allocates a
 * Buffer and runs the stream machinery for each, which cost ~0.6 CPU-s per GB and let ~60 MB of
 * dead buffers pile up before V8 collected them. With a
 * static read buffer the same download takes half the CPU and no memory beyond that buffer.
 *
 * Only what a snapshot download needs: one request per connection (`Connection: close`), a status
 * line and headers, then a body framed by chunked encoding, content-length, or the connection's end.
 */

/**
 * Receives body bytes. `view` is valid only during the call (the next read overwrites it), so
 * copy what must outlive it. Returning false asks the source to pause until `resume()`; views that
 * were already read may still arrive after that and must be taken.
 */
export type ByteConsumer = (view: Buffer) => boolean;

export interface RawDownloadOptions {
  url: URL;
  headers: Record<string, string>;
  tls?: tls.ConnectionOptions | undefined;
  /** Until the status line and headers are in; 0 = none. */
  headTimeoutMs: number;
  /**
   * After the headers: the longest gap between two reads of the body while the consumer wants
   * more (time it spends paused is not counted, a slow disk is not the server's fault); 0 = none.
   */
  idleTimeoutMs?: number | undefined;
  readBufferSize?: number | undefined;
  /** The proxy to go through (proxyFor); undefined: direct. */
  proxy?: ProxyRoute | undefined;
}

/** Thrown when the body ends before its framing says it is complete (server died, connection cut). */
export class BodyCutError extends Error {
  readonly code = 'ERR_STREAM_PREMATURE_CLOSE';
  constructor(detail: string) {
    super(`the connection closed before the response ended (${detail})`);
  }
}

const HEAD_LIMIT = 64 * 1024;

export class RawDownload {
  status = 0;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string> = {};
  readonly #socket: net.Socket;
  #head: Buffer[] = [];
  #headBytes = 0;
  #state: 'head' | 'body' | 'done' | 'failed' = 'head';
  #framing: 'chunked' | 'length' | 'close' = 'close';
  #remaining = 0;
  // Chunked decoding: 'size' reads the hex size line, 'data' the chunk, 'crlf' the two bytes after
  // it, 'trailer' the (usually empty) trailer lines after the last chunk.
  #chunk: 'size' | 'data' | 'crlf' | 'trailer' = 'size';
  #line = '';
  #crlfLeft = 0;
  #stash: Buffer | undefined;
  #consumer: ByteConsumer | undefined;
  #paused = false;
  #onHead: { resolve: () => void; reject: (e: Error) => void } | undefined;
  #onDone: { resolve: () => void; reject: (e: Error) => void } | undefined;
  #error: Error | undefined;
  #timer: NodeJS.Timeout | undefined;
  #idle: NodeJS.Timeout | undefined;
  #lastProgress = 0;
  /** Bytes of body delivered so far. */
  received = 0;

  readonly #idleLimit: number;

  private constructor(o: RawDownloadOptions, via?: net.Socket) {
    this.#idleLimit = o.idleTimeoutMs ?? 0;
    const { url } = o;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const onread = {
      buffer: Buffer.allocUnsafe(o.readBufferSize ?? 64 * 1024),
      callback: (n: number, buf: Uint8Array) => this.#onRead(buf as Buffer, n),
    };
    if (via) {
      // Through a proxy: TLS over the CONNECT tunnel (https) or the proxy connection itself (http).
      // `onread` cannot be given to a socket that already exists, so data events feed the same
      // parser here (a copy per record: the direct path stays the fast one).
      if (url.protocol === 'https:') {
        const servername = o.tls?.servername ?? (net.isIP(host) ? undefined : host);
        this.#socket = tls.connect({ ...o.tls, socket: via, ...(servername ? { servername } : {}) });
        this.#socket.once('secureConnect', () => this.#sendRequest(o));
      } else {
        this.#socket = via;
        queueMicrotask(() => this.#sendRequest(o));
      }
      const s = this.#socket;
      s.on('data', (chunk: Buffer) => {
        if (!this.#onRead(chunk, chunk.length)) s.pause();
      });
      s.resume();
    } else if (url.protocol === 'https:') {
      const servername = o.tls?.servername ?? (net.isIP(host) ? undefined : host);
      this.#socket = tls.connect({
        ...o.tls,
        host,
        port: Number(url.port || 443),
        ...(servername ? { servername } : {}),
        onread,
      } as tls.ConnectionOptions);
      this.#socket.once('secureConnect', () => this.#sendRequest(o));
    } else {
      this.#socket = net.connect({ host, port: Number(url.port || 80), onread });
      this.#socket.once('connect', () => this.#sendRequest(o));
    }
    this.#socket.on('error', (e) => this.#fail(e));
    this.#socket.on('end', () => this.#onEnd());
    this.#socket.on('close', () => this.#onEnd());
    if (o.headTimeoutMs > 0) {
      this.#timer = setTimeout(() => {
        const e = new Error(`no answer within ${Math.round(o.headTimeoutMs / 1000)} s`) as NodeJS.ErrnoException;
        e.code = 'ETIMEDOUT';
        this.#fail(e);
      }, o.headTimeoutMs);
    }
  }

  /** Connects, sends the GET and resolves once the status line and headers are in. */
  static async open(o: RawDownloadOptions): Promise<RawDownload> {
    let via: net.Socket | undefined;
    if (o.proxy) {
      const host = o.url.hostname.replace(/^\[|\]$/g, '');
      const https = o.url.protocol === 'https:';
      const port = Number(o.url.port || (https ? 443 : 80));
      via = https
        ? await openTunnel(o.proxy, host, port, o.headTimeoutMs)
        : await connectProxy(o.proxy, o.url.origin, o.headTimeoutMs);
    }
    const d = new RawDownload(o, via);
    await new Promise<void>((resolve, reject) => {
      if (d.#error) return reject(d.#error);
      d.#onHead = { resolve, reject };
    });
    return d;
  }

  /** Delivers the body to `consumer`; resolves when the body is complete, rejects when it breaks off. */
  pipe(consumer: ByteConsumer): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.#error) return reject(this.#error);
      this.#consumer = consumer;
      this.#onDone = { resolve, reject };
      const stash = this.#stash;
      this.#stash = undefined;
      if (stash) this.#body(stash);
      if (this.#state === 'done') return this.#finish();
      this.resume();
    });
  }

  /** The whole body (error answers; bounded by `limit`). */
  async readAll(limit = 1 << 20): Promise<Buffer> {
    const parts: Buffer[] = [];
    let size = 0;
    await this.pipe((view) => {
      if (size < limit) parts.push(Buffer.from(view.subarray(0, limit - size)));
      size += view.length;
      return true;
    });
    return Buffer.concat(parts);
  }

  resume(): void {
    if (!this.#paused || this.#state === 'failed') return;
    this.#paused = false;
    this.#lastProgress = Date.now();
    this.#socket.resume();
  }

  destroy(error?: Error): void {
    if (error) this.#fail(error);
    else {
      if (this.#state !== 'done') this.#state = 'failed';
      this.#socket.destroy();
    }
  }

  #sendRequest(o: RawDownloadOptions): void {
    const { url } = o;
    let head = `GET ${requestPath(url, o.proxy)} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\nAccept-Encoding: identity\r\n`;
    for (const [k, v] of Object.entries({ ...o.headers, ...proxyHeaders(url, o.proxy) })) {
      if (/[\r\n]/.test(k) || /[\r\n]/.test(v)) return this.#fail(new Error(`header ${k} holds a line break`));
      head += `${k}: ${v}\r\n`;
    }
    this.#socket.write(`${head}\r\n`);
  }

  #onRead(buf: Buffer, n: number): boolean {
    if (this.#state === 'failed') return false;
    this.#lastProgress = Date.now();
    const view = buf.subarray(0, n);
    if (this.#state === 'head') {
      this.#readHead(view);
      // The consumer is not attached yet: hold the socket until pipe() is called.
      if (this.#state !== 'head') {
        this.#paused = true;
        return false;
      }
      return true;
    }
    if (this.#consumer === undefined) {
      this.#stash = this.#stash ? Buffer.concat([this.#stash, view]) : Buffer.from(view);
      this.#paused = true;
      return false;
    }
    this.#body(view);
    if (this.#state === 'done') {
      this.#finish();
      return false;
    }
    return !this.#paused;
  }

  #readHead(view: Buffer): void {
    this.#head.push(Buffer.from(view));
    this.#headBytes += view.length;
    const all = this.#head.length === 1 ? this.#head[0]! : Buffer.concat(this.#head);
    this.#head = [all];
    const end = all.indexOf('\r\n\r\n');
    if (end === -1) {
      if (this.#headBytes > HEAD_LIMIT) this.#fail(new Error('the server sent more than 64 KB of headers'));
      return;
    }
    const lines = all.subarray(0, end).toString('latin1').split('\r\n');
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!status) return this.#fail(Object.assign(new Error('the answer is not HTTP/1.1'), { code: 'EPROTO' }));
    this.status = Number(status[1]);
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      const k = line.slice(0, colon).trim().toLowerCase();
      const v = line.slice(colon + 1).trim();
      this.headers[k] = this.headers[k] === undefined ? v : `${this.headers[k]}, ${v}`;
    }
    const te = this.headers['transfer-encoding'];
    const cl = this.headers['content-length'];
    if (te !== undefined && /chunked/i.test(te)) this.#framing = 'chunked';
    else if (cl !== undefined && /^\d+$/.test(cl)) {
      this.#framing = 'length';
      this.#remaining = Number(cl);
    }
    this.#head = [];
    clearTimeout(this.#timer);
    this.#state = 'body';
    this.#watchIdle();
    if (this.#framing === 'length' && this.#remaining === 0) this.#state = 'done';
    const rest = all.subarray(end + 4);
    if (rest.length) this.#stash = Buffer.from(rest);
    this.#onHead?.resolve();
    this.#onHead = undefined;
  }

  /** Removes the framing and hands the payload to the consumer. */
  #body(view: Buffer): void {
    const consumer = this.#consumer!;
    const give = (part: Buffer) => {
      if (part.length === 0) return;
      this.received += part.length;
      if (!consumer(part)) this.#paused = true;
    };
    if (this.#framing === 'close') return give(view);
    if (this.#framing === 'length') {
      const n = Math.min(view.length, this.#remaining);
      this.#remaining -= n;
      give(view.subarray(0, n));
      if (this.#remaining === 0) this.#state = 'done';
      return;
    }
    let i = 0;
    while (i < view.length && this.#state === 'body') {
      switch (this.#chunk) {
        case 'size':
        case 'trailer': {
          const nl = view.indexOf(0x0a, i);
          const stop = nl === -1 ? view.length : nl;
          this.#line += view.subarray(i, stop).toString('latin1');
          i = stop;
          if (nl === -1) {
            if (this.#line.length > 4096) return this.#fail(new Error('malformed chunked encoding (line too long)'));
            break;
          }
          i++;
          const line = this.#line.replace(/\r$/, '');
          this.#line = '';
          if (this.#chunk === 'trailer') {
            if (line === '') this.#state = 'done';
            break;
          }
          const size = Number.parseInt(line.split(';')[0]!.trim(), 16);
          if (!Number.isSafeInteger(size) || size < 0 || !/^[0-9a-fA-F]+/.test(line.trim()))
            return this.#fail(new Error('malformed chunked encoding (bad chunk size)'));
          if (size === 0) this.#chunk = 'trailer';
          else {
            this.#remaining = size;
            this.#chunk = 'data';
          }
          break;
        }
        case 'data': {
          const n = Math.min(this.#remaining, view.length - i);
          give(view.subarray(i, i + n));
          i += n;
          this.#remaining -= n;
          if (this.#remaining === 0) {
            this.#chunk = 'crlf';
            this.#crlfLeft = 2;
          }
          break;
        }
        case 'crlf': {
          const b = view[i]!;
          if (b !== (this.#crlfLeft === 2 ? 0x0d : 0x0a))
            return this.#fail(new Error('malformed chunked encoding (no CRLF after a chunk)'));
          i++;
          if (--this.#crlfLeft === 0) this.#chunk = 'size';
          break;
        }
      }
    }
  }

  #onEnd(): void {
    if (this.#state === 'done' || this.#state === 'failed') return;
    if (this.#state === 'body' && this.#framing === 'close') {
      this.#state = 'done';
      if (this.#consumer) this.#finish();
      return;
    }
    this.#fail(
      this.#state === 'head'
        ? Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })
        : new BodyCutError(`${this.received} bytes in`),
    );
  }

  /** Fails the download when the server sends nothing for idleTimeoutMs while we are reading. */
  #watchIdle(): void {
    const limit = this.#idleLimit;
    if (!limit) return;
    this.#lastProgress = Date.now();
    this.#idle = setInterval(
      () => {
        if (this.#state !== 'body') return clearInterval(this.#idle);
        if (this.#paused || this.#consumer === undefined) {
          this.#lastProgress = Date.now();
          return;
        }
        if (Date.now() - this.#lastProgress < limit) return;
        const e = new Error(
          `no bytes for ${Math.round(limit / 1000)} s after ${this.received} bytes of the body`,
        ) as NodeJS.ErrnoException;
        e.code = 'ETIMEDOUT';
        this.#fail(e);
      },
      Math.max(50, Math.min(1000, limit / 4)),
    );
    this.#idle.unref();
  }

  #finish(): void {
    clearInterval(this.#idle);
    this.#socket.destroy();
    this.#onDone?.resolve();
    this.#onDone = undefined;
  }

  #fail(e: Error): void {
    if (this.#state === 'done' || this.#state === 'failed') return;
    this.#state = 'failed';
    this.#error = e;
    clearTimeout(this.#timer);
    clearInterval(this.#idle);
    this.#socket.destroy();
    this.#onHead?.reject(e);
    this.#onDone?.reject(e);
    this.#onHead = this.#onDone = undefined;
  }
}
