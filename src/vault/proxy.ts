import { createRequire } from 'node:module';
import net from 'node:net';
import tls from 'node:tls';
import type { Agent, AgentOptions as HttpAgentOptions, RequestOptions } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AgentOptions as HttpsAgentOptions } from 'node:https';
import { UnreachableError } from '../core/errors.js';
import { redactor } from '../core/redact.js';

// require, not import: see transport.ts (an ESM import of node:http loads all of undici).
const require = createRequire(import.meta.url);
const http = require('node:http') as typeof import('node:http');
const https = require('node:https') as typeof import('node:https');

/**
 * HTTP(S) proxies from the environment, as curl reads them: `https_proxy`/`HTTPS_PROXY` for https
 * targets, `http_proxy`/`HTTP_PROXY` for http ones (the lower-case name first), and
 * `no_proxy`/`NO_PROXY` for the hosts that go direct. An https target goes through a CONNECT
 * tunnel (TLS stays end to end: the proxy sees only the host and port); an http target is sent to
 * the proxy with its absolute URL. Used by every HTTP client of the tool: the Vault API (the
 * raw snapshot download included), S3 and webhooks.
 */
export interface ProxyRoute {
  /** The proxy, http://[user:pass@]host:port. */
  proxy: URL;
  /** The variable it came from, for messages. */
  variable: string;
}

/** The proxy as messages show it: without its credentials. */
export function proxyName(route: ProxyRoute): string {
  return `${route.proxy.protocol}//${route.proxy.host} (from ${route.variable})`;
}

function env(e: NodeJS.ProcessEnv, name: string): { name: string; value: string } | undefined {
  for (const n of [name.toLowerCase(), name.toUpperCase()]) {
    const v = e[n]?.trim();
    if (v) return { name: n, value: v };
  }
  return undefined;
}

/** The proxy a request to `url` goes through, or undefined for a direct connection. */
export function proxyFor(url: URL, e: NodeJS.ProcessEnv = process.env): ProxyRoute | undefined {
  const https = url.protocol === 'https:';
  const set = env(e, https ? 'https_proxy' : 'http_proxy');
  if (!set) return undefined;
  const port = Number(url.port || (https ? 443 : 80));
  const noProxy = env(e, 'no_proxy');
  if (noProxy && noProxyMatches(url.hostname, port, noProxy.value)) return undefined;
  let proxy: URL;
  try {
    // curl's rule: a proxy without a scheme is http://.
    proxy = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(set.value) ? set.value : `http://${set.value}`);
  } catch {
    throw new UnreachableError(`${set.name} is not a proxy URL.`, {
      hint: `Write it as http://proxy.example.com:3128 (or unset ${set.name}).`,
    });
  }
  if (proxy.protocol !== 'http:')
    throw new UnreachableError(
      `${set.name} names a ${proxy.protocol}// proxy; vaultops speaks to proxies over http:// only.`,
      {
        hint: `Write it as http://${proxy.host} (https targets are still tunnelled with TLS end to end).`,
      },
    );
  // Credentials in the proxy URL are a secret like any other: masked wherever they could be printed.
  if (proxy.password) redactor.add(decodeURIComponent(proxy.password));
  return { proxy, variable: set.name };
}

/**
 * Whether NO_PROXY sends this host direct, the way curl decides: entries separated by commas or
 * spaces; `*` alone matches every host; a name matches itself and every name below it
 * (`example.com` and `.example.com` both match `vault.example.com`; `*.example.com` too); an IP
 * address or CIDR range (`10.0.0.0/8`, `fd00::/8`) matches addresses only; case does not matter.
 * Beyond curl (as Go's net/http does): `host:port` matches that host on that port only.
 */
