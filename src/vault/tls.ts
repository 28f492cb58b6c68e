import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { InputError } from '../core/errors.js';

/** TLS settings for talking to Vault, as the official CLIs take them (files, not contents). */
export interface TlsSettings {
  /** PEM file with the CA that signed the server certificates (VAULT_CACERT). */
  caCert?: string | undefined;
  /** Client certificate and key for mTLS listeners (VAULT_CLIENT_CERT / VAULT_CLIENT_KEY). */
  clientCert?: string | undefined;
  clientKey?: string | undefined;
  /** SNI / name to verify instead of the host of the address (VAULT_TLS_SERVER_NAME). */
  serverName?: string | undefined;
  /** Do not verify the server certificate (VAULT_SKIP_VERIFY). For debugging only. */
  skipVerify?: boolean | undefined;
  /** Where skipVerify came from, for the warning ("VAULT_SKIP_VERIFY", "tls.skip_verify in the inventory"). */
  skipVerifySource?: string | undefined;
}

export interface LoadedTls {
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
  rejectUnauthorized: boolean;
  /** Subject of the CA we expect, for error messages that say what was expected. */
  expectedIssuer?: string;
}

const cache = new Map<string, LoadedTls>();

const warned = new Set<string>();

/**
 * One line on stderr, once per process: these warnings are for the person reading a cron mail or a
 * terminal, and say what is weaker than it should be on every run that uses it.
 */
export function warnOnce(message: string): void {
  if (warned.has(message)) return;
  warned.add(message);
  process.stderr.write(`warning: ${message}\n`);
}

/** Warns that `url` is plain HTTP (tokens, unseal keys and snapshots cross the network in clear). */
export function warnPlainHttp(url: URL, what = 'Vault address'): void {
  if (url.protocol === 'http:')
    warnOnce(
      `${what} ${url.origin} is plain HTTP: tokens, unseal keys and snapshots sent to it are not encrypted in transit; use https:// outside a lab.`,
    );
}

/** The variable or setting that turned verification off, when the caller did not say. */
function skipSource(settings: TlsSettings): string {
  if (settings.skipVerifySource) return settings.skipVerifySource;
  const env = (n: string) => process.env[n] !== undefined && process.env[n] !== '';
  if (env('BAO_SKIP_VERIFY')) return 'BAO_SKIP_VERIFY';
  if (env('VAULT_SKIP_VERIFY')) return 'VAULT_SKIP_VERIFY';
  return 'tls.skip_verify in the inventory';
}

export function loadTls(settings: TlsSettings | undefined): LoadedTls {
  if (settings?.skipVerify) {
    warnOnce(
      `TLS certificate verification is off (${skipSource(settings)}): any server, or anyone in between, can pose as Vault and receive the token and unseal keys. Debugging only.`,
    );
  }
  const key = JSON.stringify(settings ?? {});
  const hit = cache.get(key);
  if (hit) return hit;
  const loaded: LoadedTls = { rejectUnauthorized: !(settings?.skipVerify ?? false) };
  if (settings?.caCert) {
    loaded.ca = readPem(settings.caCert, 'CA certificate', 'tls.ca_cert (or VAULT_CACERT)');
    try {
      loaded.expectedIssuer = new X509Certificate(loaded.ca).subject.replace(/\n/g, ', ');
    } catch {
      throw new InputError(`${settings.caCert} is not a PEM certificate.`, {
        hint: 'Point tls.ca_cert (or VAULT_CACERT) at the PEM file of the CA that signed the Vault server certificates.',
      });
    }
  }
  if (settings?.clientCert || settings?.clientKey) {
    if (!settings.clientCert || !settings.clientKey) {
      throw new InputError('A client certificate needs both a certificate and a key.', {
        hint: 'Set both tls.client_cert and tls.client_key (or VAULT_CLIENT_CERT and VAULT_CLIENT_KEY).',
      });
    }
    loaded.cert = readPem(settings.clientCert, 'client certificate', 'tls.client_cert');
    loaded.key = readPem(settings.clientKey, 'client key', 'tls.client_key');
  }
  if (settings?.serverName) loaded.servername = settings.serverName;
  cache.set(key, loaded);
  return loaded;
}

function readPem(path: string, what: string, setting: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new InputError(`Cannot read the ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}.`, {
      hint: `Check ${setting}; the file must exist and be readable by this user.`,
    });
  }
}
