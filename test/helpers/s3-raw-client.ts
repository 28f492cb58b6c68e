import { createHash, createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import type { IncomingMessage } from 'node:http';
import { VaultopsError } from '../../src/core/errors.js';
import { redactor } from '../../src/core/redact.js';
import { warnPlainHttp } from '../../src/vault/tls.js';
import { agentFor, ProxyError, proxyFor, proxyHeaders, type ProxyRoute } from '../../src/vault/proxy.js';

// require, not import: see src/vault/transport.ts (an ESM import of node:http loads all of undici).
const require = createRequire(import.meta.url);
const http = require('node:http') as typeof import('node:http');
const https = require('node:https') as typeof import('node:https');

/**
 * The few S3 calls a backup store needs, signed with AWS Signature Version 4 (header form, path-style
 * addressing: `<endpoint>/<bucket>/<key>`), on node:http. Payloads are hashed and signed, so the
 * server checks every part it stores. Written from the SigV4 specification; works with AWS S3 and
 * S3-compatible servers (tested against versitygw).
 */
export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
}

export interface S3ClientOptions {
  endpoint: string;
  bucket: string;
  region: string;
  credentials: () => Promise<S3Credentials>;
  /** PEM text of a CA for https endpoints signed by a private CA. */
  ca?: string | undefined;
  timeoutMs?: number | undefined;
}

export interface S3Response {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

/** The largest buffered S3 answer (listings, errors, manifests); snapshots stream instead. */
export const MAX_S3_ANSWER = 16 << 20;

const EMPTY_SHA256 = createHash('sha256').update('').digest('hex');

/** RFC 3986 encoding as SigV4 wants it (everything but unreserved characters; '/' kept in paths). */
function encode(s: string, keepSlash = false): string {
  const e = encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return keepSlash ? e.replace(/%2F/g, '/') : e;
}

export class S3Client {
  readonly #o: S3ClientOptions;
  readonly #base: URL;
  readonly #agent: import('node:http').Agent;
  /** HTTPS_PROXY/HTTP_PROXY and NO_PROXY, read once for the endpoint. */
  readonly #route: ProxyRoute | undefined;

  constructor(o: S3ClientOptions) {
    this.#o = o;
    this.#base = new URL(o.endpoint);
    if (this.#base.protocol !== 'http:' && this.#base.protocol !== 'https:')
      throw new VaultopsError(`S3 endpoint ${o.endpoint} is not http(s)://.`);
    this.#route = proxyFor(this.#base);
    this.#agent = agentFor(this.#base, this.#route, {
      keepAlive: true,
      maxSockets: 4,
      ...(this.#base.protocol === 'https:' && o.ca ? { ca: o.ca } : {}),
    });
  }

  close(): void {
    this.#agent.destroy();
  }

  /**
   * A request with a buffered answer. `key` undefined addresses the bucket itself. The answer is
   * cut off past `limit` bytes (a listing page of 1000 keys is ~300 KB): a broken or hostile
   * endpoint cannot make the tool buffer without end.
   */
  async request(
    method: string,
    key: string | undefined,
    query: Record<string, string> = {},
    body?: Buffer,
    headers: Record<string, string> = {},
    limit = MAX_S3_ANSWER,
  ): Promise<S3Response> {
    const res = await this.#send(method, key, query, body, headers);
    return {
      status: res.statusCode ?? 0,
      headers: res.headers,
      body: await this.#readCapped(res, `${method} ${key ?? '(bucket)'}`, limit),
    };
  }