export function noProxyMatches(hostname: string, port: number, list: string): boolean {
  const host = hostname
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '')
    .toLowerCase();
  const hostIp = net.isIP(host);
  for (const raw of list.split(/[\s,]+/)) {
    let entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === '*') return true;
    let entryPort: number | undefined;
    const withPort = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(entry);
    if (withPort) {
      entry = withPort[1]!;
      entryPort = Number(withPort[2]);
    }
    if (entryPort !== undefined && entryPort !== port) continue;
    entry = entry.replace(/^\[|\]$/g, '');
    if (hostIp) {
      const [addr, bits] = entry.split('/');
      const family = net.isIP(addr ?? '');
      if (!family || family !== hostIp) continue;
      if (bits === undefined) {
        if (sameAddress(addr!, host, family)) return true;
        continue;
      }
      const prefix = Number(bits);
      if (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) continue;
      const block = new net.BlockList();
      block.addSubnet(addr!, prefix, family === 4 ? 'ipv4' : 'ipv6');
      if (block.check(host, family === 4 ? 'ipv4' : 'ipv6')) return true;
      continue;
    }
    entry = entry.replace(/^\*?\./, '').replace(/\.$/, '');
    if (!entry || net.isIP(entry.split('/')[0]!)) continue;
    if (host === entry || host.endsWith(`.${entry}`)) return true;
  }
  return false;
}

function sameAddress(a: string, b: string, family: number): boolean {
  const block = new net.BlockList();
  block.addAddress(a, family === 4 ? 'ipv4' : 'ipv6');
  return block.check(b, family === 4 ? 'ipv4' : 'ipv6');
}

/** A failure at the proxy: named as such (never as the target's), with the socket error's code kept for retries. */
export class ProxyError extends UnreachableError {
  readonly code: string;
  constructor(message: string, code: string, options: { hint: string; cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

const PROXY_HINT = (route: ProxyRoute) =>
  `Start the proxy or fix ${route.variable}; hosts that must not go through it belong in NO_PROXY.`;

function connectFailure(route: ProxyRoute, target: string, e: NodeJS.ErrnoException): ProxyError {
  const code = e.code ?? 'ECONNRESET';
  return new ProxyError(
    `Cannot reach the proxy ${proxyName(route)} for ${target}: ${code === 'ECONNREFUSED' ? 'connection refused' : code}.`,
    code,
    { hint: PROXY_HINT(route), cause: e },
  );
}

function authHeader(route: ProxyRoute): string {
  const { username, password } = route.proxy;
  if (!username && !password) return '';
  const cred = `${decodeURIComponent(username)}:${decodeURIComponent(password)}`;
  return `Proxy-Authorization: Basic ${Buffer.from(cred).toString('base64')}\r\n`;
}

function proxyPort(route: ProxyRoute): number {
  return Number(route.proxy.port || 80);
}

/** A plain connection to the proxy; rejects with a ProxyError. */
export function connectProxy(route: ProxyRoute, target: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: route.proxy.hostname.replace(/^\[|\]$/g, ''), port: proxyPort(route) });
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            const e = new Error('timed out') as NodeJS.ErrnoException;
            e.code = 'ETIMEDOUT';
            socket.destroy(e);
          }, timeoutMs)
        : undefined;
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(connectFailure(route, target, e));
    });
  });
}

/**
 * A CONNECT tunnel through the proxy to host:port: resolves with the socket once the proxy answered
 * 2xx, ready for TLS. Any other answer is an error that names the proxy and its status line.
 */
