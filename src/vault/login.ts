import { readFileSync } from 'node:fs';
import { InputError, UnreachableError, VaultApiError, VaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import type { VaultClient } from './client.js';

/** Where a Kubernetes pod finds its service account token (projected by the kubelet, rotated in place). */
export const KUBERNETES_TOKEN_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * How vaultops logs in by itself, for unattended runs. The secrets (secret_id) are already
 * resolved from their references; a JWT is read from its file at each login, because Kubernetes
 * rotates projected service account tokens in place.
 */
export type LoginSettings =
  | { method: 'approle'; path: string; roleId: string; secretId: string; secretIdRef: string }
  | {
      method: 'cert';
      path: string;
      name?: string | undefined;
      clientCert?: string | undefined;
      clientKey?: string | undefined;
    }
  | { method: 'jwt' | 'kubernetes'; path: string; role: string; tokenFile: string };

export interface LoginToken {
  token: string;
  accessor: string;
  /** Seconds the token lives from now (0: never expires, e.g. a root token). */
  ttlSeconds: number;
  renewable: boolean;
}

interface AuthBody {
  auth?: { client_token?: string; accessor?: string; lease_duration?: number; renewable?: boolean } | null;
  warnings?: string[] | null;
}

/** One line naming the login, without a secret: "approle login at auth/approle". */
export function describeLogin(s: LoginSettings): string {
  const role = s.method === 'cert' ? (s.name ? ` (certificate role ${s.name})` : '') : '';
  const jwtRole = s.method === 'jwt' || s.method === 'kubernetes' ? ` (role ${s.role})` : '';
  return `${s.method} login at auth/${s.path}${role}${jwtRole}`;
}

/**
 * Logs in on one node: POST auth/<path>/login. Standbys forward the request to the active node, so
 * any serving node will do. The token is registered with the redactor before anything can print it.
 * A 4xx answer is the credentials' fault (InputError with what to do); anything else is the node's.
 */
export async function loginOnNode(client: VaultClient, s: LoginSettings): Promise<LoginToken> {
  const body = loginBody(s);
  const res = await client.raw('POST', `/auth/${s.path}/login`, JSON.stringify(body));
  const text = res.body.toString('utf8');
  let parsed: AuthBody & { errors?: unknown } = {};
  try {
    parsed = text ? (JSON.parse(text) as AuthBody) : {};
  } catch {
    /* not JSON: reported below by status */
  }
  const token = parsed.auth?.client_token;
  if (res.status === 200 && token) {
    redactor.add(token);
    return {
      token,
      accessor: parsed.auth?.accessor ?? '',
      ttlSeconds: parsed.auth?.lease_duration ?? 0,
      renewable: parsed.auth?.renewable ?? false,
    };
  }
  const errors = Array.isArray(parsed.errors) ? parsed.errors.map((x) => redactor.redact(String(x))) : [];
  const said = errors.length ? `: ${errors.join('; ')}` : '';
  if (res.status >= 400 && res.status < 500 && res.status !== 429)
    throw new InputError(`${describeLogin(s)} on ${client.label} was refused (${res.status}${said}).`, {
      hint: loginHint(s),
    });
  throw new VaultApiError(`${describeLogin(s)} on ${client.label} answered ${res.status}${said}`, res.status, errors);
}

function loginBody(s: LoginSettings): Record<string, string> {
  switch (s.method) {
    case 'approle':
      return { role_id: s.roleId, secret_id: s.secretId };
    case 'cert':
      // Without a name Vault tries every trusted certificate role; the certificate itself is the credential.
      return s.name ? { name: s.name } : {};
    case 'jwt':
    case 'kubernetes': {
      let jwt: string;
      try {
        jwt = readFileSync(s.tokenFile, 'utf8').trim();
      } catch (e) {
        throw new InputError(
          `${describeLogin(s)}: cannot read the token file ${s.tokenFile} (${(e as NodeJS.ErrnoException).code ?? 'error'}).`,
          {
            hint:
              s.method === 'kubernetes'
                ? 'Run in a pod whose service account token is mounted (automountServiceAccountToken), or set auth.token_file.'
                : 'Check auth.token_file in the inventory (relative paths are relative to the inventory file).',
          },
        );
      }
      if (jwt === '') throw new InputError(`${describeLogin(s)}: the token file ${s.tokenFile} is empty.`);
      redactor.add(jwt);
      return { role: s.role, jwt };
    }
  }
}

function loginHint(s: LoginSettings): string {
  switch (s.method) {
    case 'approle':
      return `Check the role_id and the secret_id (${s.secretIdRef}): a secret_id expires or runs out of uses (secret_id_ttl, secret_id_num_uses); make a new one with \`vault write -f auth/${s.path}/role/ROLE/secret-id\` and store it where the reference points. The role must allow logins from this host (secret_id_bound_cidrs).`;
    case 'cert':
      return `The server did not accept the client certificate${s.clientCert ? ` ${s.clientCert}` : ''}: it must be signed by (or be) a certificate trusted at auth/${s.path}/certs/${s.name ?? 'NAME'}, be valid now, and the listener must request client certificates (tls_disable_client_certs unset).`;
    case 'jwt':
      return `Check that the JWT in ${s.tokenFile} is unexpired, signed by a key in auth/${s.path}/config (jwt_validation_pubkeys, jwks_url or oidc_discovery_url), and matches role ${s.role} (bound_audiences, bound_subject, bound_claims).`;
    case 'kubernetes':
      return `Check that role ${s.role} at auth/${s.path} binds this pod's service account and namespace (bound_service_account_names, bound_service_account_namespaces) and that the service account token in ${s.tokenFile} is current.`;
  }
}

/** POST auth/token/renew-self. Returns the token's new TTL in seconds. */
export async function renewSelf(client: VaultClient): Promise<number> {
  const res = await client.raw('POST', '/auth/token/renew-self', '{}');
  if (res.status !== 200) throw apiFailure('POST /auth/token/renew-self', client.label, res.status, res.body);
  const parsed = JSON.parse(res.body.toString('utf8')) as AuthBody;
  return parsed.auth?.lease_duration ?? 0;
}

/** POST auth/token/revoke-self (204). Revokes the token and its children. */
export async function revokeSelf(client: VaultClient): Promise<void> {
  const res = await client.raw('POST', '/auth/token/revoke-self', '{}');
  if (res.status !== 204 && res.status !== 200)
    throw apiFailure('POST /auth/token/revoke-self', client.label, res.status, res.body);
}

function apiFailure(what: string, label: string, status: number, body: Buffer): VaultopsError {
  let errors: string[] = [];
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: unknown };
    if (Array.isArray(parsed.errors)) errors = parsed.errors.map((x) => redactor.redact(String(x)));
  } catch {
    /* not JSON */
  }
  return new VaultApiError(
    `${what} on ${label} answered ${status}${errors.length ? `: ${errors.join('; ')}` : ''}`,
    status,
    errors,
  );
}