  async #readCapped(res: IncomingMessage, what: string, limit: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const c of res) {
        size += (c as Buffer).length;
        if (size > limit) {
          res.destroy();
          throw new VaultopsError(
            `S3 ${what} at ${this.#base.origin} answered with more than ${limit} bytes; that is not an answer this store expects, so it was cut off.`,
            {
              hint: "Check the store's endpoint (an S3 service, not a proxy or web server) and what the object holds.",
            },
          );
        }
        chunks.push(c as Buffer);
      }
    } catch (e) {
      if (e instanceof VaultopsError) throw e;
      throw new VaultopsError(
        `S3 ${what} at ${this.#base.origin} broke off: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}.`,
        { exitCode: 3, cause: e },
      );
    }
    return Buffer.concat(chunks);
  }

  /** A GET whose body streams (snapshot download). Non-2xx answers are thrown as errors. */
  async getStream(key: string): Promise<IncomingMessage> {
    const res = await this.#send('GET', key, {}, undefined, {});
    if ((res.statusCode ?? 0) >= 300) {
      throw s3Error('GET', key, {
        status: res.statusCode ?? 0,
        headers: res.headers,
        body: await this.#readCapped(res, `GET ${key}`, 1 << 20),
      });
    }
    return res;
  }

  /** Throws a clear error unless the answer is 2xx. */
  async ok(
    method: string,
    key: string | undefined,
    query: Record<string, string> = {},
    body?: Buffer,
    headers: Record<string, string> = {},
    limit = MAX_S3_ANSWER,
  ): Promise<S3Response> {
    const r = await this.request(method, key, query, body, headers, limit);
    if (r.status < 200 || r.status >= 300) throw s3Error(method, key, r);
    return r;
  }

  async #send(
    method: string,
    key: string | undefined,
    query: Record<string, string>,
    body: Buffer | undefined,
    extra: Record<string, string>,
  ): Promise<IncomingMessage> {
    warnPlainHttp(this.#base, 'S3 endpoint');
    const creds = await this.#o.credentials();
    redactor.add(creds.secretAccessKey, creds.sessionToken);
    const prefix = this.#base.pathname.replace(/\/+$/, '');
    const path = `${prefix}/${encode(this.#o.bucket)}${key === undefined ? '' : `/${encode(key, true)}`}`;
    const qs = Object.keys(query)
      .sort()
      .map((k) => `${encode(k)}=${encode(query[k]!)}`)
      .join('&');
    const now = new Date();
    const amzDate = now
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d{3}/, '');
    const day = amzDate.slice(0, 8);
    const payloadHash = body ? createHash('sha256').update(body).digest('hex') : EMPTY_SHA256;
    const headers: Record<string, string> = {
      host: this.#base.host,
      'x-amz-content-sha256': payloadHash,
      'x-amz-date': amzDate,
      ...(creds.sessionToken ? { 'x-amz-security-token': creds.sessionToken } : {}),
      ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [k.toLowerCase(), v])),
    };
    // Always a length on writes: without one Node sends POST/PUT chunked, which SigV4 signs differently.
    if (body || method === 'POST' || method === 'PUT') headers['content-length'] = String(body?.length ?? 0);
    const names = Object.keys(headers).sort();
    const canonical = [
      method,
      path,
      qs,
      ...names.map((n) => `${n}:${headers[n]!.trim()}`),
      '',
      names.join(';'),
      payloadHash,
    ].join('\n');
    const scope = `${day}/${this.#o.region}/s3/aws4_request`;
    const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonical).digest('hex')].join(
      '\n',
    );
    const hmac = (k: Buffer | string, d: string) => createHmac('sha256', k).update(d).digest();
    const signingKey = hmac(
      hmac(hmac(hmac(`AWS4${creds.secretAccessKey}`, day), this.#o.region), 's3'),
      'aws4_request',
    );
    const signature = createHmac('sha256', signingKey).update(toSign).digest('hex');
    headers['authorization'] =
      `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
    const lib = this.#base.protocol === 'https:' ? https : http;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = lib.request(
        {
          protocol: this.#base.protocol,
          hostname: this.#base.hostname,
          port: this.#base.port || undefined,
          method,
          // A forward proxy (http endpoint) takes the absolute URL; the signature covers the path only.
          path: `${this.#route && this.#base.protocol === 'http:' ? this.#base.origin : ''}${qs ? `${path}?${wireQuery(query)}` : path}`,
          headers: { ...headers, ...proxyHeaders(this.#base, this.#route) },
          agent: this.#agent,
        },
        (res) => resolve(res),
      );
      req.setTimeout(this.#o.timeoutMs ?? 60_000, () =>
        req.destroy(
          Object.assign(new Error(`no answer within ${Math.round((this.#o.timeoutMs ?? 60_000) / 1000)} s`), {
            code: 'ETIMEDOUT',
          }),
        ),
      );
      req.on('error', (e: NodeJS.ErrnoException) =>
        reject(
          // A proxy failure names the proxy, not the endpoint.
          e instanceof ProxyError
            ? e
            : new VaultopsError(`Cannot reach the S3 endpoint ${this.#base.origin}: ${e.code ?? e.message}.`, {
                hint: "Check the store's endpoint and that the S3 service is up.",
                exitCode: 3,
                cause: e,
              }),
        ),
      );
      req.end(body);
    });
  }
}

