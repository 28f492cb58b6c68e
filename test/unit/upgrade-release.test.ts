import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchVerifiedRelease, parseSums, type ReleaseRequest } from '../../src/upgrade/release.js';
import { HASHICORP_FINGERPRINT, HASHICORP_RELEASE_KEY } from '../../src/upgrade/release-keys.js';
import {
  makeSigningKeys,
  serveMirror,
  sha256Of,
  sign,
  writeRelease,
  type Mirror,
  type SigningKeys,
} from '../helpers/release-mirror.js';

/**
 * `upgrade --version`'s release check against a local mirror laid out like releases.hashicorp.com
 * and OpenBao's GitHub release downloads, signed with keys made here by the real gpg. The archives
 * hold a small stand-in "binary": what is checked here is the chain signature -> checksum list ->
 * archive -> extracted file, and that a failure anywhere leaves nothing behind to stage.
 */
const linux = { os: 'linux', arch: 'amd64' };
type Failure = Error & { hint?: string; exitCode?: number };
let keys: SigningKeys;
let root: string;
let work: string;
let mirror: Mirror;
let payload: string;

beforeAll(async () => {
  keys = makeSigningKeys();
  root = mkdtempSync(join(tmpdir(), 'vaultops-mirror-'));
  work = mkdtempSync(join(tmpdir(), 'vaultops-release-'));
  payload = join(work, 'payload');
  // Bigger than one tar block and not a multiple of 512, so the tar reader's padding is exercised.
  writeFileSync(payload, Buffer.concat([Buffer.from('#!/bin/sh\necho server\n'), Buffer.alloc(70_001, 7)]), {
    mode: 0o755,
  });
  mirror = await serveMirror(root);
}, 60_000);

