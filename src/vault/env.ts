import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { TlsSettings } from './tls.js';

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

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/**
 * Durations as VAULT_CLIENT_TIMEOUT takes them (Vault's parseutil.ParseDurationSecond): bare
 * seconds ("60") or a Go duration ("60s", "2m", "500ms", "1m30s").
 */
export function parseDuration(v: string): number | undefined {
  const t = v.trim();
  if (/^\d+(?:\.\d+)?$/.test(t)) return Math.round(Number(t) * 1000);
  if (!/^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/.test(t)) return undefined;
  let total = 0;
  for (const m of t.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  return Math.round(total);
}
