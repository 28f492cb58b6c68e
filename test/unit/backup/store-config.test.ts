import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { openStore } from '../../../src/backup/stores/store.js';

describe('backup store configuration', () => {
  it('every store in the commented example inventory opens (an operator copies it)', () => {
    const doc = parse(readFileSync('inventories/example.yml', 'utf8')) as {
      clusters: Record<string, { stores?: Record<string, Record<string, unknown>> }>;
    };
    const opened = Object.values(doc.clusters).flatMap((c) =>
      Object.entries(c.stores ?? {}).map(([n, raw]) => openStore(n, raw, 'inventories')),
    );
    expect(opened.map((s) => s.kind).sort()).toEqual(['dir', 's3']);
    for (const s of opened) s.close?.();
  });

  it('an S3 store refuses a secret key written into the inventory, without repeating it', () => {
    const literal = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
    const e = (() => {
      try {
        openStore(
          's3',
          {
            type: 's3',
            endpoint: 'https://s3.example.com',
            bucket: 'b-backups',
            access_key_id: 'AKIAEXAMPLE',
            secret_access_key: literal,
          },
          '/',
        );
      } catch (err) {
        return err as Error;
      }
      return undefined;
    })();
    expect(e?.message).toMatch(
      /secret_access_key: a secret reference \(env:NAME, file:PATH, cmd:COMMAND\), never the key itself/,
    );
    expect(e?.message).not.toContain(literal);
  });

  it('an S3 store names its location s3://bucket/prefix (messages, JSON, safety snapshots)', () => {
    const s = openStore(
      's3',
      {
        type: 's3',
        endpoint: 'http://127.0.0.1:9',
        bucket: 'vault-backups',
        prefix: 'prod/eu/',
        access_key_id: 'k',
        secret_access_key: 'file:keys/s3.secret',
      },
      '/etc/vaultops',
    );
    expect(s.location).toBe('s3://vault-backups/prod/eu');
    s.close?.();
  });
  it('an S3 store takes the AWS credential chain (no keys), a profile, SSE, retries and a checksum choice', () => {
    const s = openStore(
      's3',
      {
        type: 's3',
        bucket: 'vault-backups',
        region: 'eu-west-1',
        profile: 'backup',
        sse: 'aws:kms',
        kms_key_id: 'arn:aws:kms:eu-west-1:111122223333:key/example',
        max_attempts: 5,
        retry_mode: 'adaptive',
        checksum: 'SHA256',
        force_path_style: false,
      },
      '/',
    );
    expect(s.location).toBe('s3://vault-backups');
    s.close?.();
  });

  it('an S3 store refuses half a key pair, and kms_key_id without sse: aws:kms, naming the field', () => {
    const problem = (extra: Record<string, unknown>) => {
      try {
        openStore('s3', { type: 's3', bucket: 'vault-backups', ...extra }, '/');
      } catch (err) {
        return (err as Error).message;
      }
      return undefined;
    };
    expect(problem({ access_key_id: 'AKIAEXAMPLE' })).toMatch(
      /secret_access_key: give access_key_id and secret_access_key together/,
    );
    expect(problem({ secret_access_key: 'env:S3_SECRET' })).toMatch(/together, or neither/);
    expect(problem({ sse: 'AES256', kms_key_id: 'k' })).toMatch(/kms_key_id: kms_key_id needs sse: aws:kms/);
    expect(problem({ checksum: 'MD5' })).toMatch(/checksum/);
  });
});
