import { createRequire } from 'node:module';
import tls from 'node:tls';
import type { Agent, IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { AgentOptions } from 'node:https';
import type { Readable } from 'node:stream';
import { UnreachableError, VaultopsError } from '../core/errors.js';
import { loadTls, warnPlainHttp, type TlsSettings, type LoadedTls } from './tls.js';
import { RawDownload } from './raw-download.js';
import { sleep } from '../core/sleep.js';
import { agentFor, proxyFor, proxyHeaders, requestPath, type ProxyRoute } from './proxy.js';

// Loaded with require, not import: an ESM import of node:http copies every export, and that touches
// its lazy WebSocket/EventSource getters, which load all of undici (~10-20 ms and a few MB on every
// start, measured with --cpu-prof on `vaultops backup`).
const require = createRequire(import.meta.url);
const http = require('node:http') as typeof import('node:http');
const https = require('node:https') as typeof import('node:https');

export interface TransportOptions {
  tls?: TlsSettings | undefined;
  /** Per-request timeout (no bytes for this long). VAULT_CLIENT_TIMEOUT; default 60 s like the CLI. */
  timeoutMs?: number | undefined;
  /** Retries on connection errors only (never on an HTTP status). VAULT_MAX_RETRIES; default 2. */
  retries?: number | undefined;
}

export interface RequestSpec {
  method: string;
  url: URL;
  headers?: Record<string, string> | undefined;
  body?: Buffer | string | Readable | undefined;
  timeoutMs?: number | undefined;
}

export interface BufferedResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/**
 * A connection error where we know the request never reached the server, so sending it again
 * cannot apply it twice (an unseal share, a rekey update). A reset after sending is not retried
 * unless the method is a read.
 */
const NOT_SENT = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'EADDRNOTAVAIL']);
const RETRYABLE_READ = new Set([...NOT_SENT, 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'UND_ERR_SOCKET']);
/** The largest answer `request` buffers: Vault's JSON answers are kilobytes, a huge policy list a few MB. */
export const MAX_JSON_BODY = 16 << 20;

const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
]);

/**
 * Raw HTTP(S) to one Vault node. Everything goes through here (node-vault's commands included),
 * so TLS, timeouts, retries and error wording are the same for every call, and binary bodies
 * (Raft snapshots) stream without being buffered or decoded.
 */
export class Transport {
  readonly #tls: LoadedTls;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #agents = new Map<string, Agent>();

  constructor(options: TransportOptions = {}) {
    this.#tls = loadTls(options.tls);
    this.#timeoutMs = options.timeoutMs ?? 60_000;
    this.#retries = options.retries ?? 2;
  }

