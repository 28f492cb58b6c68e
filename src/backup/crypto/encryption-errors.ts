import { InputError, SnapshotInvalidError, VaultopsError } from '../../core/errors.js';

/**
 * The two ways decrypting a backup fails, kept apart because the operator does different things:
 * the wrong key (exit 2: give the right identity, the file may be fine) or a damaged file (exit 1:
 * do not restore it, take another backup).
 */
export class WrongIdentityError extends InputError {}

/** The ciphertext is modified, truncated or not what it claims to be. */
export class CiphertextDamagedError extends SnapshotInvalidError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, {
      hint: 'Do not restore this file: it was modified or cut short after it was written. Restore another backup (`vaultops backups list`), and check the copy path that brought it here.',
      ...options,
    });
  }
}

/** The file is encrypted but nothing here can open it (no identity given). */
export class IdentityNeededError extends InputError {}

export function isDecryptionError(e: unknown): e is VaultopsError {
  return e instanceof WrongIdentityError || e instanceof CiphertextDamagedError || e instanceof IdentityNeededError;
}