/** True for errors worth trying the next node for: the node is down, sealed, or cannot serve. */
export function isNodeProblem(e: unknown): boolean {
  if (e instanceof UnreachableError) return true;
  if (e instanceof VaultApiError) return e.status >= 500 || e.status === 429 || e.status === 307;
  return !(e instanceof VaultopsError);
}

/**
 * Keeps a token that vaultops obtained by logging in alive for the length of a run, then revokes it.
 * Renewal happens at two thirds of the TTL (as Vault's own LifetimeWatcher and agent do); when the
 * server gives back less than the token had at login, the token has reached its max TTL: renewing
 * cannot extend it, so we warn once (with the time left) and stop. Timers are unref'd: they never keep
 * the process alive.
 */
export class TokenLifetime {
  readonly #renewOn: () => Promise<number>;
  readonly #warn: (message: string) => void;
  readonly what: string;
  readonly #period: number;
  #expiresAt: number;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: {
    token: LoginToken;
    what: string;
    renew: () => Promise<number>;
    warn: (message: string) => void;
  }) {
    this.#renewOn = options.renew;
    this.#warn = options.warn;
    this.what = options.what;
    this.#period = options.token.ttlSeconds;
    this.#expiresAt = Date.now() + options.token.ttlSeconds * 1000;
    if (options.token.ttlSeconds > 0 && options.token.renewable) this.#schedule(options.token.ttlSeconds * 1000);
  }

  #schedule(ttlMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#renew(), Math.max(250, Math.floor((ttlMs * 2) / 3)));
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    if (this.#stopped) return;
    let ttl: number;
    try {
      ttl = await this.#renewOn();
    } catch (e) {
      const left = this.#expiresAt - Date.now();
      if (left <= 0) {
        this.#warn(
          `the token from the ${this.what} expired and could not be renewed (${(e as Error).message}); requests from now on are refused.`,
        );
        return;
      }
      // A node may be down for a moment (a leader election): try again well before the token expires.
      this.#schedule(Math.min(left, 30_000));
      return;
    }
    if (this.#stopped) return;
    this.#expiresAt = Date.now() + ttl * 1000;
    if (ttl < this.#period) {
      this.#warn(
        `the token from the ${this.what} reached its max TTL and expires in ${ttl}s; it cannot be renewed further, so a run longer than that fails. Raise the role's token_max_ttl (or the mount's max_lease_ttl) above the longest run.`,
      );
      return;
    }
    this.#schedule(ttl * 1000);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
