import { createWriteStream, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { UnreachableError, VaultopsError } from '../core/errors.js';

/**
 * Plain HTTP(S) GETs of published files (release archives, checksum lists, signatures). Nothing
 * here trusts what it fetched: the caller verifies signatures and checksums. A 404 is its own
 * error (`MissingFileError`) so the caller can try another published name before giving up.
 */

export class MissingFileError extends VaultopsError {
  readonly url: string;
  constructor(url: string, status: number) {
    super(`${url} is not there (HTTP ${status}).`, {
      hint: 'Check the version and the mirror: it must hold the release laid out as the vendor publishes it.',
    });
    this.url = url;
  }
}

export interface GetOptions {
  signal?: AbortSignal | undefined;
  /** Told the bytes received so far and the total when the server says it. */
  onBytes?: ((received: number, total: number | undefined) => void) | undefined;
}

async function get(url: string, options: GetOptions): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: 'follow', signal: options.signal });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new UnreachableError(`Cannot fetch ${url}: ${cause?.code ?? cause?.message ?? (e as Error).message}.`, {
      hint: 'Check the network path to the release site, or give --release-mirror URL of a mirror this host can reach (air-gapped sites: a local copy laid out like the vendor site).',
      cause: e,
    });
  }
  if (res.status === 404 || res.status === 410) {
    await res.body?.cancel();
    throw new MissingFileError(url, res.status);
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new UnreachableError(`Fetching ${url} failed: HTTP ${res.status}.`, {
      hint: 'Try again later, or give --release-mirror URL of a mirror that serves the release.',
    });
  }
  return res;
}

/** A small file (checksum list, signature) into memory; refused above `maxBytes`. */
export async function getBytes(url: string, maxBytes: number, options: GetOptions = {}): Promise<Buffer> {
  const res = await get(url, options);
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of Readable.fromWeb(res.body as import('node:stream/web').ReadableStream)) {
    n += (chunk as Buffer).length;
    if (n > maxBytes) {
      throw new VaultopsError(`${url} is larger than ${maxBytes} bytes: not a checksum list or signature.`, {
        hint: 'Check that the mirror serves the release files unchanged.',
      });
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** A large file to `dest`: written as `dest.part` and renamed when complete, so `dest` is never half a file. */
export async function getFile(url: string, dest: string, options: GetOptions = {}): Promise<{ bytes: number }> {
  const res = await get(url, options);
  const length = Number(res.headers.get('content-length'));
  const total = length > 0 ? length : undefined;
  let received = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      options.onBytes?.(received, total);
      callback(null, chunk);
    },
  });
  mkdirSync(dirname(dest), { recursive: true, mode: 0o700 });
  const part = `${dest}.part`;
  try {
    await pipeline(
      Readable.fromWeb(res.body as import('node:stream/web').ReadableStream),
      counter,
      createWriteStream(part, { mode: 0o600 }),
      { signal: options.signal },
    );
  } catch (e) {
    rmSync(part, { force: true });
    throw new UnreachableError(`Download of ${url} broke off after ${received} bytes.`, {
      hint: 'Run the command again; nothing was staged.',
      cause: e,
    });
  }
  if (total !== undefined && received !== total) {
    rmSync(part, { force: true });
    throw new UnreachableError(`Download of ${url} ended after ${received} of ${total} bytes.`, {
      hint: 'Run the command again; nothing was staged.',
    });
  }
  renameSync(part, dest);
  return { bytes: received };
}
