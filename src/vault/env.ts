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
  const get = (name: string): string | undefined => {
    const v = env[`BAO_${name}`] ?? env[`VAULT_${name}`];
    return v === undefined || v === '' ? undefined : v;
  };
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

export function parseBool(v: string): boolean {
  return ['1', 't', 'true', 'yes', 'y', 'on'].includes(v.trim().toLowerCase());
}

/** Go-style durations as VAULT_CLIENT_TIMEOUT takes them: "60", "60s", "2m", "500ms". */
export function parseDuration(v: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return Math.round(n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit as 'ms' | 's' | 'm' | 'h']);
}
