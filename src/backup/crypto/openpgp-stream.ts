import { readFileSync } from 'node:fs';
import { Duplex } from 'node:stream';
import type * as Pgp from 'openpgp';
import { InputError } from '../../core/errors.js';
import { redactor } from '../../core/redact.js';
import { CiphertextDamagedError, WrongIdentityError } from './encryption-errors.js';

/** openpgp.js is ~20 MB of memory once loaded: only backups that use OpenPGP pay for it. */
let loaded: Promise<typeof Pgp> | undefined;
const loadOpenpgp = (): Promise<typeof Pgp> => (loaded ??= import('openpgp'));

/**
 * OpenPGP encryption of backups through the `openpgp` package's streaming API (web streams bridged
 * to node streams). Messages are SEIPD v1 with MDC and no compression (a snapshot is gzip already):
 * what `gpg` 2.2 and 2.4 both read. openpgp.js holds a whole non-AEAD message in memory before it
 * hands out plaintext unless `allowUnauthenticatedStream` is set (seen: 750 MB RSS for a 300 MB
 * file); vaultops sets it, so the MDC check fails the stream at its end instead. That is safe here
 * because decrypted bytes only ever go to the snapshot verifier first, and a restore uploads only
 * after a complete decrypt-and-verify pass succeeded.
 */

export interface PgpRecipient {
  source: string;
  /** Upper-case hex fingerprint of the primary key (recorded in the manifest). */
  fingerprint: string;
  key: Pgp.PublicKey;
}

export interface PgpIdentity {
  keys: Pgp.PrivateKey[];
  fingerprints: string[];
}

const STREAM_CONFIG = { allowUnauthenticatedStream: true } as const;

/** Public keys from a file (armored or binary; a keyring export may hold several). Private keys are refused. */
export async function readPgpRecipients(path: string): Promise<PgpRecipient[]> {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new InputError(
      `Cannot read the OpenPGP public key ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'}).`,
      { hint: 'Export it with `gpg --export --armor KEYID > key.asc`.' },
    );
  }
  const text = bytes.toString('utf8');
  if (/-----BEGIN PGP PRIVATE KEY BLOCK-----/.test(text)) {
    redactor.add(text, ...armorLines(text));
    throw new InputError(`${path} holds an OpenPGP *private* key; backups are encrypted to public keys only.`, {
      hint: 'Give `gpg --export --armor KEYID` (not --export-secret-keys); keep the private key where restores run.',
    });
  }
  const openpgp = await loadOpenpgp();
  let keys: Pgp.Key[];
  try {
    keys = text.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----')
      ? await openpgp.readKeys({ armoredKeys: text })
      : await openpgp.readKeys({ binaryKeys: new Uint8Array(bytes) });
  } catch (e) {
    throw new InputError(`${path} is not an OpenPGP public key: ${(e as Error).message}.`, {
      hint: 'Give the file written by `gpg --export --armor KEYID`.',
    });
  }
  const out: PgpRecipient[] = [];
  for (const key of keys) {
    if (key.isPrivate())
      throw new InputError(`${path} holds an OpenPGP *private* key; backups are encrypted to public keys only.`, {
        hint: 'Give `gpg --export --armor KEYID` instead.',
      });
    const fingerprint = key.getFingerprint().toUpperCase();
    await key.getEncryptionKey().catch((e: unknown) => {
      throw new InputError(`OpenPGP key ${fingerprint} in ${path} cannot encrypt (${(e as Error).message}).`, {
        hint: 'Use a key with a valid, unexpired encryption subkey.',
      });
    });
    out.push({ source: path, fingerprint, key: key as Pgp.PublicKey });
  }
  return out;
}

/** The base64 lines of an armored block: each is registered with the redactor on its own. */
function armorLines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => /^[A-Za-z0-9+/=]{16,}$/.test(l));
}

/**
 * Reads armored (or binary) private keys and unlocks them with `passphrase`. The key text, every
 * line of it and the passphrase go to the redactor first.
 */
