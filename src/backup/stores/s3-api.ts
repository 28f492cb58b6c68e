import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { VaultopsError } from '../../core/errors.js';
import { redactor } from '../../core/redact.js';
import { warnPlainHttp } from '../../vault/tls.js';
import { agentFor, ProxyError, proxyFor, proxyHeaders, type ProxyRoute } from '../../vault/proxy.js';
import type { S3Checksum, S3Settings } from './s3-store.js';

/**
 * The S3 calls a backup store makes, on the AWS SDK (@aws-sdk/client-s3): its credential chain, its
 * retries with backoff, virtual-hosted or path-style addressing, server-side encryption and flexible
 * checksums. Loaded by dynamic import only when an S3 store is used (the SDK is ~20 MB of modules).
 * Every SDK failure becomes a VaultopsError that names the call, the HTTP status and the S3 code.
 */
export interface StoredObject {
  key: string;
  size: number;
  modified: Date;
}

export interface UploadedPart {
  etag: string;
  /** The part's checksum (base64), as computed by the store over the bytes it copied. */
  checksum?: string | undefined;
}

type HandlerRequest = Parameters<NodeHttpHandler['handle']>[0];
type HandlerOptions = Parameters<NodeHttpHandler['handle']>[1];

/**
 * NodeHttpHandler with the tool's proxy rules (src/vault/proxy.ts): an https endpoint through
 * HTTPS_PROXY goes through a CONNECT tunnel (the agent does it); an http endpoint through HTTP_PROXY
 * is sent to the proxy in absolute form. The request is already signed here, so changing the target
 * line does not touch the signature (the Host header it covers is unchanged). NO_PROXY is read once
 * per endpoint origin, when the store first talks to it.
 */
class ProxyAwareHandler {
  readonly metadata = { handlerProtocol: 'http/1.1' };
  readonly #handlers = new Map<string, { handler: NodeHttpHandler; route: ProxyRoute | undefined }>();

  constructor(private readonly o: { ca?: string | undefined; timeoutMs: number }) {}

  #for(url: URL): { handler: NodeHttpHandler; route: ProxyRoute | undefined } {
    let h = this.#handlers.get(url.origin);
    if (!h) {
      const route = proxyFor(url);
      const agent = agentFor(url, route, {
        keepAlive: true,
        maxSockets: 4,
        ...(url.protocol === 'https:' && this.o.ca ? { ca: this.o.ca } : {}),
      });
      const handler = new NodeHttpHandler({
        ...(url.protocol === 'https:' ? { httpsAgent: agent } : { httpAgent: agent }),
        connectionTimeout: 30_000,
        // No answer within it fails a request; a download that stalls that long fails too.
        requestTimeout: this.o.timeoutMs,
        socketTimeout: this.o.timeoutMs,
        throwOnRequestTimeout: true,
      });
      h = { handler, route };
      this.#handlers.set(url.origin, h);
    }
    return h;
  }

  handle(request: HandlerRequest, options?: HandlerOptions): ReturnType<NodeHttpHandler['handle']> {
    const url = new URL(`${request.protocol}//${request.hostname}${request.port ? `:${request.port}` : ''}`);
    const { handler, route } = this.#for(url);
    if (!route || url.protocol !== 'http:') return handler.handle(request, options);
    const forward = Object.assign(Object.create(Object.getPrototypeOf(request) as object) as HandlerRequest, request, {
      path: `${url.origin}${request.path}`,
      headers: { ...request.headers, ...proxyHeaders(url, route) },
    });
    return handler.handle(forward, options);
  }

  updateHttpClientConfig(): void {}

  httpHandlerConfigs(): Record<string, never> {
    return {};
  }

  destroy(): void {
    for (const { handler } of this.#handlers.values()) handler.destroy();
    this.#handlers.clear();
  }
}

/** The request member that carries a precomputed part checksum. */
const CHECKSUM_MEMBER = { CRC32: 'ChecksumCRC32', SHA256: 'ChecksumSHA256' } as const;

export class S3Api {
  readonly #client: S3Client;
  readonly #handler: ProxyAwareHandler;
  readonly #s: S3Settings;
  /** Where the store is, for messages: the endpoint, or the bucket on AWS. */
  readonly #where: string;

