import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import { VaultApiError, VaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import { Transport, type TransportOptions } from './transport.js';
import type { RawDownload } from './raw-download.js';
import { healthState, type HealthBody, type NodeHealth } from './health.js';
import type * as T from './api-types.js';

export interface VaultClientOptions extends TransportOptions {
  /** Base address, e.g. https://127.0.0.11:8200 (the node's api_addr). */
  address: string;
  token?: string | undefined;
  namespace?: string | undefined;
  /** A name for messages ("n1"); defaults to the address. */
  label?: string | undefined;
  /** Share one transport (connection pool) between the clients of one cluster. */
  transport?: Transport | undefined;
}

/** The slice of node-vault we use: its commands, on top of our transport. */
interface NodeVault {
  token?: string | undefined;
  request(o: { path: string; method: string; json?: unknown }): Promise<unknown>;
  read(path: string): Promise<unknown>;
  write(path: string, data: unknown): Promise<unknown>;
  status(): Promise<unknown>;
  unseal(o: { key?: string; reset?: boolean }): Promise<unknown>;
  leader(): Promise<unknown>;
  seal(): Promise<unknown>;
}

const require = createRequire(import.meta.url);
let nodeVaultFactory: ((config: Record<string, unknown>) => NodeVault) | undefined;

/**
 * A typed client for one Vault/OpenBao node.
 *
 * JSON calls go through node-vault's command catalogue, but node-vault's own transport is
 * replaced by ours ("request-promise" hook) and its debug logger by a no-op: node-vault logs
 * request bodies (unseal keys!) when DEBUG=node-vault is set (node-vault src/index.js, `request`),
 * ignores VAULT_CACERT, treats VAULT_SKIP_VERIFY=false as true and corrupts binary bodies.
 * Snapshot bytes never touch node-vault: see `streamSnapshot` / `uploadSnapshot`.
 */
export class VaultClient {
  readonly address: string;
  readonly label: string;
  readonly transport: Transport;
  #token: string | undefined;
  readonly #namespace: string | undefined;
  #nv: NodeVault | undefined;

  constructor(options: VaultClientOptions) {
    this.address = options.address.replace(/\/+$/, '');
    this.label = options.label ?? this.address;
    this.transport = options.transport ?? new Transport(options);
    this.#token = options.token;
    this.#namespace = options.namespace;
    redactor.add(options.token);
  }

  get hasToken(): boolean {
    return this.#token !== undefined;
  }

  setToken(token: string | undefined): void {
    redactor.add(token);
    this.#token = token;
    if (this.#nv) this.#nv.token = token;
  }

  /** Same node, another token (e.g. a freshly generated root token). Shares the connection pool. */
  withToken(token: string | undefined): VaultClient {
    return new VaultClient({
      address: this.address,
      label: this.label,
      transport: this.transport,
      token,
      namespace: this.#namespace,
    });
  }

  // ---- health and status (unauthenticated, node-local) ----

  async health(): Promise<NodeHealth> {
    // HEAD would be cheaper, but the body carries version and cluster id that status shows.
    const res = await this.raw('GET', '/sys/health');
    const text = res.body.toString('utf8');
    let body: HealthBody = {};
    try {
      body = text ? (JSON.parse(text) as HealthBody) : {};
    } catch {
      body = {};
    }
    return { state: healthState(res.status, body, text), httpStatus: res.status, body };
  }

  async sealStatus(): Promise<T.SealStatus> {
    return (await this.#call((nv) => nv.status(), 'GET /sys/seal-status')) as T.SealStatus;
  }

  async leader(): Promise<T.LeaderStatus> {
    return (await this.#call((nv) => nv.leader(), 'GET /sys/leader')) as T.LeaderStatus;
  }

  /** Submits one unseal share. The share is registered with the redactor before it leaves. */
  async unseal(key: string): Promise<T.SealStatus> {
    redactor.add(key);
    return (await this.#call((nv) => nv.unseal({ key }), 'PUT /sys/unseal')) as T.SealStatus;
  }

  async unsealReset(): Promise<T.SealStatus> {
    return (await this.#call((nv) => nv.unseal({ reset: true }), 'PUT /sys/unseal')) as T.SealStatus;
  }

  /** Seals this node. Vault refuses on a standby (not forwarded); ask the active node. */
  async seal(): Promise<void> {
    await this.#call((nv) => nv.seal(), 'PUT /sys/seal');
  }

  /**
   * Initialises the cluster. Returns the answer exactly as the server sent it (the bytes), so the
   * lab can store it untouched, plus the parsed form. Raw request: node-vault's `init` drops
   * every field but shares/threshold/pgp_keys (no auto-unseal init).
   */
  async init(request: T.InitRequest): Promise<{ raw: Buffer; parsed: T.InitResponse }> {
    const res = await this.raw('PUT', '/sys/init', JSON.stringify(request));
    if (res.status !== 200) throw apiError('PUT /sys/init', this.label, res.status, res.body);
    const parsed = JSON.parse(res.body.toString('utf8')) as T.InitResponse;
    redactor.add(
      parsed.root_token,
      ...(parsed.keys ?? []),
      ...(parsed.keys_base64 ?? []),
      ...(parsed.recovery_keys ?? []),
      ...(parsed.recovery_keys_base64 ?? []),
    );
    return { raw: res.body, parsed };
  }

  // ---- authenticated reads and writes ----

  async read<R = unknown>(path: string): Promise<R> {
    return (await this.#call((nv) => nv.read(path.replace(/^\//, '')), `GET /${path}`)) as R;
  }

  async write<R = unknown>(path: string, data: unknown): Promise<R> {
    return (await this.#call((nv) => nv.write(path.replace(/^\//, ''), data), `PUT /${path}`)) as R;
  }

  async raftConfiguration(): Promise<T.RaftConfiguration> {
    const res = await this.read<{ data: T.RaftConfiguration }>('sys/storage/raft/configuration');
    return res.data;
  }

  /** Autopilot state. The docs show it unwrapped; real servers wrap it in `data`. */
  async autopilotState(): Promise<T.AutopilotState> {
    const res = await this.read<{ data?: T.AutopilotState } & Partial<T.AutopilotState>>(
      'sys/storage/raft/autopilot/state',
    );
    return (res.data ?? res) as T.AutopilotState;
  }

  async setAutopilotConfiguration(config: T.AutopilotConfiguration): Promise<void> {
    await this.write('sys/storage/raft/autopilot/configuration', config);
  }

  async lookupSelf(): Promise<T.TokenLookup> {
    const res = await this.read<{ data: T.TokenLookup }>('auth/token/lookup-self');
    return res.data;
  }

  // ---- binary streams (never through node-vault) ----

  /** Starts a Raft snapshot download from this node. The caller must make sure this is the leader. */
  async downloadSnapshot(): Promise<RawDownload> {
    const res = await this.transport.download({
      url: this.#url('/sys/storage/raft/snapshot'),
      headers: this.#headers(),
    });
    if (res.status !== 200) {
      const body = await res.readAll().catch(() => Buffer.alloc(0));
      throw apiError('GET /sys/storage/raft/snapshot', this.label, res.status, body, res.headers['location']);
    }
    return res;
  }

  /** Uploads a snapshot for restore. `force` skips Vault's same-cluster check (another cluster's snapshot). */
  async uploadSnapshot(body: Readable, options: { force: boolean }): Promise<void> {
    const path = options.force ? '/sys/storage/raft/snapshot-force' : '/sys/storage/raft/snapshot';
    const res = await this.transport.request({
      method: 'POST',
      url: this.#url(path),
      headers: { ...this.#headers(), 'content-type': 'application/octet-stream' },
      body,
      timeoutMs: 0,
    });
    if (res.status !== 200 && res.status !== 204)
      throw apiError(`POST ${path}`, this.label, res.status, res.body, res.headers.location);
  }

  /** A request as-is; the caller reads status and body. */
  async raw(
    method: string,
    path: string,
    body?: string,
  ): Promise<{ status: number; body: Buffer; headers: Record<string, unknown> }> {
    const res = await this.transport.request({
      method,
      url: this.#url(path),
      headers: { ...this.#headers(), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body,
    });
    return res;
  }

  #url(path: string): URL {
    return new URL(`${this.address}/v1${path.startsWith('/') ? path : `/${path}`}`);
  }

  #headers(): Record<string, string> {
    const h: Record<string, string> = { 'x-vault-request': 'true' };
    if (this.#token) h['x-vault-token'] = this.#token;
    if (this.#namespace) h['x-vault-namespace'] = this.#namespace;
    return h;
  }

  #nodeVault(): NodeVault {
    if (this.#nv) return this.#nv;
    nodeVaultFactory ??= require('node-vault') as (config: Record<string, unknown>) => NodeVault;
    const transport = this.transport;
    const rp = async (o: { method: string; uri: string; headers?: Record<string, string>; json?: unknown }) => {
      const url = new URL(o.uri);
      const hasBody = o.json !== undefined && o.json !== true;
      // node-vault falls back to $VAULT_TOKEN / $VAULT_NAMESPACE when its token is empty: a client
      // without a token would send the environment's. Its token and namespace headers are dropped
      // and this client's own (none, when it has none) are sent instead.
      const own = Object.fromEntries(
        Object.entries(o.headers ?? {}).filter(([k]) => !/^x-vault-(token|namespace)$/i.test(k)),
      );
      const res = await transport.request({
        method: o.method,
        url,
        headers: { ...own, ...this.#headers(), ...(hasBody ? { 'content-type': 'application/json' } : {}) },
        body: hasBody ? JSON.stringify(o.json) : undefined,
      });
      const text = res.body.toString('utf8');
      let body: unknown = text;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        /* keep the text */
      }
      return { statusCode: res.status, body, request: { path: url.pathname } };
    };
    this.#nv = nodeVaultFactory({
      endpoint: this.address,
      token: this.#token ?? '',
      namespace: this.#namespace,
      debug: () => undefined,
      'request-promise': { defaults: () => rp },
    });
    return this.#nv;
  }

  async #call(fn: (nv: NodeVault) => Promise<unknown>, what: string): Promise<unknown> {
    try {
      return await fn(this.#nodeVault());
    } catch (e) {
      if (e instanceof VaultopsError) throw e;
      const resp = (e as { response?: { statusCode?: number; body?: unknown } }).response;
      if (resp?.statusCode !== undefined) {
        const errors = (resp.body as { errors?: unknown })?.errors;
        throw new VaultApiError(
          redactor.redact(
            `${what} on ${this.label} answered ${resp.statusCode}: ${Array.isArray(errors) && errors.length ? errors.join('; ') : 'no error text'}`,
          ),
          resp.statusCode,
          Array.isArray(errors) ? errors.map((x) => redactor.redact(String(x))) : [],
        );
      }
      // tv4 validation errors and the like: say what, never echo the arguments.
      throw new VaultopsError(`${what} on ${this.label} failed: ${redactor.redact((e as Error).message ?? String(e))}`);
    }
  }
}

export function apiError(what: string, label: string, status: number, body: Buffer, location?: string): VaultApiError {
  let errors: string[] = [];
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: unknown };
    if (Array.isArray(parsed.errors)) errors = parsed.errors.map((x) => redactor.redact(String(x)));
  } catch {
    /* not JSON */
  }
  const redirect = status === 307 && location ? ` (redirect to ${location}: this node is a standby)` : '';
  return new VaultApiError(
    `${what} on ${label} answered ${status}${redirect}${errors.length ? `: ${errors.join('; ')}` : ''}`,
    status,
    errors,
  );
}
