import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateAgeIdentity } from '../../../src/backup/crypto/age.js';
import { encryptionSpecFromFlags, sniffEncryption } from '../../../src/backup/crypto/encryption.js';
import { MANIFEST_FORMAT, parseManifest, storedFileOf } from '../../../src/backup/stores/manifest.js';
import { openStore } from '../../../src/backup/stores/store.js';

const dir = mkdtempSync(join(tmpdir(), 'vaultops-enc-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sha = (c: string) => c.repeat(64);
const oldManifest = {
  format: MANIFEST_FORMAT,
  file: 'c-20260101T000000Z.snap',
  reason: 'backup',
  cluster: { name: 'c' },
  leader: { node: 'n1', api_addr: 'https://127.0.0.1:8200' },
  raft: { index: 10, term: 2, servers: [] },
  size: 100,
  sha256: sha('a'),
  members: [],
  started_at: '2026-01-01T00:00:00Z',
  finished_at: '2026-01-01T00:00:01Z',
  duration_ms: 1000,
};

describe('manifests stay readable by every version', () => {
  it('a manifest written before encryption existed parses, and its stored file is the snapshot itself', () => {
    const m = parseManifest(JSON.stringify(oldManifest))!;
    expect(m.encryption).toBeUndefined();
    expect(storedFileOf(m)).toEqual({ size: 100, sha256: sha('a') });
  });

  it("an encrypted backup's manifest keeps the snapshot's size/sha256 and gives the stored file's separately", () => {
    const m = parseManifest(
      JSON.stringify({
        ...oldManifest,
        file: 'c.snap.age',
        encryption: { format: 'age', recipients: ['age1x'], stored_size: 180, stored_sha256: sha('b') },
      }),
    )!;
    expect(m.sha256).toBe(sha('a'));
    expect(storedFileOf(m)).toEqual({ size: 180, sha256: sha('b') });
  });
});

describe("a store's encrypt: and decrypt: in the inventory", () => {
  const { recipient } = generateAgeIdentity();

  it("age recipients and files resolve against the inventory's directory; the decrypt identity stays a reference", () => {
    const store = openStore(
      's',
      {
        type: 'dir',
        path: 'b',
        encrypt: { age: [recipient, 'keys/r.txt'] },
        decrypt: { identity: 'file:/etc/vaultops/age.key' },
      },
      dir,
    );
    expect(store.encryption).toEqual({ format: 'age', recipients: [recipient, join(dir, 'keys/r.txt')] });
    expect(store.decryption).toEqual({ identity: 'file:/etc/vaultops/age.key' });
  });

  it('refuses both formats at once, and an identity that is not a secret reference, without echoing it', () => {
    expect(() =>
      openStore('s', { type: 'dir', path: 'b', encrypt: { age: [recipient], openpgp: ['k.asc'] } }, dir),
    ).toThrow(/not valid/);
    const secret = 'AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ';
    let message = '';
    try {
      openStore('s', { type: 'dir', path: 'b', decrypt: { identity: secret } }, dir);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/decrypt\.identity: a secret reference/);
    expect(message).not.toContain(secret);
  });
});

describe('--encrypt-to takes public recipients only, of one format', () => {
  it('tells age recipients, age recipient files and OpenPGP key files apart', () => {
    const { recipient } = generateAgeIdentity();
    writeFileSync(join(dir, 'r.txt'), `# ops\n${recipient}\n`);
    writeFileSync(join(dir, 'k.asc'), '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n');
    expect(encryptionSpecFromFlags([recipient, 'r.txt'], dir)).toEqual({
      format: 'age',
      recipients: [recipient, join(dir, 'r.txt')],
    });
    expect(encryptionSpecFromFlags(['k.asc'], dir)).toEqual({ format: 'openpgp', recipients: [join(dir, 'k.asc')] });
    expect(() => encryptionSpecFromFlags([recipient, 'k.asc'], dir)).toThrow(/mixes age recipients and OpenPGP keys/);
  });

  it('refuses a secret key on the command line', () => {
    const { identity } = generateAgeIdentity();
    expect(() => encryptionSpecFromFlags([identity], dir)).toThrow(/secret key/);
  });
});

describe('encrypted files are told from snapshots by their first bytes', () => {
  it('age, armored age, binary and armored OpenPGP, and gzip', () => {
    expect(sniffEncryption(Buffer.from('age-encryption.org/v1\n-> X25519 abc'))).toEqual({
      format: 'age',
      armored: false,
    });
    expect(sniffEncryption(Buffer.from('-----BEGIN AGE ENCRYPTED FILE-----\n'))).toEqual({
      format: 'age',
      armored: true,
    });
    expect(sniffEncryption(Buffer.from('-----BEGIN PGP MESSAGE-----\n'))).toEqual({ format: 'openpgp', armored: true });
    expect(sniffEncryption(Buffer.from([0x85, 0x01, 0x8c]))).toEqual({ format: 'openpgp', armored: false }); // gpg: old-format PKESK
    expect(sniffEncryption(Buffer.from([0xc1, 0x8c]))).toEqual({ format: 'openpgp', armored: false }); // openpgp.js: new-format PKESK
    expect(sniffEncryption(Buffer.from([0x1f, 0x8b, 0x08]))).toBeUndefined();
  });
});
