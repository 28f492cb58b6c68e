import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { VaultopsError } from '../../core/errors.js';
import {
  createDecryptStage,
  hashTap,
  READ_CHUNK,
  sniffFile,
  type EncryptedFormat,
  type IdentityLoader,
} from '../crypto/encryption.js';
import { WrongIdentityError } from '../crypto/encryption-errors.js';
import { parseManifest, type Manifest } from './manifest.js';
import {
  createSnapshotVerifier,
  UNHURRIED_GC,
  SnapshotInvalidError,
  verifySnapshotFile,
  type VerifiedSnapshot,
} from './snapshot-verify.js';

export interface CheckedFile {
  verified?: VerifiedSnapshot | undefined;
  manifest?: Manifest | undefined;
  problems: string[];
  /** Set when the file is encrypted: what was checked of the stored file, and whether its contents were. */
  encryption?:
    (EncryptedFormat & { stored_size: number; stored_sha256: string; contents_checked: boolean }) | undefined;
}

export interface CheckOptions {
  /** Opens encrypted files; without it an encrypted file is checked only as stored (sidecar, manifest). */
  identity?: IdentityLoader | undefined;
}

/**
 * Verifies the snapshot and compares it with its manifest (`<file>.json`) and sidecar (`<file>.sha256`).
 * An encrypted file (age or OpenPGP, told by its first bytes) is decrypted while it streams into the
 * verifier, and the stored bytes are hashed on the way for the sidecar; without an identity only the
 * stored bytes are checked and `encryption.contents_checked` is false.
 */
export async function checkFile(file: string, options: CheckOptions = {}): Promise<CheckedFile> {
  await stat(file).catch(() => {
    throw new VaultopsError(`Cannot read ${file}: no such file.`, {
      hint: 'Check the path; `vaultops backups list` shows what a store holds.',
    });
  });
  const problems: string[] = [];
  const manifestText = await readFile(`${file}.json`, 'utf8').catch(() => undefined);
  const manifest = manifestText === undefined ? undefined : parseManifest(manifestText);
  if (manifestText !== undefined && !manifest) problems.push(`${basename(file)}.json is not a vaultops manifest`);
  const sidecar = await readFile(`${file}.sha256`, 'utf8').catch(() => undefined);
  const sidecarSha = sidecar?.split(/\s+/)[0];
  const fmt = await sniffFile(file).catch(() => undefined);

  let verified: VerifiedSnapshot | undefined;
  let encryption: CheckedFile['encryption'];
  if (!fmt) {
    if (manifest?.encryption)
      problems.push(`the manifest says the file is ${manifest.encryption.format}-encrypted, but it is not`);
    try {
      verified = await verifySnapshotFile(file);
    } catch (e) {
      if (!(e instanceof SnapshotInvalidError)) throw e;
      problems.push(e.message);
    }
    if (sidecarSha !== undefined && verified && sidecarSha !== verified.sha256)
      problems.push(`sha256 differs from ${basename(file)}.sha256`);
  } else {
    if (manifest && !manifest.encryption)
      problems.push(`the file is ${fmt.format}-encrypted, but its manifest describes an unencrypted snapshot`);
    else if (manifest?.encryption && manifest.encryption.format !== fmt.format)
      problems.push(`the file is ${fmt.format}-encrypted, but its manifest says ${manifest.encryption.format}`);
    const tap = hashTap();
    let contentsChecked = false;
    if (options.identity) {
      const identity = await options.identity();
      const verifier = createSnapshotVerifier(UNHURRIED_GC);
      const sink = new Writable({ write: (_c, _e, cb) => cb() });
      try {
        await pipeline(
          createReadStream(file, { highWaterMark: READ_CHUNK }),
          tap.stream,
          createDecryptStage(fmt, identity),
          verifier.stream,
          sink,
        );
        verified = verifier.result();
        contentsChecked = true;
      } catch (e) {
        if (e instanceof WrongIdentityError) throw e;
        if (!(e instanceof SnapshotInvalidError)) throw e;
        problems.push(e.message);
        contentsChecked = true;
      }
    }
    if (!contentsChecked || !verified) {
      // Hash the stored bytes (again, if decryption stopped early) so the sidecar check is complete.
      const again = hashTap();
      await pipeline(createReadStream(file), again.stream, new Writable({ write: (_c, _e, cb) => cb() }));
      Object.assign(tap, again);
    }
    const stored = tap.digest();
    encryption = { ...fmt, stored_size: stored.size, stored_sha256: stored.sha256, contents_checked: contentsChecked };
    if (sidecarSha !== undefined && sidecarSha !== stored.sha256)
      problems.push(`the stored file's sha256 differs from ${basename(file)}.sha256`);
    if (manifest?.encryption && manifest.encryption.stored_sha256 !== stored.sha256)
      problems.push(
        `the stored file's sha256 ${stored.sha256} differs from the manifest's ${manifest.encryption.stored_sha256}`,
      );
    if (manifest?.encryption && manifest.encryption.stored_size !== stored.size)
      problems.push(
        `the stored file's size ${stored.size} differs from the manifest's ${manifest.encryption.stored_size}`,
      );
  }
  if (manifest && verified) {
    if (manifest.sha256 !== verified.sha256)
      problems.push(`sha256 ${verified.sha256} differs from the manifest's ${manifest.sha256}`);
    if (manifest.size !== verified.bytes)
      problems.push(`size ${verified.bytes} differs from the manifest's ${manifest.size}`);
    if (manifest.raft.index !== verified.meta.index)
      problems.push(`Raft index ${verified.meta.index} differs from the manifest's ${manifest.raft.index}`);
  }
  return { verified, manifest, problems, encryption };
}
