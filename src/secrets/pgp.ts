import { readFileSync } from 'node:fs';
import type * as Pgp from 'openpgp';
import { InputError } from '../core/errors.js';

/** openpgp.js is large: loaded on first use, so commands that never touch a PGP key never read it. */
let loaded: Promise<typeof Pgp> | undefined;
const loadOpenpgp = (): Promise<typeof Pgp> => (loaded ??= import('openpgp'));

export interface PgpPublicKey {
  /** Where it came from, for messages. */
  source: string;
  /** Upper-case hex fingerprint, as Vault reports it (lower-case there; compare case-insensitively). */
  fingerprint: string;
  /** What Vault wants in `pgp_key` / `pgp_keys`: base64 of the binary (unarmored) public key. */
  vaultBase64: string;
  key: Pgp.PublicKey;
}

/**
 * Reads an operator's public key: armored, binary, or already base64 (the form `vault operator`
 * accepts). Private keys are refused: a key holder's private key has no business on this machine.
 */
export async function readPublicKeyFile(path: string): Promise<PgpPublicKey> {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new InputError(`Cannot read the PGP public key ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'}).`, {
      hint: 'Export it with `gpg --export KEYID > key.gpg` (binary) or `gpg --export --armor`.',
    });
  }
  return parsePublicKey(bytes, path);
}

export async function parsePublicKey(bytes: Uint8Array, source: string): Promise<PgpPublicKey> {
  const openpgp = await loadOpenpgp();
  const text = Buffer.from(bytes).toString('utf8');
  let key: Pgp.Key;
  try {
    if (text.includes('-----BEGIN PGP')) key = await openpgp.readKey({ armoredKey: text });
    else if (/^[A-Za-z0-9+/=\s]+$/.test(text))
      key = await openpgp.readKey({ binaryKey: new Uint8Array(Buffer.from(text.replace(/\s+/g, ''), 'base64')) });
    else key = await openpgp.readKey({ binaryKey: new Uint8Array(bytes) });
  } catch (e) {
    throw new InputError(`${source} is not a PGP public key: ${(e as Error).message}.`, {
      hint: 'Give the file written by `gpg --export KEYID` (binary or --armor).',
    });
  }
  if (key.isPrivate())
    throw new InputError(`${source} holds a PGP *private* key.`, {
      hint: 'Give only the public key (`gpg --export`, not --export-secret-keys); the holder keeps the private key.',
    });
  const pub = key as Pgp.PublicKey;
  return {
    source,
    fingerprint: pub.getFingerprint().toUpperCase(),
    vaultBase64: Buffer.from(pub.write()).toString('base64'),
    key: pub,
  };
}

/** Turns a base64 PGP message as Vault returns it into an armored message a holder can `gpg -d`. */
export async function armorVaultCiphertext(base64: string): Promise<string> {
  const openpgp = await loadOpenpgp();
  const bytes = new Uint8Array(Buffer.from(base64, 'base64'));
  await openpgp.readMessage({ binaryMessage: bytes }); // refuse anything that is not a PGP message
  // message.armor() of a message read from bytes gives a stream in openpgp 6; armor the bytes.
  return openpgp.armor(openpgp.enums.armor.message, bytes);
}

/** Decrypts a base64 PGP message as Vault returns it (tests, and holders who keep keys in files). */
export async function decryptVaultCiphertext(
  base64: string,
  armoredPrivateKey: string,
  passphrase?: string,
): Promise<string> {
  const openpgp = await loadOpenpgp();
  let privateKey = await openpgp.readPrivateKey({ armoredKey: armoredPrivateKey });
  if (passphrase) privateKey = await openpgp.decryptKey({ privateKey, passphrase });
  const message = await openpgp.readMessage({ binaryMessage: new Uint8Array(Buffer.from(base64, 'base64')) });
  const { data } = await openpgp.decrypt({ message, decryptionKeys: privateKey, format: 'binary' });
  return Buffer.from(data as Uint8Array).toString('utf8');
}

export function sameFingerprint(a: string | undefined, b: string | undefined): boolean {
  return !!a && !!b && a.replace(/\s+/g, '').toLowerCase() === b.replace(/\s+/g, '').toLowerCase();
}
