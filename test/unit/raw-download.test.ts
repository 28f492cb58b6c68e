import { createServer, type Server, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawDownload } from '../../src/vault/raw-download.js';

// HTTP framing faults (a chunk size that is not hex, a connection cut inside a chunk, headers split
// across reads) cannot be produced on demand by a real Vault server, so these tests talk to a plain
// TCP server that writes exactly the bytes each case needs. The normal path (Vault's chunked
// snapshot over TLS) is covered by the backup integration tests on real clusters.

type Script = (socket: Socket, request: string) => Promise<void> | void;
let script: Script = () => undefined;
let server: Server;
let port = 0;
let lastRequest = '';

beforeAll(async () => {
  server = createServer((socket) => {
    let head = '';
    const onData = (c: Buffer) => {
      head += c.toString('latin1');
      if (head.includes('\r\n\r\n')) {
        socket.off('data', onData);
        lastRequest = head;
        void Promise.resolve(script(socket, head)).catch(() => socket.destroy());
      }
    };
    socket.on('data', onData);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const tick = () => new Promise((r) => setImmediate(r));

/** Writes `data` in pieces of the given sizes (cycled), yielding between them so they arrive as separate reads. */
async function dribble(socket: Socket, data: Buffer, sizes: number[]): Promise<void> {
  let k = 0;
  for (let i = 0; i < data.length; k++) {
    const n = sizes[k % sizes.length]!;
    socket.write(data.subarray(i, i + n));
    i += n;
    await tick();
  }
}

function chunked(body: Buffer, pieces: number[]): Buffer {
  const parts: Buffer[] = [];
  let i = 0;
  for (let k = 0; i < body.length; k++) {
    const n = Math.min(pieces[k % pieces.length]!, body.length - i);
    parts.push(
      Buffer.from(`${n.toString(16)}${k % 2 ? ';ext=1' : ''}\r\n`),
      body.subarray(i, i + n),
      Buffer.from('\r\n'),
    );
    i += n;
  }
  parts.push(Buffer.from('0\r\n\r\n'));
  return Buffer.concat(parts);
}

async function fetchAll(
  headers: Record<string, string> = {},
  consumerPause?: (calls: number) => boolean,
): Promise<{ d: RawDownload; body: Buffer }> {
  const d = await RawDownload.open({
    url: new URL(`http://127.0.0.1:${port}/v1/sys/storage/raft/snapshot`),
    headers,
    headTimeoutMs: 5000,
  });
  const parts: Buffer[] = [];
  let calls = 0;
  await d.pipe((view) => {
    parts.push(Buffer.from(view));
    calls++;
    if (consumerPause?.(calls)) {
      setTimeout(() => d.resume(), 5);
      return false;
    }
    return true;
  });
  return { d, body: Buffer.concat(parts) };
}

describe('RawDownload (HTTP/1.1 body into one reused buffer)', () => {
  it('decodes a chunked body whatever the read boundaries, with headers split across reads, and sends the request headers', async () => {
    const body = randomBytes(300_000);
    script = async (s) => {
      const head = Buffer.from(
        'HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nTransfer-Encoding: chunked\r\n\r\n',
      );
      await dribble(s, Buffer.concat([head, chunked(body, [1, 7, 16384, 65536, 3])]), [5, 1, 2, 4093, 70000, 1, 17]);
      s.end();
    };
    const { d, body: got } = await fetchAll({ 'x-vault-token': 'tok-123' });
    expect(d.status).toBe(200);
    expect(d.headers['content-type']).toBe('application/gzip');
    expect(got.equals(body)).toBe(true);
    expect(lastRequest).toMatch(/^GET \/v1\/sys\/storage\/raft\/snapshot HTTP\/1\.1\r\n/);
    expect(lastRequest).toContain('x-vault-token: tok-123\r\n');
  });

  it('stops at content-length, and reads to the end of a connection that has neither framing', async () => {
    const body = randomBytes(100_000);
    script = async (s) => {
      await dribble(
        s,
        Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body]),
        [9000],
      );
    };
    expect((await fetchAll()).body.equals(body)).toBe(true);
    script = async (s) => {
      await dribble(s, Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\n\r\n'), body]), [12345]);
      s.end();
    };
    expect((await fetchAll()).body.equals(body)).toBe(true);
  });

  it('a consumer that pauses gets every byte after resume', async () => {
    const body = randomBytes(400_000);
    script = async (s) => {
      await dribble(
        s,
        Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'), chunked(body, [50_000])]),
        [20_000],
      );
      s.end();
    };
    const { body: got } = await fetchAll({}, (calls) => calls % 3 === 0);
    expect(got.equals(body)).toBe(true);
  });

  it('a connection cut inside the body is an error, not a short success', async () => {
    script = async (s) => {
      s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4000\r\n');
      s.write(randomBytes(1000));
      await tick();
      s.destroy();
    };
    const err = await fetchAll().then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    expect(err?.code).toBe('ERR_STREAM_PREMATURE_CLOSE');
    expect(err?.message).toMatch(/closed before the response ended \(1000 bytes in\)/);

    script = async (s) => {
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n');
      s.write(randomBytes(10));
      await tick();
      s.end();
    };
    expect(
      (
        await fetchAll().then(
          () => undefined,
          (e: Error & { code?: string }) => e,
        )
      )?.code,
    ).toBe('ERR_STREAM_PREMATURE_CLOSE');
  });

  it('refuses broken chunk framing and answers that are not HTTP', async () => {
    script = (s) => {
      s.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n');
    };
    await expect(fetchAll()).rejects.toThrow(/malformed chunked encoding \(bad chunk size\)/);
    script = (s) => {
      s.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXY0\r\n\r\n');
    };
    await expect(fetchAll()).rejects.toThrow(/no CRLF after a chunk/);
    script = (s) => {
      s.end('SSH-2.0-OpenSSH_9.2\r\n\r\n');
    };
    await expect(fetchAll()).rejects.toThrow(/not HTTP\/1\.1/);
  });

  it('hands an error answer over whole (status, headers, body)', async () => {
    const msg = JSON.stringify({ errors: ['permission denied'] });
    script = (s) => {
      s.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: ${msg.length}\r\n\r\n${msg}`);
    };
    const d = await RawDownload.open({ url: new URL(`http://127.0.0.1:${port}/x`), headers: {}, headTimeoutMs: 5000 });
    expect(d.status).toBe(403);
    expect((await d.readAll()).toString()).toBe(msg);
  });

  it('gives up on a server that accepts but never answers, with ETIMEDOUT', async () => {
    script = () => undefined;
    const err = await RawDownload.open({
      url: new URL(`http://127.0.0.1:${port}/x`),
      headers: {},
      headTimeoutMs: 200,
    }).then(
      () => undefined,
      (e: NodeJS.ErrnoException) => e,
    );
    expect(err?.code).toBe('ETIMEDOUT');
  });
});