  /**
   * Sends a request and buffers the answer (JSON endpoints). The body must keep coming (no gap of
   * the request timeout, see #once) and stay under MAX_JSON_BODY: a stalled or endless answer
   * fails the call instead of hanging the run or filling memory.
   */
  async request(spec: RequestSpec): Promise<BufferedResponse> {
    const res = await this.stream(spec);
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res) {
        size += (chunk as Buffer).length;
        if (size > MAX_JSON_BODY) {
          res.destroy();
          throw new UnreachableError(
            `${spec.url.origin} answered ${spec.method} ${spec.url.pathname} with more than ${MAX_JSON_BODY >> 20} MiB; no Vault answer the tool reads is that large, so it was cut off.`,
            {
              hint: 'Check that api_addr points at a Vault node and not at a proxy or another service.',
            },
          );
        }
        chunks.push(chunk as Buffer);
      }
    } catch (e) {
      throw await this.#describe(spec.url, e);
    }
    return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) };
  }

  /** Sends a request and hands back the response stream unread (snapshot download). */
  async stream(spec: RequestSpec): Promise<IncomingMessage> {
    const isRead = spec.method === 'GET' || spec.method === 'HEAD' || spec.method === 'LIST';
    const isStreamBody = spec.body !== undefined && typeof spec.body !== 'string' && !Buffer.isBuffer(spec.body);
    return this.#withRetries(spec.url, isStreamBody ? undefined : isRead ? RETRYABLE_READ : NOT_SENT, () =>
      this.#once(spec),
    );
  }

  /**
   * A GET whose body is handed out as views of one reused buffer (see RawDownload): for snapshot
   * downloads, where node:http's per-record buffers cost CPU and memory. Same TLS, timeout,
   * retries (until the headers are in) and error wording as every other request.
   */
  download(spec: {
    url: URL;
    headers?: Record<string, string> | undefined;
    timeoutMs?: number | undefined;
  }): Promise<RawDownload> {
    const t = spec.url.protocol === 'https:' ? this.#tlsOptions() : undefined;
    if (spec.url.protocol !== 'http:' && spec.url.protocol !== 'https:') {
      return Promise.reject(new VaultopsError(`Unsupported address ${spec.url.origin}: use http:// or https://.`));
    }
    warnPlainHttp(spec.url);
    return this.#withRetries(spec.url, RETRYABLE_READ, () =>
      // The same bound for the headers and for every gap in the body: a stalled stream fails after it.
      RawDownload.open({
        url: spec.url,
        headers: spec.headers ?? {},
        tls: t,
        headTimeoutMs: spec.timeoutMs ?? this.#timeoutMs,
        idleTimeoutMs: spec.timeoutMs ?? this.#timeoutMs,
        proxy: proxyFor(spec.url),
      }),
    );
  }

  /** Runs `once` again on the connection errors in `retryable` (none: no retry), with backoff. */
  async #withRetries<T>(url: URL, retryable: Set<string> | undefined, once: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await once();
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? '';
        if (!retryable?.has(code) || attempt >= this.#retries) throw await this.#describe(url, e);
        // Backoff with jitter: 250 ms, 500 ms, 1 s ... capped at 4 s.
        const delay = Math.min(4000, 250 * 2 ** attempt) * (0.75 + Math.random() * 0.5);
        await sleep(delay);
      }
    }
  }

  close(): void {
    for (const agent of this.#agents.values()) agent.destroy();
    this.#agents.clear();
  }

  /** One agent per scheme and route: direct, or through the proxy HTTPS_PROXY/HTTP_PROXY name for this host. */
  #agent(url: URL, route: ProxyRoute | undefined): Agent {
    const key = `${url.protocol} ${route?.proxy.href ?? 'direct'}`;
    let agent = this.#agents.get(key);
    if (!agent) {
      agent = agentFor(url, route, {
        keepAlive: true,
        maxSockets: 8,
        ...(url.protocol === 'https:' ? this.#tlsOptions() : {}),
      });
      this.#agents.set(key, agent);
    }
    return agent;
  }

  #tlsOptions(): AgentOptions {
    const t = this.#tls;
    return {
      rejectUnauthorized: t.rejectUnauthorized,
      ...(t.ca ? { ca: t.ca } : {}),
      ...(t.cert ? { cert: t.cert } : {}),
      ...(t.key ? { key: t.key } : {}),
      ...(t.servername ? { servername: t.servername } : {}),
    };
  }

  #once(spec: RequestSpec): Promise<IncomingMessage> {
    const { url } = spec;
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      return Promise.reject(new VaultopsError(`Unsupported address ${url.origin}: use http:// or https://.`));
    }
    const lib = url.protocol === 'https:' ? https : http;
    const route = proxyFor(url);
    const headers: Record<string, string> = { ...spec.headers, ...proxyHeaders(url, route) };
    if (typeof spec.body === 'string' || Buffer.isBuffer(spec.body)) {
      headers['content-length'] = String(Buffer.byteLength(spec.body));
    }
    const timeoutMs = spec.timeoutMs ?? this.#timeoutMs;
    warnPlainHttp(url);
    return new Promise((resolve, reject) => {
      const req = lib.request(
        url,
        {
          method: spec.method === 'LIST' ? 'LIST' : spec.method,
          headers,
          agent: this.#agent(url, route),
          path: requestPath(url, route),
        },
        (res) => {
          // The headers are in: the request's own timeout must not fire any more (it would cut the body with a vaguer error).
          req.removeAllListeners('timeout');
          // After the headers the same bound holds for every gap in the body (0 = none: snapshot uploads).
          res.setTimeout(timeoutMs, () => {
            const err = new Error(
              `no bytes for ${Math.round(timeoutMs / 1000)} s after the headers`,
            ) as NodeJS.ErrnoException;
            err.code = 'ETIMEDOUT';
            res.destroy(err);
          });
          resolve(res);
        },
      );
      req.setTimeout(timeoutMs, () => {
        const err = new Error(`no answer within ${Math.round(timeoutMs / 1000)} s`) as NodeJS.ErrnoException;
        err.code = 'ETIMEDOUT';
        req.destroy(err);
      });
      req.on('error', reject);
      const body = spec.body;
      if (body === undefined) req.end();
      else if (typeof body === 'string' || Buffer.isBuffer(body)) req.end(body);
      else {
        body.on('error', (e) => req.destroy(e));
        body.pipe(req);
      }
    });
  }

  /** Turns a socket/TLS error into a one-paragraph error that says what to do. Never includes bodies. */
  async #describe(url: URL, e: unknown): Promise<Error> {
    if (e instanceof VaultopsError) return e;
    const err = e as NodeJS.ErrnoException;
    const code = err.code ?? '';
    const where = url.origin;
    if (TLS_VERIFY_CODES.has(code)) {
      const got = await peerIssuer(url, this.#tls).catch(() => undefined);
      const expected = this.#tls.expectedIssuer
        ? `a certificate signed by ${this.#tls.expectedIssuer}`
        : 'a certificate signed by a CA in the system trust store (no tls.ca_cert is set)';
      return new UnreachableError(
        `TLS verification of ${where} failed (${code}): expected ${expected}${got ? `, got one issued by ${got}` : ''}.`,
        {
          hint: "Set tls.ca_cert in the inventory (or VAULT_CACERT) to the CA that signed this server's certificate, or fix the certificate's names.",
          cause: e,
        },
      );
    }
    if (code === 'ECONNREFUSED') {
      return new UnreachableError(`${where} refused the connection: no Vault server is listening there.`, {
        hint: 'Check that the server is running and that api_addr in the inventory is right.',
        cause: e,
      });
    }
    if (code === 'ETIMEDOUT') {
      return new UnreachableError(`${where} did not answer: ${err.message}.`, {
        hint: 'Check the network path and firewall to the node, or raise VAULT_CLIENT_TIMEOUT.',
        cause: e,
      });
    }
    if (code === 'EPROTO' || /wrong version number|packet length too long/i.test(err.message)) {
      return new UnreachableError(`${where} does not speak ${url.protocol === 'https:' ? 'TLS' : 'plain HTTP'}.`, {
        hint: `Use ${url.protocol === 'https:' ? 'http' : 'https'}:// in api_addr if that is how the listener is configured.`,
        cause: e,
      });
    }
    return new UnreachableError(`Cannot reach ${where}: ${code || err.message}.`, {
      hint: 'Check that the address is right and the node is up.',
      cause: e,
    });
  }
}

/** Connects once without verification just to name the issuer the server actually presents. */
function peerIssuer(url: URL, t: LoadedTls): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: url.hostname,
      port: Number(url.port || 443),
      rejectUnauthorized: false,
      ...(t.servername ? { servername: t.servername } : {}),
    });
    socket.setTimeout(3000, () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate();
      socket.end();
      const issuer = cert?.issuer
        ? Object.entries(cert.issuer)
            .map(([k, v]) => `${k}=${String(v)}`)
            .join(', ')
        : undefined;
      resolve(issuer);
    });
    socket.once('error', () => resolve(undefined));
  });
}
