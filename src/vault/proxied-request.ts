import { createRequire } from 'node:module';
import { agentFor, proxyFor, proxyHeaders, requestPath } from './proxy.js';

// require, not import: see transport.ts (an ESM import of node:http loads all of undici).
const require = createRequire(import.meta.url);
const http = require('node:http') as typeof import('node:http');
const https = require('node:https') as typeof import('node:https');

export interface ProxiedRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
  /** Fails the request when no answer came within this many milliseconds of inactivity. */
  timeoutMs?: number;
  /** Keep the answer's body up to this many bytes (more fails the request); 0 reads and drops it. */
  maxBytes?: number;
  env?: NodeJS.ProcessEnv;
}

export interface ProxiedAnswer {
  status: number;
  body: Buffer;
}

/**
 * One small request on node:http(s) for the tool's side channels (release lists, webhooks):
 * through HTTPS_PROXY/HTTP_PROXY unless NO_PROXY names the host, as every client of the tool does.
 * fetch() ignores those variables, which is why this is not fetch.
 */
export function requestVia(url: URL, o: ProxiedRequest = {}): Promise<ProxiedAnswer> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return Promise.reject(new Error(`unsupported scheme ${url.protocol}`));
  const route = proxyFor(url, o.env);
  const agent = agentFor(url, route, {});
  const lib = url.protocol === 'https:' ? https : http;
  const maxBytes = o.maxBytes ?? 0;
  return new Promise<ProxiedAnswer>((resolve, reject) => {
    const headers: Record<string, string> = { ...o.headers, ...proxyHeaders(url, route) };
    if (o.body !== undefined) headers['content-length'] = String(Buffer.byteLength(o.body));
    const req = lib.request(
      url,
      { method: o.method ?? 'GET', agent, path: requestPath(url, route), headers, signal: o.signal },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          if (maxBytes === 0) return;
          size += c.length;
          if (size > maxBytes) req.destroy(new Error(`the answer is larger than ${Math.round(maxBytes / 1048576)} MB`));
          else chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    if (o.timeoutMs !== undefined) {
      const s = Math.round(o.timeoutMs / 1000);
      req.setTimeout(o.timeoutMs, () => req.destroy(new Error(`no answer within ${s} s`)));
    }
    req.on('error', reject);
    req.end(o.body);
  }).finally(() => agent.destroy());
}
