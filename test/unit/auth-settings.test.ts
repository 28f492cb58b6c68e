import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError } from '../../src/core/errors.js';
import { ProblemsError } from '../../src/core/problems-error.js';
import { parseInventory, selectCluster } from '../../src/inventory/load.js';
import { authFromEnv, resolveAuth } from '../../src/vault/auth-settings.js';
import { KUBERNETES_TOKEN_FILE } from '../../src/vault/login.js';

const dir = mkdtempSync(join(tmpdir(), 'vaultops-auth-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cluster(auth: string, extra = ''): string {
  return `clusters:\n  prod:\n${extra}    auth: ${auth}\n    nodes:\n      - { name: n1, api_addr: "https://10.0.0.1:8200" }\n`;
}

function problems(text: string): string {
  try {
    parseInventory(join(dir, 'inv.yml'), text);
  } catch (e) {
    expect(e).toBeInstanceOf(ProblemsError);
    return (e as ProblemsError).details.join('\n');
  }
  throw new Error('accepted');
}

describe('auth: in the inventory', () => {
  it('resolves every login file and file: reference against the inventory file, as cron needs', () => {
    const jwt = selectCluster(
      parseInventory('/etc/vaultops/inv.yml', cluster('{ method: jwt, role: backup, token_file: jwt.token }')),
      undefined,
    ).spec.auth;
    expect(jwt).toEqual({ method: 'jwt', role: 'backup', token_file: '/etc/vaultops/jwt.token' });
    const approle = selectCluster(
      parseInventory(
        '/etc/vaultops/inv.yml',
        cluster('{ method: approle, role_id: "file:ids.json#role_id", secret_id: "env:SECRET_ID" }'),
      ),
      undefined,
    ).spec.auth;
    expect(approle).toMatchObject({ role_id: 'file:/etc/vaultops/ids.json#role_id', secret_id: 'env:SECRET_ID' });
    const cert = selectCluster(
      parseInventory('/etc/vaultops/inv.yml', cluster('{ method: cert, client_cert: c.pem, client_key: c.key }')),
      undefined,
    ).spec.auth;
    expect(cert).toMatchObject({ client_cert: '/etc/vaultops/c.pem', client_key: '/etc/vaultops/c.key' });
  });

  it('refuses a secret_id written in clear, token: next to auth:, and a certificate login without a certificate', () => {
    expect(problems(cluster('{ method: approle, role_id: "file:r", secret_id: 0a1b2c3d-s3cr3t }'))).toMatch(
      /secret reference/,
    );
    expect(
      problems(cluster('{ method: approle, role_id: "file:r", secret_id: "file:s" }', '    token: env:T\n')),
    ).toMatch(/both token: and auth:/);
    expect(problems(cluster('{ method: cert }'))).toMatch(/logs in with a TLS certificate but names none/);
    expect(problems(cluster('{ method: ldap }'))).toMatch(/method/);
  });
});

describe('resolveAuth', () => {
  it('resolves the AppRole references before the first request, and a systemd credential wins over the inventory', async () => {
    const roleFile = join(dir, 'role-id');
    const secretFile = join(dir, 'secret-id');
    const credential = join(dir, 'credential');
    writeFileSync(roleFile, 'role-123\n', { mode: 0o600 });
    writeFileSync(secretFile, 'secret-456\n', { mode: 0o600 });
    writeFileSync(credential, 'secret-789\n', { mode: 0o400 });
    const auth = { method: 'approle' as const, role_id: `file:${roleFile}`, secret_id: `file:${secretFile}` };
    expect((await resolveAuth({ auth, env: {} })).login).toMatchObject({
      method: 'approle',
      path: 'approle',
      roleId: 'role-123',
      secretId: 'secret-456',
    });
    expect((await resolveAuth({ auth, env: { VAULTOPS_AUTH_SECRET_ID: `file:${credential}` } })).login).toMatchObject({
      secretId: 'secret-789',
      secretIdRef: `file:${credential}`,
    });
  });

  it('keeps the CLIs’ order without a login: VAULT_TOKEN, then ~/.vault-token', async () => {
    expect(await resolveAuth({ env: { VAULT_TOKEN: 'hvs.from-env', HOME: dir } })).toEqual({ token: 'hvs.from-env' });
    writeFileSync(join(dir, '.vault-token'), 'hvs.from-file\n', { mode: 0o600 });
    expect(await resolveAuth({ env: { HOME: dir } })).toEqual({ token: 'hvs.from-file' });
  });
});

describe('VAULTOPS_AUTH_* for single-cluster commands', () => {
  it('describe a Kubernetes login with the service account token by default', () => {
    expect(authFromEnv({ VAULTOPS_AUTH_METHOD: 'kubernetes', VAULTOPS_AUTH_ROLE: 'backup' })).toEqual({
      method: 'kubernetes',
      path: undefined,
      role: 'backup',
      token_file: undefined,
    });
    expect(KUBERNETES_TOKEN_FILE).toBe('/var/run/secrets/kubernetes.io/serviceaccount/token');
  });

  it('refuse a secret_id given as a value, without echoing it, and name what is missing', () => {
    const secret = 'f00dfeed-clear-secret';
    let err: unknown;
    try {
      authFromEnv({ VAULTOPS_AUTH_METHOD: 'approle', VAULTOPS_AUTH_ROLE_ID: 'env:R', VAULTOPS_AUTH_SECRET_ID: secret });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).message).toMatch(/VAULTOPS_AUTH_SECRET_ID must be a secret reference/);
    expect(`${(err as InputError).message} ${(err as InputError).hint}`).not.toContain(secret);
    expect(() => authFromEnv({ VAULTOPS_AUTH_METHOD: 'jwt', VAULTOPS_AUTH_ROLE: 'r' })).toThrow(
      /needs VAULTOPS_AUTH_TOKEN_FILE/,
    );
    expect(() => authFromEnv({ VAULTOPS_AUTH_METHOD: 'ldap' })).toThrow(/not a login vaultops knows/);
  });
});
