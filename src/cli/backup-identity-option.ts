import { InputError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import { identityLoader, type IdentityLoader } from '../backup/crypto/encryption.js';
import type { BackupStore } from '../backup/stores/store.js';
import { resolveSecretString } from '../secrets/refs.js';
import type { Prompter } from '../core/prompter.js';

export interface IdentityOptions {
  identity?: string | undefined;
  identityPassphrase?: string | undefined;
}

const REFERENCE = /^(env|file|prompt|cmd):./;

/**
 * The identity that opens encrypted backups: `--identity REF` (and `--identity-passphrase REF`),
 * else the store's `decrypt:` references. Only references are accepted on the command line: a key
 * pasted into argv would sit in the shell history and in `ps` for everyone. Nothing is resolved
 * here; the loader resolves the reference the first time an encrypted file needs it.
 */
export function identityFromOptions(
  o: IdentityOptions,
  store?: BackupStore,
  prompter?: Prompter,
): IdentityLoader | undefined {
  for (const [flag, value] of [
    ['--identity', o.identity],
    ['--identity-passphrase', o.identityPassphrase],
  ] as const) {
    if (value !== undefined && !REFERENCE.test(value)) {
      redactor.add(value);
      throw new InputError(`${flag} takes a secret reference, not the secret itself.`, {
        hint: `Use ${flag} file:PATH (mode 0600), env:NAME, cmd:COMMAND or prompt:LABEL; the value given was not printed and is masked in all output.`,
      });
    }
  }
  const ref = o.identity ?? store?.decryption?.identity;
  const passRef = o.identityPassphrase ?? (o.identity === undefined ? store?.decryption?.passphrase : undefined);
  if (ref === undefined) return undefined;
  const ask = prompter
    ? { askSecret: (label: string) => prompter.secret({ message: label, source: '--identity file:PATH or env:NAME' }) }
    : undefined;
  return identityLoader(async () => ({
    text: await resolveSecretString(ref, ask),
    passphrase: passRef === undefined ? undefined : await resolveSecretString(passRef, ask),
    source: ref,
  }));
}