export async function openTunnel(
  route: ProxyRoute,
  host: string,
  port: number,
  timeoutMs = 30_000,
): Promise<net.Socket> {
  const authority = `${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
  const socket = await connectProxy(route, `https://${authority}`, timeoutMs);
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    const timer =
      timeoutMs > 0
        ? setTimeout(
            () => fail(`no answer to CONNECT within ${Math.round(timeoutMs / 1000)} s`, 'ETIMEDOUT'),
            timeoutMs,
          )
        : undefined;
    const fail = (why: string, code: string, cause?: unknown) => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.destroy();
      reject(
        new ProxyError(`The proxy ${proxyName(route)} did not open a tunnel to ${authority}: ${why}.`, code, {
          hint: `${PROXY_HINT(route)} A proxy that refuses the port (403) must allow CONNECT to it (tinyproxy: ConnectPort; squid: SSL_ports).`,
          cause,
        }),
      );
    };
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > 16 * 1024) fail('an answer header longer than 16 KiB', 'EPROTO');
        return;
      }
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      const status = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(status);
      if (!m || m[1]![0] !== '2') {
        socket.destroy();
        reject(
          new ProxyError(
            `The proxy ${proxyName(route)} refused to open a tunnel to ${authority}: ${status.trim() || 'no status line'}.`,
            // Not a connection failure: the proxy said no, and asking again would not change that.
            'EPROXYREFUSED',
            {
              hint: `${PROXY_HINT(route)} A proxy must allow CONNECT to the port (tinyproxy: ConnectPort; squid: SSL_ports).`,
            },
          ),
        );
        return;
      }
      socket.pause();
      const rest = head.subarray(end + 4);
      if (rest.length) socket.unshift(rest);
      resolve(socket);
    };
    const onError = (e: NodeJS.ErrnoException) => fail(e.code ?? e.message, e.code ?? 'ECONNRESET', e);
    const onClose = () => fail('the proxy closed the connection', 'ECONNRESET');
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('close', onClose);
    socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${authHeader(route)}\r\n`);
  });
}

type ConnectCallback = (err: Error | null, stream: Duplex) => void;
/** What the callback gets with an error: Node's agent never looks at the stream then. */
const NO_STREAM = undefined as unknown as Duplex;

/** https through a CONNECT tunnel: the agent's sockets are TLS over the tunnel, so keep-alive and TLS options work as usual. */
class TunnelAgent extends https.Agent {
  constructor(
    readonly route: ProxyRoute,
    options: HttpsAgentOptions,
  ) {
    super(options);
  }
  override createConnection(options: RequestOptions, callback?: ConnectCallback): undefined {
    const host = String(options.host ?? 'localhost').replace(/^\[|\]$/g, '');
    const port = Number(options.port ?? 443);
    openTunnel(this.route, host, port).then(
      (socket) => {
        const servername = (options as tls.ConnectionOptions).servername || (net.isIP(host) ? undefined : host);
        const secure = tls.connect({
          ...(options as tls.ConnectionOptions),
          socket,
          ...(servername ? { servername } : {}),
        });
        callback?.(null, secure);
      },
      (e: Error) => callback?.(e, NO_STREAM),
    );
    return undefined;
  }
}

/** http through a forward proxy: connections go to the proxy; the request carries the absolute URL (see requestPath). */
class ForwardAgent extends http.Agent {
  constructor(
    readonly route: ProxyRoute,
    options: HttpAgentOptions,
  ) {
    super(options);
  }
  override createConnection(options: RequestOptions, callback?: ConnectCallback): undefined {
    const target = `http://${options.host ?? 'localhost'}:${options.port ?? 80}`;
    connectProxy(this.route, target, 30_000).then(
      (s) => callback?.(null, s),
      (e: Error) => callback?.(e, NO_STREAM),
    );
    return undefined;
  }
}

/**
 * An agent for requests to `url`'s origin: direct, or through the route's proxy. With a forward
 * proxy (an http target), send `requestPath(url, route)` as the path and `proxyHeaders(route)`.
 */
export function agentFor(
  url: URL,
  route: ProxyRoute | undefined,
  options: HttpsAgentOptions & HttpAgentOptions,
): Agent {
  if (url.protocol === 'https:') return route ? new TunnelAgent(route, options) : new https.Agent(options);
  // No keep-alive to a forward proxy: tinyproxy (like many) closes the connection after each answer,
  // and a reused socket would fail the next request with a reset.
  return route ? new ForwardAgent(route, { ...options, keepAlive: false }) : new http.Agent(options);
}

/** The request target: the absolute URL for a forward proxy, the path otherwise. */
export function requestPath(url: URL, route: ProxyRoute | undefined): string {
  return route && url.protocol === 'http:' ? url.href : `${url.pathname}${url.search}`;
}

/** Headers a forward proxy needs (its credentials); none for a tunnel, whose CONNECT carries them. */
export function proxyHeaders(url: URL, route: ProxyRoute | undefined): Record<string, string> {
  if (!route || url.protocol !== 'http:') return {};
  const h = authHeader(route);
  return h ? { 'proxy-authorization': h.slice('Proxy-Authorization: '.length).trim() } : {};
}
