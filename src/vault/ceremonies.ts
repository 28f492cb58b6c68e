import { VaultApiError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import { apiError, type VaultClient } from './client.js';

/**
 * Typed calls for the key ceremonies: root-token generation, rekey (unseal and recovery keys),
 * keyring rotation and the token-store calls a root hunt needs.
 *
 * Two families of paths exist for the same ceremonies:
 *  - `sys/generate-root/*`, `sys/rekey/*`, `sys/rekey-recovery-key/*`: Vault (unauthenticated up to
 *    1.21; token + shares from 2.0, CVE-2026-5807) and OpenBao before 2.5;
 *  - `sys/generate-root-token/*`, `sys/rotate/root/*`, `sys/rotate/recovery/*`: OpenBao >= 2.6, where
 *    the old paths answer "unsupported operation" by default (`disable_unauthed_generate_root_endpoints`,
 *    `disable_unauthed_rekey_endpoints`; openbao.org/docs/deprecation/unauthed-generate-root).
 * `detectCeremonyPaths` asks the server which one it serves. The token (when the client has one) is
 * always sent: harmless where it is not needed, required where it is.
 */
export interface CeremonyPaths {
  family: 'vault' | 'openbao-authenticated';
  generateRootAttempt: string;
  generateRootUpdate: string;
  rekeyInit: (target: RekeyTarget) => string;
  rekeyUpdate: (target: RekeyTarget) => string;
  rekeyVerify: (target: RekeyTarget) => string;
}

export type RekeyTarget = 'barrier' | 'recovery';

export const VAULT_PATHS: CeremonyPaths = {
  family: 'vault',
  generateRootAttempt: 'sys/generate-root/attempt',
  generateRootUpdate: 'sys/generate-root/update',
  rekeyInit: (t) => (t === 'barrier' ? 'sys/rekey/init' : 'sys/rekey-recovery-key/init'),
  rekeyUpdate: (t) => (t === 'barrier' ? 'sys/rekey/update' : 'sys/rekey-recovery-key/update'),
  rekeyVerify: (t) => (t === 'barrier' ? 'sys/rekey/verify' : 'sys/rekey-recovery-key/verify'),
};

export const OPENBAO_AUTH_PATHS: CeremonyPaths = {
  family: 'openbao-authenticated',
  generateRootAttempt: 'sys/generate-root-token/attempt',
  generateRootUpdate: 'sys/generate-root-token/update',
  rekeyInit: (t) => (t === 'barrier' ? 'sys/rotate/root/init' : 'sys/rotate/recovery/init'),
  rekeyUpdate: (t) => (t === 'barrier' ? 'sys/rotate/root/update' : 'sys/rotate/recovery/update'),
  rekeyVerify: (t) => (t === 'barrier' ? 'sys/rotate/root/verify' : 'sys/rotate/recovery/verify'),
};

export interface GenerateRootStatus {
  started: boolean;
  nonce: string;
  progress: number;
  required: number;
  complete: boolean;
  encoded_token?: string;
  encoded_root_token?: string;
  pgp_fingerprint?: string;
  otp?: string;
  otp_length: number;
}

export interface RekeyStatus {
  started: boolean;
  nonce: string;
  t: number;
  n: number;
  progress: number;
  required: number;
  pgp_fingerprints?: string[] | null;
  backup?: boolean;
  verification_required?: boolean;
  verification_nonce?: string;
}

export interface RekeyUpdateResult extends Partial<RekeyStatus> {
  complete?: boolean;
  keys?: string[];
  keys_base64?: string[];
  verification_nonce?: string;
}

export interface RekeyVerifyStatus {
  started?: boolean;
  nonce: string;
  t: number;
  n: number;
  progress: number;
  complete?: boolean;
}

export interface KeyStatus {
  term: number;
  install_time: string;
  encryptions?: number;
}

export interface TokenAccessorInfo {
  accessor: string;
  policies: string[];
  display_name: string;
  creation_time: number;
  path: string;
  orphan?: boolean;
  expire_time?: string | null;
  id?: string;
}

/** Asks the server which family of ceremony paths it serves (see CeremonyPaths). */
export async function detectCeremonyPaths(client: VaultClient): Promise<CeremonyPaths> {
  if (client.hasToken) {
    const res = await client.raw('GET', OPENBAO_AUTH_PATHS.generateRootAttempt);
    if (res.status === 200) return OPENBAO_AUTH_PATHS;
  }
  return VAULT_PATHS;
}

/** One call; 200/204 give the body (unwrapped from `data` where OpenBao's logical paths wrap it). */
async function call<R>(client: VaultClient, method: string, path: string, body?: unknown): Promise<R> {
  const res = await client.raw(method, `/${path}`, body === undefined ? undefined : JSON.stringify(body));
  if (res.status === 204) return {} as R;
  if (res.status !== 200)
    throw apiError(
      `${method} /${path}`,
      client.label,
      res.status,
      res.body,
      res.headers['location'] as string | undefined,
    );
  const text = res.body.toString('utf8');
  if (!text) return {} as R;
  const parsed = JSON.parse(text) as { data?: unknown };
  const value = (
    parsed.data !== undefined && parsed.data !== null && typeof parsed.data === 'object' ? parsed.data : parsed
  ) as R;
  return value;
}

// ---- root token generation ----

export function generateRootStatus(client: VaultClient, paths: CeremonyPaths): Promise<GenerateRootStatus> {
  return call(client, 'GET', paths.generateRootAttempt);
}

/** Starts an attempt. Exactly one of `otp` / `pgpKey` (base64 of the binary public key). */
export async function generateRootStart(
  client: VaultClient,
  paths: CeremonyPaths,
  start: { otp: string } | { pgpKey: string },
): Promise<GenerateRootStatus> {
  const body = 'otp' in start ? { otp: start.otp } : { pgp_key: start.pgpKey };
  const st = await call<GenerateRootStatus>(client, 'PUT', paths.generateRootAttempt, body);
  // We never ask the server to pick the OTP, but a server-generated one must not leak either.
  redactor.add(st.otp);
  return st;
}

/** Submits one share. The share is registered with the redactor before it leaves. */
export async function generateRootUpdate(
  client: VaultClient,
  paths: CeremonyPaths,
  key: string,
  nonce: string,
): Promise<GenerateRootStatus> {
  redactor.add(key);
  return call(client, 'PUT', paths.generateRootUpdate, { key, nonce });
}

/** Cancels. The nonce goes in the body: harmless where unused, and newer servers ask for it on cancels. */
export async function generateRootCancel(client: VaultClient, paths: CeremonyPaths, nonce?: string): Promise<void> {
  await call(client, 'DELETE', paths.generateRootAttempt, nonce ? { nonce } : {});
}

// ---- rekey ----

export function rekeyStatus(client: VaultClient, paths: CeremonyPaths, target: RekeyTarget): Promise<RekeyStatus> {
  return call(client, 'GET', paths.rekeyInit(target));
}

export function rekeyStart(
  client: VaultClient,
  paths: CeremonyPaths,
  target: RekeyTarget,
  request: {
    secret_shares: number;
    secret_threshold: number;
    pgp_keys?: string[];
    backup?: boolean;
    require_verification?: boolean;
  },
): Promise<RekeyStatus> {
  return call(client, 'PUT', paths.rekeyInit(target), request);
}

export async function rekeyUpdate(
  client: VaultClient,
  paths: CeremonyPaths,
  target: RekeyTarget,
  key: string,
  nonce: string,
): Promise<RekeyUpdateResult> {
  redactor.add(key);
  const res = await call<RekeyUpdateResult>(client, 'PUT', paths.rekeyUpdate(target), { key, nonce });
  // Without PGP these are the new shares in clear; with PGP they are ciphertext, still not for logs.
  redactor.add(...(res.keys ?? []), ...(res.keys_base64 ?? []));
  return res;
}

/**
 * Cancels a rekey. The nonce must be in a JSON body: patched Vault refuses a cancel without it for
 * 10 minutes (CVE-2025-4656) and a body-less DELETE answers 400 EOF (vault#31649).
 */
export async function rekeyCancel(
  client: VaultClient,
  paths: CeremonyPaths,
  target: RekeyTarget,
  nonce: string | undefined,
): Promise<void> {
  await call(client, 'DELETE', paths.rekeyInit(target), nonce ? { nonce } : {});
}

export function rekeyVerifyStatus(
  client: VaultClient,
  paths: CeremonyPaths,
  target: RekeyTarget,
): Promise<RekeyVerifyStatus> {
  return call(client, 'GET', paths.rekeyVerify(target));
}

export async function rekeyVerifyUpdate(
  client: VaultClient,
  paths: CeremonyPaths,
  target: RekeyTarget,
  key: string,
  nonce: string,
): Promise<RekeyVerifyStatus> {
  redactor.add(key);
  return call(client, 'PUT', paths.rekeyVerify(target), { key, nonce });
}

// ---- encryption key rotation ----

export function keyStatus(client: VaultClient): Promise<KeyStatus> {
  return call(client, 'GET', 'sys/key-status');
}

/** Rotates the barrier (keyring) key. OpenBao also serves `sys/rotate/keyring`; both accept `sys/rotate`. */
export async function rotateKeyring(client: VaultClient): Promise<void> {
  await call(client, 'PUT', 'sys/rotate', {});
}

// ---- token store (root hunt and revocation) ----

export async function listAccessors(client: VaultClient): Promise<string[]> {
  const res = await client.raw('GET', '/auth/token/accessors?list=true');
  if (res.status === 404) return [];
  if (res.status !== 200) throw apiError('LIST /auth/token/accessors', client.label, res.status, res.body);
  const parsed = JSON.parse(res.body.toString('utf8')) as { data?: { keys?: string[] } };
  return parsed.data?.keys ?? [];
}

/** Token details by accessor; the server leaves `id` empty, and we drop it anyway. */
export async function lookupAccessor(client: VaultClient, accessor: string): Promise<TokenAccessorInfo> {
  const info = await call<TokenAccessorInfo>(client, 'PUT', 'auth/token/lookup-accessor', { accessor });
  delete info.id;
  return { ...info, accessor: info.accessor || accessor, policies: info.policies ?? [] };
}

export async function revokeAccessor(client: VaultClient, accessor: string): Promise<void> {
  await call(client, 'PUT', 'auth/token/revoke-accessor', { accessor });
}

/** Revokes the client's own token (and its children). */
export async function revokeSelf(client: VaultClient): Promise<void> {
  await call(client, 'PUT', 'auth/token/revoke-self', {});
}

/** True when the server answered "permission denied"/bad token (403), the sign of a revoked token. */
export function isPermissionDenied(e: unknown): boolean {
  return e instanceof VaultApiError && e.status === 403;
}