  constructor(s: S3Settings) {
    this.#s = s;
    this.#where = s.endpoint ?? `s3://${s.bucket} (AWS, ${s.region})`;
    if (s.endpoint) warnPlainHttp(new URL(s.endpoint), 'S3 endpoint');
    this.#handler = new ProxyAwareHandler({ ca: s.ca, timeoutMs: s.timeoutMs ?? 60_000 });
    const staticKeys = s.credentials;
    const chain = staticKeys ? undefined : defaultProvider(s.profile ? { profile: s.profile } : {});
    this.#client = new S3Client({
      region: s.region,
      ...(s.endpoint ? { endpoint: s.endpoint } : { followRegionRedirects: true }),
      forcePathStyle: s.forcePathStyle,
      ...(s.profile ? { profile: s.profile } : {}),
      // The SDK refreshes what a provider returns once it carries an expiration (web identity, ECS, IMDS).
      credentials: async () => {
        const c = staticKeys ? await staticKeys() : await chain!();
        redactor.add(c.secretAccessKey, c.sessionToken);
        return c;
      },
      requestHandler: this.#handler,
      maxAttempts: s.maxAttempts ?? 3,
      retryMode: s.retryMode ?? 'standard',
      requestChecksumCalculation: s.checksum === 'none' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
      responseChecksumValidation: s.checksum === 'none' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
    });
  }

  close(): void {
    this.#client.destroy();
    this.#handler.destroy();
  }

  get checksum(): S3Checksum {
    return this.#s.checksum;
  }

  #sse(): { ServerSideEncryption?: 'AES256' | 'aws:kms'; SSEKMSKeyId?: string } {
    if (!this.#s.sse) return {};
    return {
      ServerSideEncryption: this.#s.sse,
      ...(this.#s.sse === 'aws:kms' && this.#s.kmsKeyId ? { SSEKMSKeyId: this.#s.kmsKeyId } : {}),
    };
  }

  async #call<T>(what: string, key: string | undefined, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (e) {
      throw s3Failure(what, key, e, this.#where);
    }
  }

  /** Whether the object exists (HEAD: 404 is no). */
  async exists(key: string): Promise<boolean> {
    try {
      await this.#client.send(new HeadObjectCommand({ Bucket: this.#s.bucket, Key: key }));
      return true;
    } catch (e) {
      if (statusOf(e) === 404) return false;
      throw s3Failure('HEAD', key, e, this.#where);
    }
  }

  async createUpload(key: string): Promise<string> {
    const r = await this.#call('POST (create multipart upload)', key, () =>
      this.#client.send(
        new CreateMultipartUploadCommand({
          Bucket: this.#s.bucket,
          Key: key,
          ContentType: 'application/octet-stream',
          ...this.#sse(),
          ...(this.#s.checksum === 'none' ? {} : { ChecksumAlgorithm: this.#s.checksum }),
        }),
      ),
    );
    if (!r.UploadId) throw new VaultopsError(`S3 did not start a multipart upload for ${key}.`);
    return r.UploadId;
  }

  /**
   * Sends one part. `checksum` is the part's checksum computed by the caller while it copied the
   * bytes: the SDK sends it instead of computing its own, so the server refuses the part (BadDigest)
   * if the bytes it received are not the bytes the caller hashed. The SDK retries a failed attempt
   * with the same buffer; the promise settles only after the last attempt.
   */
  async uploadPart(key: string, uploadId: string, n: number, body: Buffer, checksum?: string): Promise<UploadedPart> {
    const member = this.#s.checksum === 'none' ? undefined : CHECKSUM_MEMBER[this.#s.checksum];
    const r = await this.#call(`PUT (part ${n})`, key, () =>
      this.#client.send(
        new UploadPartCommand({
          Bucket: this.#s.bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber: n,
          Body: body,
          ContentLength: body.length,
          ...(member && checksum ? { [member]: checksum } : {}),
        }),
      ),
    );
    if (!r.ETag) throw new VaultopsError(`S3 stored part ${n} of ${key} without an ETag.`);
    const echoed = member ? r[member] : undefined;
    if (member && checksum && echoed !== undefined && echoed !== checksum)
      throw new VaultopsError(
        `S3 stored part ${n} of ${key} with checksum ${echoed}; the bytes sent had ${checksum}. The part is not what was verified.`,
      );
    return { etag: r.ETag, checksum };
  }

  async completeUpload(key: string, uploadId: string, parts: UploadedPart[]): Promise<void> {
    const member = this.#s.checksum === 'none' ? undefined : CHECKSUM_MEMBER[this.#s.checksum];
    const Parts: CompletedPart[] = parts.map((p, i) => ({
      PartNumber: i + 1,
      ETag: p.etag,
      ...(member && p.checksum ? { [member]: p.checksum } : {}),
    }));
    // The SDK turns a 200 answer that carries an <Error> into an error, as S3 documents for this call.
    await this.#call('POST (complete multipart upload)', key, () =>
      this.#client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.#s.bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts },
        }),
      ),
    );
  }

  async abortUpload(key: string, uploadId: string): Promise<void> {
    await this.#call('DELETE (abort multipart upload)', key, () =>
      this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.#s.bucket, Key: key, UploadId: uploadId })),
    );
  }

  async putText(key: string, text: string, contentType: string): Promise<void> {
    await this.#call('PUT', key, () =>
      this.#client.send(
        new PutObjectCommand({
          Bucket: this.#s.bucket,
          Key: key,
          Body: Buffer.from(text),
          ContentType: contentType,
          ...this.#sse(),
        }),
      ),
    );
  }

  /** Every object under `prefix` (all pages). */
  async list(prefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    let token: string | undefined;
    do {
      const r = await this.#call('GET (list)', undefined, () =>
        this.#client.send(
          new ListObjectsV2Command({
            Bucket: this.#s.bucket,
            Prefix: prefix,
            ...(token ? { ContinuationToken: token } : {}),
          }),
        ),
      );
      for (const c of r.Contents ?? [])
        if (c.Key !== undefined) out.push({ key: c.Key, size: c.Size ?? 0, modified: c.LastModified ?? new Date(0) });
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  async getStream(key: string): Promise<Readable> {
    const r = await this.#call('GET', key, () =>
      this.#client.send(new GetObjectCommand({ Bucket: this.#s.bucket, Key: key })),
    );
    if (!r.Body) throw new VaultopsError(`S3 GET ${key} answered without a body.`);
    return r.Body as Readable;
  }

  /**
   * A small object as text; refused past `limit` bytes (manifests and sidecars are kilobytes: a
   * larger object is not one this store wrote, and is not read into memory).
   */
  async getText(key: string, limit: number): Promise<string> {
    const body = await this.getStream(key);
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const c of body) {
        size += (c as Buffer).length;
        if (size > limit) {
          body.destroy();
          throw new VaultopsError(
            `S3 GET ${key} at ${this.#where} answered with more than ${limit} bytes; that is not an answer this store expects, so it was cut off.`,
            {
              hint: "Check the store's endpoint (an S3 service, not a proxy or web server) and what the object holds.",
            },
          );
        }
        chunks.push(c as Buffer);
      }
    } catch (e) {
      if (e instanceof VaultopsError) throw e;
      throw s3Failure('GET', key, e, this.#where);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  /** Deletes an object; a missing one is no error (S3 answers 204 either way). */
  async remove(key: string): Promise<void> {
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#s.bucket, Key: key }));
    } catch (e) {
      if (statusOf(e) === 404) return;
      throw s3Failure('DELETE', key, e, this.#where);
    }
  }
}

function statusOf(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

/** A clear error from an SDK failure: the service's answer, or the connection that failed. */
export function s3Failure(what: string, key: string | undefined, e: unknown, where: string): VaultopsError {
  if (e instanceof VaultopsError) return e;
  const status = statusOf(e);
  const err = e as { name?: string; Code?: string; code?: string; message?: string; $response?: unknown };
  const target = `${what.split(' ')[0]} ${key ?? '(bucket)'}${what.includes(' ') ? ` ${what.slice(what.indexOf(' ') + 1)}` : ''}`;
  // A service answer has a status; a failed connection has none (or the SDK's stand-in 0).
  if (status !== undefined && status > 0) {
    const code = err.Code ?? (err.name && err.name !== 'Error' ? err.name : undefined);
    const message = err.message && err.message !== code && err.message !== 'UnknownError' ? err.message : undefined;
    const hint =
      code === 'NoSuchBucket'
        ? 'Create the bucket first (backups never create buckets).'
        : code === 'SignatureDoesNotMatch' || code === 'InvalidAccessKeyId' || status === 403
          ? "Check the store's access_key_id / secret_access_key references (or the profile / role the AWS credential chain found) and the bucket policy."
          : code === 'EntityTooLarge' || code === 'QuotaExceeded' || /space|quota|full/i.test(message ?? '')
            ? 'The S3 service is out of space or quota.'
            : code === 'BadDigest' || code === 'InvalidDigest' || /checksum/i.test(code ?? '')
              ? 'The bytes the service received differ from the bytes sent; if the service does not support checksums, set `checksum: none` on the store.'
              : "See the S3 service's logs.";
    return new VaultopsError(
      `S3 ${target} failed: HTTP ${status}${code ? ` ${code}` : ''}${message ? `: ${message.replace(/\.$/, '')}` : ''}.`,
      { hint, cause: e },
    );
  }
  // A proxy failure names the proxy, not the endpoint.
  if (e instanceof ProxyError) return e;
  const cause = (e as { cause?: unknown }).cause;
  if (cause instanceof ProxyError) return cause;
  return new VaultopsError(`Cannot reach the S3 endpoint ${where}: ${err.code ?? err.name ?? err.message}.`, {
    hint: "Check the store's endpoint and that the S3 service is up.",
    exitCode: 3,
    cause: e,
  });
}
