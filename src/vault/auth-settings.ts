import { resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import type { AuthSpec } from '../inventory/schema.js';
import { resolveSecretString, type SecretPrompter } from '../secrets/refs.js';
import { readTokenFile, readVaultEnv } from './env.js';
import { KUBERNETES_TOKEN_FILE, type LoginSettings } from './login.js';

/**
 * How a command authenticates: a token the operator gave (used as it is, never renewed or revoked),
 * a login vaultops performs itself (renewed during the run, revoked at its end), or nothing.
 */
export interface ResolvedAuth {
  token?: string | undefined;
  login?: LoginSettings | undefined;
}

export const AUTH_METHODS = ['token', 'approle', 'cert', 'jwt', 'kubernetes'] as const;

/**
 * The login for one cluster, in this order: the inventory's `auth:`, its `token:`, the
 * VAULTOPS_AUTH_* variables (for single-cluster commands and schedulers that pass settings in the
 * environment), then VAULT_TOKEN / BAO_TOKEN and ~/.vault-token as the official CLIs use them.
 * Every secret reference is resolved here, before the first request; a JWT file is read at login.
 * `skipInteractive` (a plan) leaves prompt: and cmd: references unread and logs in with nothing.
 */
export async function resolveAuth(options: {
  auth?: AuthSpec | undefined;
  token?: string | undefined;
  prompter?: SecretPrompter | undefined;
  env?: NodeJS.ProcessEnv;
  skipInteractive?: boolean;
}): Promise<ResolvedAuth> {
  const env = options.env ?? process.env;
  const ref = async (r: string): Promise<string | undefined> => {
    if (options.skipInteractive && /^(prompt|cmd):/.test(r)) return undefined;
    return resolveSecretString(r, options.prompter);
  };
  const spec =
    options.auth ?? (options.token === undefined ? authFromEnv(env) : { method: 'token', token: options.token });
  // No login settings at all, or VAULTOPS_AUTH_METHOD=token: the official CLIs' token.
  if (spec === undefined || (spec.method === 'token' && spec.token === ''))
    return { token: readVaultEnv(env).token ?? readTokenFile(env) };
  switch (spec.method) {
    case 'token':
      return { token: await ref(spec.token) };
    case 'approle': {
      // A scheduler may hand the secret_id over itself (systemd LoadCredential=): then
      // VAULTOPS_AUTH_SECRET_ID points at its copy and wins over the inventory's reference.
      const secretIdRef = options.auth ? (envReference(env, 'SECRET_ID') ?? spec.secret_id) : spec.secret_id;
      const roleId = await ref(spec.role_id);
      const secretId = await ref(secretIdRef);
      if (roleId === undefined || secretId === undefined) return {};
      return { login: { method: 'approle', path: spec.path ?? 'approle', roleId, secretId, secretIdRef } };
    }
    case 'cert':
      return {
        login: {
          method: 'cert',
          path: spec.path ?? 'cert',
          name: spec.name,
          clientCert: spec.client_cert,
          clientKey: spec.client_key,
        },
      };
    case 'jwt':
      return { login: { method: 'jwt', path: spec.path ?? 'jwt', role: spec.role, tokenFile: spec.token_file } };
    case 'kubernetes':
      return {
        login: {
          method: 'kubernetes',
          path: spec.path ?? 'kubernetes',
          role: spec.role,
          tokenFile: spec.token_file ?? KUBERNETES_TOKEN_FILE,
        },
      };
  }
}

/** VAULTOPS_AUTH_<name> as a secret reference (a relative file: path is relative to the working directory). */
function envReference(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[`VAULTOPS_AUTH_${name}`];
  if (v === undefined || v === '') return undefined;
  if (!/^(env|file|cmd):.+/.test(v))
    throw new InputError(
      `VAULTOPS_AUTH_${name} must be a secret reference (env:NAME, file:PATH, cmd:COMMAND), not a value.`,
      {
        hint: `Put the value in a 0600 file and set VAULTOPS_AUTH_${name}=file:/etc/vaultops/${name.toLowerCase().replace('_', '-')}.`,
      },
    );
  return v.startsWith('file:') ? `file:${resolve(v.slice(5))}` : v;
}

/**
 * The login described by VAULTOPS_AUTH_METHOD and its companions, or undefined when it is unset.
 *   VAULTOPS_AUTH_METHOD       approle | cert | jwt | kubernetes | token
 *   VAULTOPS_AUTH_PATH         the mount (default: the method name)
 *   VAULTOPS_AUTH_ROLE_ID      approle: a secret reference (env:, file:, cmd:)
 *   VAULTOPS_AUTH_SECRET_ID    approle: a secret reference, never the value
 *   VAULTOPS_AUTH_ROLE         jwt / kubernetes: the role; cert: the certificate role name
 *   VAULTOPS_AUTH_TOKEN_FILE   jwt (required) / kubernetes (default: the service account token)
 *   VAULTOPS_AUTH_CLIENT_CERT, VAULTOPS_AUTH_CLIENT_KEY   cert (default: VAULT_CLIENT_CERT / _KEY)
 * `token` means VAULT_TOKEN / BAO_TOKEN or ~/.vault-token, as without the variable.
 */
export function authFromEnv(env: NodeJS.ProcessEnv = process.env): AuthSpec | undefined {
  const get = (name: string): string | undefined => {
    const v = env[`VAULTOPS_AUTH_${name}`];
    return v === undefined || v === '' ? undefined : v;
  };
  const method = get('METHOD');
  if (method === undefined) return undefined;
  const path = get('PATH');
  const need = (name: string, what: string): string => {
    const v = get(name);
    if (v === undefined)
      throw new InputError(`VAULTOPS_AUTH_METHOD=${method} needs VAULTOPS_AUTH_${name} (${what}).`, {
        hint: 'Set it in the environment of the job (systemd Environment=, the CronJob env), or use auth: in the inventory.',
      });
    return v;
  };
  const reference = (name: string, what: string): string => {
    need(name, what);
    return envReference(env, name)!;
  };
  const file = (v: string | undefined) => (v === undefined ? undefined : resolve(v));
  switch (method) {
    case 'token':
      return { method: 'token', token: '' };
    case 'approle':
      return {
        method: 'approle',
        path,
        role_id: reference('ROLE_ID', 'a reference to the role_id'),
        secret_id: reference('SECRET_ID', 'a reference to the secret_id'),
      };
    case 'cert': {
      const vaultEnv = readVaultEnv(env);
      const clientCert = file(get('CLIENT_CERT')) ?? vaultEnv.tls.clientCert;
      const clientKey = file(get('CLIENT_KEY')) ?? vaultEnv.tls.clientKey;
      if (clientCert === undefined || clientKey === undefined)
        throw new InputError('VAULTOPS_AUTH_METHOD=cert needs a client certificate and key.', {
          hint: 'Set VAULTOPS_AUTH_CLIENT_CERT and VAULTOPS_AUTH_CLIENT_KEY (or VAULT_CLIENT_CERT and VAULT_CLIENT_KEY).',
        });
      return { method: 'cert', path, name: get('ROLE'), client_cert: clientCert, client_key: clientKey };
    }
    case 'jwt':
      return {
        method: 'jwt',
        path,
        role: need('ROLE', 'the role to log in as'),
        token_file: file(need('TOKEN_FILE', 'the file holding the JWT'))!,
      };
    case 'kubernetes':
      return {
        method: 'kubernetes',
        path,
        role: need('ROLE', 'the role to log in as'),
        token_file: file(get('TOKEN_FILE')),
      };
    default:
      throw new InputError(`VAULTOPS_AUTH_METHOD=${method} is not a login vaultops knows.`, {
        hint: `Use one of ${AUTH_METHODS.join(', ')}.`,
      });
  }
}
