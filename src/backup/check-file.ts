import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { VaultopsError } from '../core/errors.js';
import { parseManifest, type Manifest } from './manifest.js';
import { SnapshotInvalidError, verifySnapshotFile, type VerifiedSnapshot } from './snapshot-verify.js';

export interface CheckedFile {
  verified?: VerifiedSnapshot | undefined;
  manifest?: Manifest | undefined;
  problems: string[];
}

/** Verifies the snapshot and compares it with its manifest (`<file>.json`) and sidecar (`<file>.sha256`). */
export async function checkFile(file: string): Promise<CheckedFile> {
  await stat(file).catch(() => {
    throw new VaultopsError(`Cannot read ${file}: no such file.`, { hint: 'Check the path; `vaultops backups list` shows what a store holds.' });
  });
  const problems: string[] = [];
  let verified: VerifiedSnapshot | undefined;
  try {
    verified = await verifySnapshotFile(file);
  } catch (e) {
    if (!(e instanceof SnapshotInvalidError)) throw e;
    problems.push(e.message);
  }
  const manifestText = await readFile(`${file}.json`, 'utf8').catch(() => undefined);
  const manifest = manifestText === undefined ? undefined : parseManifest(manifestText);
  if (manifestText !== undefined && !manifest) problems.push(`${basename(file)}.json is not a vaultops manifest`);
  if (manifest && verified) {
    if (manifest.sha256 !== verified.sha256) problems.push(`sha256 ${verified.sha256} differs from the manifest's ${manifest.sha256}`);
    if (manifest.size !== verified.bytes) problems.push(`size ${verified.bytes} differs from the manifest's ${manifest.size}`);
    if (manifest.raft.index !== verified.meta.index) problems.push(`Raft index ${verified.meta.index} differs from the manifest's ${manifest.raft.index}`);
  }
  const sidecar = await readFile(`${file}.sha256`, 'utf8').catch(() => undefined);
  if (sidecar !== undefined && verified && sidecar.split(/\s+/)[0] !== verified.sha256) problems.push(`sha256 differs from ${basename(file)}.sha256`);
  return { verified, manifest, problems };
}