afterAll(async () => {
  await mirror?.close();
  keys?.cleanup();
  rmSync(root, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

const req = (over: Partial<ReleaseRequest>): ReleaseRequest => ({
  flavor: 'openbao',
  version: '9.9.9',
  platform: linux,
  mirror: mirror.url,
  keyFile: keys.vendorKey,
  dir: mkdtempSync(join(work, 'dl-')),
  ...over,
});

describe('upgrade --version: the release is verified before anything is staged', () => {
  it('Vault layout: signed vault_<v>_SHA256SUMS, zip for linux/amd64 -> the vault binary, byte for byte', async () => {
    writeRelease(root, keys, { flavor: 'vault', version: '1.30.0', binary: payload });
    const r = await fetchVerifiedRelease(req({ flavor: 'vault', version: '1.30.0' }));
    expect(r.signer).toBe(keys.vendorFingerprint);
    expect(r.archiveUrl).toBe(`${mirror.url}/vault/1.30.0/vault_1.30.0_linux_amd64.zip`);
    expect(readFileSync(r.binary).equals(readFileSync(payload))).toBe(true);
    expect(r.sha256).toBe(sha256Of(payload));
  });

  it('OpenBao current layout: checksums.txt(.gpgsig), openbao_<v>_linux_amd64.tar.gz -> bao', async () => {
    writeRelease(root, keys, { flavor: 'openbao', version: '2.10.0', binary: payload });
    const r = await fetchVerifiedRelease(req({ version: '2.10.0' }));
    expect(r.sumsUrl).toBe(`${mirror.url}/v2.10.0/checksums.txt`);
    expect(r.archiveUrl).toBe(`${mirror.url}/v2.10.0/openbao_2.10.0_linux_amd64.tar.gz`);
    expect(readFileSync(r.binary).equals(readFileSync(payload))).toBe(true);
  });

  it('OpenBao GoReleaser layout: checksums-linux.txt(.gpgsig), bao_<v>_Linux_x86_64.tar.gz', async () => {
    writeRelease(root, keys, { flavor: 'openbao', version: '2.1.0', binary: payload, layout: 'goreleaser' });
    const r = await fetchVerifiedRelease(req({ version: '2.1.0' }));
    expect(r.sumsUrl).toBe(`${mirror.url}/v2.1.0/checksums-linux.txt`);
    expect(r.archiveUrl).toMatch(/bao_2\.1\.0_Linux_x86_64\.tar\.gz$/);
    expect(readFileSync(r.binary).equals(readFileSync(payload))).toBe(true);
  });

  it('a checksum list changed after signing is refused before the archive is downloaded', async () => {
    const rel = writeRelease(root, keys, { flavor: 'openbao', version: '3.0.1', binary: payload });
    writeFileSync(rel.sums, readFileSync(rel.sums, 'utf8').replace(/^0/, '1'));
    const dir = mkdtempSync(join(work, 'dl-'));
    mirror.requests.length = 0;
    await expect(fetchVerifiedRelease(req({ version: '3.0.1', dir }))).rejects.toThrow(
      /signature .*checksums\.txt\.gpgsig does not verify over .*nothing staged/,
    );
    expect(mirror.requests.some((p) => p.endsWith('.tar.gz'))).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a list signed by another key is refused, naming the signer and the trusted key', async () => {
    writeRelease(root, keys, { flavor: 'openbao', version: '3.0.2', binary: payload, signer: 'other' });
    const e = await fetchVerifiedRelease(req({ version: '3.0.2' })).then(
      () => ({}) as Failure,
      (x: Failure) => x,
    );
    expect(e).toBeInstanceOf(Error);
    expect(e.message).toMatch(
      new RegExp(`signed by key [0-9A-F]{16}, not by ${keys.vendorKey.replace(/[.]/g, '\\.')}`),
    );
    expect(e.hint).toMatch(/--release-key/);
  });

  it('the bundled HashiCorp key is what a Vault release is checked against by default (a test key is refused)', async () => {
    writeRelease(root, keys, { flavor: 'vault', version: '1.30.1', binary: payload });
    await expect(fetchVerifiedRelease(req({ flavor: 'vault', version: '1.30.1', keyFile: undefined }))).rejects.toThrow(
      new RegExp(`not by HashiCorp's release key ${HASHICORP_FINGERPRINT}`),
    );
  });

  it('an archive whose sha256 differs from the signed list is refused and deleted', async () => {
    const rel = writeRelease(root, keys, { flavor: 'openbao', version: '3.0.3', binary: payload });
    writeFileSync(rel.archive, Buffer.concat([readFileSync(rel.archive), Buffer.from('x')]));
    const dir = mkdtempSync(join(work, 'dl-'));
    await expect(fetchVerifiedRelease(req({ version: '3.0.3', dir }))).rejects.toThrow(
      /has sha256 [0-9a-f]{64}, but the signed checksum list says [0-9a-f]{64}: refused and deleted, nothing staged/,
    );
    expect(readdirSync(join(dir, 'openbao', '3.0.3'))).toEqual([]);
  });

  it('a missing signature file is refused (an unsigned list is not trusted)', async () => {
    const rel = writeRelease(root, keys, { flavor: 'openbao', version: '3.0.4', binary: payload });
    rmSync(rel.sig);
    await expect(fetchVerifiedRelease(req({ version: '3.0.4' }))).rejects.toThrow(
      /checksums\.txt\.gpgsig is missing: an unsigned checksum list is refused, nothing staged/,
    );
  });

  it('a version the mirror does not have names the URLs it tried', async () => {
    const e = await fetchVerifiedRelease(req({ version: '7.7.7' })).then(
      () => ({}) as Failure,
      (x: Failure) => x,
    );
    expect(e.message).toContain(`${mirror.url}/v7.7.7/checksums.txt and ${mirror.url}/v7.7.7/checksums-linux.txt`);
    expect(e.hint).toMatch(/--release-mirror/);
  });

  it('a release without an archive for the nodes platform says so', async () => {
    writeRelease(root, keys, { flavor: 'openbao', version: '3.0.5', binary: payload });
    await expect(
      fetchVerifiedRelease(req({ version: '3.0.5', platform: { os: 'linux', arch: 's390x' } })),
    ).rejects.toThrow(/names no archive for linux\/s390x/);
  });

  it('an unreachable mirror is an unreachable error that points at --release-mirror', async () => {
    // A port that was free a moment ago: nothing listens there.
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const e = await fetchVerifiedRelease(req({ mirror: `http://127.0.0.1:${port}` })).then(
      () => ({}) as Failure,
      (x: Failure) => x,
    );
    expect(e.message).toMatch(/Cannot fetch http:\/\/127\.0\.0\.1:\d+\/v9\.9\.9\/checksums\.txt: ECONNREFUSED/);
    expect(e.hint).toMatch(/--release-mirror/);
    expect(e.exitCode).toBe(3);
  });

  it('OpenBao without --release-key says where the key is and which fingerprint to expect', async () => {
    await expect(fetchVerifiedRelease(req({ keyFile: undefined }))).rejects.toMatchObject({
      message: expect.stringMatching(/--release-key FILE/),
      hint: expect.stringMatching(/openbao-gpg-pub-20240618\.asc.*66D15FDD87287219C8E15478D200CD702853E6D0/),
    });
  });

  it('a later run reuses the verified archive, but still checks the signature first', async () => {
    writeRelease(root, keys, { flavor: 'openbao', version: '3.0.6', binary: payload });
    const dir = mkdtempSync(join(work, 'dl-'));
    await fetchVerifiedRelease(req({ version: '3.0.6', dir }));
    mirror.requests.length = 0;
    const again = await fetchVerifiedRelease(req({ version: '3.0.6', dir }));
    expect(mirror.requests).toEqual(['/v3.0.6/checksums.txt', '/v3.0.6/checksums.txt.gpgsig']);
    expect(existsSync(again.binary)).toBe(true);
  });
});

describe('release keys and lists', () => {
  it("the bundled HashiCorp key is HashiCorp's published key C874 011F 0AB4 0511 0D02 1055 3436 5D94 72D7 468F", async () => {
    const [key] = await openpgp.readKeys({ armoredKeys: HASHICORP_RELEASE_KEY });
    expect(key!.getFingerprint().toUpperCase()).toBe(HASHICORP_FINGERPRINT);
    expect(key!.users.map((u) => u.userID?.userID)).toContain(
      'HashiCorp Security (hashicorp.com/security) <security@hashicorp.com>',
    );
    // Its signing subkey must still be valid for signatures made now.
    expect(await key!.getSigningKey()).toBeTruthy();
  });

  it('parseSums reads sha256sum output, with or without the binary-mode "*" and "./"', () => {
    const a = 'a'.repeat(64);
    const b = 'B'.repeat(64);
    const m = parseSums(`${a}  vault_1.0.0_linux_amd64.zip\n${b} *./openbao_1_linux_amd64.tar.gz\nnot a line\n`);
    expect(m.get('vault_1.0.0_linux_amd64.zip')).toBe(a);
    expect(m.get('openbao_1_linux_amd64.tar.gz')).toBe(b.toLowerCase());
    expect(m.size).toBe(2);
  });

  it('a detached signature made by gpg verifies through openpgp.js as release.ts calls it', async () => {
    // The same check with nothing of ours in between, as a guard on how openpgp.js is called.
    const f = join(work, 'list');
    writeFileSync(f, 'hello\n');
    sign(keys, 'vendor', f, `${f}.sig`);
    const key = await openpgp.readKey({ armoredKey: readFileSync(keys.vendorKey, 'utf8') });
    const signature = await openpgp.readSignature({ binarySignature: readFileSync(`${f}.sig`) });
    const ok = await openpgp.verify({
      message: await openpgp.createMessage({ binary: readFileSync(f) }),
      signature,
      verificationKeys: key,
    });
    await expect(ok.signatures[0]!.verified).resolves.toBe(true);
  });
});
