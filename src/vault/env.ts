import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { TlsSettings } from './tls.js';
import { parseDuration } from '../core/duration.js';

/**
 * The environment variables the official CLIs read. OpenBao's `bao` reads BAO_* first and falls
 * back to VAULT_*; we do the same, so one shell set up for either CLI works for vaultops.
 */
export interface VaultEnv {
  addr?: string | undefined;
  token?: string | undefined;
  namespace?: string | undefined;
  tls: TlsSettings;
  timeoutMs?: number | undefined;
  maxRetries?: number | undefined;
}

export function readVaultEnv(env: NodeJS.ProcessEnv = process.env): VaultEnv {
  // An empty variable counts as unset, so an empty BAO_X still falls back to VAULT_X (as bao does).
  const set = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);
  const get = (name: string): string | undefined => set(env[`BAO_${name}`]) ?? set(env[`VAULT_${name}`]);
  const skip = get('SKIP_VERIFY');
  const timeout = get('CLIENT_TIMEOUT');
  const retries = get('MAX_RETRIES');
  return {
    addr: get('ADDR'),
    token: get('TOKEN'),
    namespace: get('NAMESPACE'),
    tls: {
      caCert: get('CACERT'),
      clientCert: get('CLIENT_CERT'),
      clientKey: get('CLIENT_KEY'),
      serverName: get('TLS_SERVER_NAME'),
      // node-vault treats any non-empty value, even "false", as "skip"; the Go CLI parses a bool.
      skipVerify: skip === undefined ? undefined : parseBool(skip),
    },
    timeoutMs: timeout === undefined ? undefined : parseDuration(timeout),
    maxRetries: retries === undefined ? undefined : Number.parseInt(retries, 10),
  };
}

/**
 * The token the official CLIs use when VAULT_TOKEN / BAO_TOKEN is unset: the one `vault login` /
 * `bao login` saved in ~/.vault-token (both CLIs' built-in token helper; $HOME decides where ~ is).
 * Surrounding whitespace is dropped, as the CLIs do. Undefined when there is no such file.
 */
export function readTokenFile(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const file = join(env['HOME'] || homedir(), '.vault-token');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const token = text.trim();
  return token === '' ? undefined : token;
}

export function parseBool(v: string): boolean {
  return ['1', 't', 'true', 'yes', 'y', 'on'].includes(v.trim().toLowerCase());
}