export async function parsePgpIdentity(
  text: string,
  passphrase: string | undefined,
  source = 'the identity',
): Promise<PgpIdentity> {
  redactor.add(text, ...armorLines(text), passphrase);
  const openpgp = await loadOpenpgp();
  let keys: Pgp.PrivateKey[];
  try {
    keys = await openpgp.readPrivateKeys({ armoredKeys: text });
  } catch {
    throw new InputError(`${source} is not an armored OpenPGP private key.`, {
      hint: 'Give `gpg --export-secret-keys --armor KEYID` output through a secret reference (file:PATH with mode 0600, env:NAME, cmd:...).',
    });
  }
  const unlocked: Pgp.PrivateKey[] = [];
  for (const k of keys) {
    if (k.isDecrypted()) {
      unlocked.push(k);
      continue;
    }
    if (!passphrase)
      throw new InputError(
        `OpenPGP key ${k.getFingerprint().toUpperCase()} in ${source} is protected by a passphrase and none was given.`,
        { hint: 'Give it with --identity-passphrase REF or `decrypt: { passphrase: REF }` on the store.' },
      );
    try {
      unlocked.push(await openpgp.decryptKey({ privateKey: k, passphrase }));
    } catch {
      throw new InputError(
        `The passphrase does not unlock OpenPGP key ${k.getFingerprint().toUpperCase()} in ${source}.`,
        { hint: 'Check the passphrase reference.' },
      );
    }
  }
  return { keys: unlocked, fingerprints: unlocked.map((k) => k.getFingerprint().toUpperCase()) };
}

/** A duplex that encrypts what is written to it for `recipients` (binary OpenPGP message). */
export async function createPgpEncryptStream(recipients: readonly PgpRecipient[]): Promise<Duplex> {
  const openpgp = await loadOpenpgp();
  // Copies what is written: the backup's writer reuses its buffers once a write is acknowledged,
  // and openpgp.js may still hold a chunk in its queues at that point.
  const input = new TransformStream<Uint8Array, Uint8Array>({
    transform: (chunk, controller) => controller.enqueue(chunk.slice()),
  });
  const message = await openpgp.createMessage({ binary: input.readable, format: 'binary' });
  const output = await openpgp.encrypt({ message, encryptionKeys: recipients.map((r) => r.key), format: 'binary' });
  return Duplex.fromWeb(
    { writable: input.writable, readable: output as ReadableStream<Uint8Array> },
    { objectMode: false },
  );
}

/**
 * A duplex that decrypts an OpenPGP message written to it. The session key is unwrapped once the
 * first packets are in; a key that opens none of them is a WrongIdentityError, a broken packet or
 * a failed MDC a CiphertextDamagedError (both fail the stream).
 */
export function createPgpDecryptStream(identity: PgpIdentity, options: { armored: boolean }): Duplex {
  const input = new TransformStream<Uint8Array, Uint8Array>();
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  const start = async (): Promise<ReadableStreamDefaultReader<Uint8Array>> => {
    const openpgp = await loadOpenpgp();
    let message: Pgp.Message<ReadableStream<Uint8Array | string>>;
    try {
      message = options.armored
        ? await openpgp.readMessage({ armoredMessage: input.readable.pipeThrough(new TextDecoderStream()) })
        : await openpgp.readMessage({ binaryMessage: input.readable });
    } catch (e) {
      throw new CiphertextDamagedError(`This is not a readable OpenPGP message (${(e as Error).message}).`, {
        cause: e,
      });
    }
    let data: ReadableStream<Uint8Array>;
    try {
      ({ data } = (await openpgp.decrypt({
        message,
        decryptionKeys: identity.keys,
        format: 'binary',
        config: STREAM_CONFIG,
      })) as { data: ReadableStream<Uint8Array> });
    } catch (e) {
      throw mapDecryptError(e, identity);
    }
    return data.getReader();
  };
  let started: Promise<ReadableStreamDefaultReader<Uint8Array>> | undefined;
  const output = new ReadableStream<Uint8Array>({
    async pull(controller) {
      started ??= start();
      try {
        reader ??= await started;
        const { value, done } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (e) {
        throw e instanceof WrongIdentityError || e instanceof CiphertextDamagedError ? e : mapDecryptError(e, identity);
      }
    },
    async cancel(reason) {
      await reader?.cancel(reason).catch(() => undefined);
      await input.readable.cancel(reason).catch(() => undefined);
    },
  });
  return Duplex.fromWeb({ writable: input.writable, readable: output }, { objectMode: false });
}

function mapDecryptError(e: unknown, identity: PgpIdentity): Error {
  const message = (e as Error).message ?? String(e);
  if (/session key decryption failed|no (decryption key|matching) packets|no decryption key/i.test(message)) {
    return new WrongIdentityError(
      `None of the given OpenPGP keys (${identity.fingerprints.join(', ')}) opens this file.`,
      {
        hint: 'Give the private key of one of the recipients it was encrypted to (the manifest lists their fingerprints: `vaultops backups inspect FILE`).',
      },
    );
  }
  if (/modification detected|mdc|authentication|integrity/i.test(message)) {
    return new CiphertextDamagedError(
      'The OpenPGP message fails its integrity check (MDC): the file was modified or truncated.',
      { cause: e },
    );
  }
  return new CiphertextDamagedError(
    `The OpenPGP message cannot be decrypted (${redactor.redact(message)}): the file is damaged or truncated.`,
    { cause: e },
  );
}