/** The query as sent: a flag without a value goes as `?uploads`, as AWS clients send it (its canonical form is still `uploads=`). */
function wireQuery(query: Record<string, string>): string {
  return Object.keys(query)
    .sort()
    .map((k) => (query[k] === '' ? encode(k) : `${encode(k)}=${encode(query[k]!)}`))
    .join('&');
}

/** The S3 error code and message from an XML error body, when there is one. */
export function s3Error(method: string, key: string | undefined, r: S3Response): VaultopsError {
  const text = r.body.toString('utf8');
  const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
  const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1];
  const what = `${method} ${key ?? '(bucket)'}`;
  const hint =
    code === 'NoSuchBucket'
      ? 'Create the bucket first (backups never create buckets).'
      : code === 'SignatureDoesNotMatch' || code === 'InvalidAccessKeyId' || r.status === 403
        ? "Check the store's access_key_id / secret_access_key references and the bucket policy."
        : code === 'EntityTooLarge' || code === 'QuotaExceeded' || /space|quota|full/i.test(message ?? '')
          ? 'The S3 service is out of space or quota.'
          : "See the S3 service's logs.";
  return new VaultopsError(
    `S3 ${what} failed: HTTP ${r.status}${code ? ` ${code}` : ''}${message ? `: ${message}` : ''}.`,
    { hint },
  );
}

/** Text of the first <tag>...</tag> in `xml`. */
export function xmlText(xml: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml);
  return m ? unescapeXml(m[1]!) : undefined;
}

/** Every <tag>...</tag> block in `xml`. */
export function xmlBlocks(xml: string, tag: string): string[] {
  return [...xml.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))].map((m) => m[1]!);
}

/**
 * Resolves the five named entities and numeric character references. A reference to no Unicode
 * character (`&#99999999;`, a surrogate, NUL) is an error in XML; it becomes a clear VaultopsError,
 * never a RangeError from String.fromCodePoint.
 */
export function unescapeXml(s: string): string {
  return s.replace(/&(lt|gt|quot|apos|amp|#\d+|#x[0-9a-fA-F]+);/g, (ref, e: string) => {
    if (e === 'lt') return '<';
    if (e === 'gt') return '>';
    if (e === 'quot') return '"';
    if (e === 'apos') return "'";
    if (e === 'amp') return '&';
    const cp = e.startsWith('#x') ? Number.parseInt(e.slice(2), 16) : Number(e.slice(1));
    const valid =
      cp === 0x9 ||
      cp === 0xa ||
      cp === 0xd ||
      (cp >= 0x20 && cp <= 0xd7ff) ||
      (cp >= 0xe000 && cp <= 0xfffd) ||
      (cp >= 0x10000 && cp <= 0x10ffff);
    if (!valid)
      throw new VaultopsError(
        `The S3 service answered with XML holding ${ref.length > 24 ? `${ref.slice(0, 24)}...` : ref}, which is no character: not a valid S3 answer.`,
        { hint: "Check that the store's endpoint is an S3 service." },
      );
    return String.fromCodePoint(cp);
  });
}
