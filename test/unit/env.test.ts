import { describe, expect, it } from 'vitest';
import { parseBool, readVaultEnv } from '../../src/vault/env.js';
import { parseDuration } from '../../src/core/duration.js';

describe('VAULT_* and BAO_* variables are read as the official CLIs read them', () => {
  it('reads the VAULT_* set', () => {
    const e = readVaultEnv({
      VAULT_ADDR: 'https://10.0.0.1:8200',
      VAULT_TOKEN: 'hvs.example-token',
      VAULT_NAMESPACE: 'team-a',
      VAULT_CACERT: '/etc/vault/ca.pem',
      VAULT_CLIENT_CERT: '/etc/vault/client.pem',
      VAULT_CLIENT_KEY: '/etc/vault/client.key',
      VAULT_TLS_SERVER_NAME: 'vault.internal',
      VAULT_MAX_RETRIES: '4',
    });
    expect(e).toMatchObject({
      addr: 'https://10.0.0.1:8200',
      token: 'hvs.example-token',
      namespace: 'team-a',
      tls: {
        caCert: '/etc/vault/ca.pem',
        clientCert: '/etc/vault/client.pem',
        clientKey: '/etc/vault/client.key',
        serverName: 'vault.internal',
      },
      maxRetries: 4,
    });
    expect(e.tls.skipVerify).toBeUndefined();
    expect(e.timeoutMs).toBeUndefined();
  });

  it('BAO_* wins over VAULT_* when both are set', () => {
    const e = readVaultEnv({
      VAULT_ADDR: 'https://vault:8200',
      BAO_ADDR: 'https://bao:8200',
      VAULT_TOKEN: 'vault-token-1',
      BAO_TOKEN: 'bao-token-1',
      VAULT_CACERT: '/v.pem',
      BAO_CACERT: '/b.pem',
    });
    expect(e.addr).toBe('https://bao:8200');
    expect(e.token).toBe('bao-token-1');
    expect(e.tls.caCert).toBe('/b.pem');
  });

  it('an empty BAO_* falls back to VAULT_* (bao reads an empty variable as unset)', () => {
    const e = readVaultEnv({ BAO_ADDR: '', VAULT_ADDR: 'https://vault:8200' });
    expect(e.addr).toBe('https://vault:8200');
  });

  it('empty values count as unset', () => {
    const e = readVaultEnv({ VAULT_ADDR: '', VAULT_TOKEN: '' });
    expect(e.addr).toBeUndefined();
    expect(e.token).toBeUndefined();
  });

  it('VAULT_SKIP_VERIFY=false means verify (node-vault would skip on any non-empty value)', () => {
    expect(readVaultEnv({ VAULT_SKIP_VERIFY: 'false' }).tls.skipVerify).toBe(false);
    expect(readVaultEnv({ VAULT_SKIP_VERIFY: '0' }).tls.skipVerify).toBe(false);
    expect(readVaultEnv({ VAULT_SKIP_VERIFY: 'true' }).tls.skipVerify).toBe(true);
    expect(readVaultEnv({ VAULT_SKIP_VERIFY: '1' }).tls.skipVerify).toBe(true);
    expect(readVaultEnv({ BAO_SKIP_VERIFY: 'false', VAULT_SKIP_VERIFY: 'true' }).tls.skipVerify).toBe(false);
  });

  it('parses booleans as Go does for the common spellings', () => {
    for (const t of ['1', 't', 'T', 'true', 'TRUE', 'True']) expect(parseBool(t)).toBe(true);
    for (const f of ['0', 'f', 'F', 'false', 'FALSE', 'False']) expect(parseBool(f)).toBe(false);
  });

  it('VAULT_CLIENT_TIMEOUT takes bare seconds and Go durations', () => {
    expect(readVaultEnv({ VAULT_CLIENT_TIMEOUT: '60' }).timeoutMs).toBe(60_000);
    expect(readVaultEnv({ VAULT_CLIENT_TIMEOUT: '90s' }).timeoutMs).toBe(90_000);
    expect(readVaultEnv({ BAO_CLIENT_TIMEOUT: '2m' }).timeoutMs).toBe(120_000);
  });
});

describe('durations', () => {
  it.each<[string, number]>([
    ['60', 60_000],
    ['60s', 60_000],
    ['500ms', 500],
    ['1.5s', 1500],
    ['2m', 120_000],
    ['1h', 3_600_000],
    [' 10s ', 10_000],
    ['1m30s', 90_000],
  ])('%j is %i ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', 'soon', '10 s', '-5s', '5d', 's'])('%j is not a duration', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});
