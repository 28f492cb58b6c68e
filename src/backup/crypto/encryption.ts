import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { Transform, pipeline, type Duplex, type Readable } from 'node:stream';
import { z } from 'zod';
import { InputError } from '../../core/errors.js';
import { redactor } from '../../core/redact.js';
import {
  createAgeDecryptStream,
  createAgeEncryptStream,
  looksLikeAge,
  parseAgeIdentities,
  parseAgeRecipient,
  type AgeIdentity,
  type AgeRecipient,
} from './age.js';
import { WrongIdentityError } from './encryption-errors.js';
import {
  createPgpDecryptStream,
  createPgpEncryptStream,
  parsePgpIdentity,
  readPgpRecipients,
  type PgpIdentity,
  type PgpRecipient,
} from './openpgp-stream.js';

/** What a backup's manifest records about its encryption (the manifest's `encryption` field). */
export interface EncryptionRecord {
  format: 'age' | 'openpgp';
  recipients: string[];
  stored_size: number;
  stored_sha256: string;
}

/**
 * Encryption of backup files at rest: the store's `encrypt:` recipients (age or OpenPGP public
 * keys) on the way in, an identity (a secret reference, resolved only when a file needs it) on the
 * way out. The snapshot is verified in plaintext while it streams and encrypted after the verifier,
 * so no plaintext reaches the disk; restores decrypt while streaming too.
 */

export type EncryptionFormat = 'age' | 'openpgp';

/** Appended to `<name>.snap` for each format. */
export const ENCRYPTED_SUFFIX: Record<EncryptionFormat, string> = { age: '.age', openpgp: '.pgp' };

const secretRef = z
  .string()
  .regex(/^(env|file|prompt|cmd):./, 'a secret reference: env:NAME, file:PATH, prompt:LABEL or cmd:COMMAND');

export const encryptConfigSchema = z
  .union([
    z.strictObject({
      age: z
        .array(z.string().min(1))
        .min(1)
        .describe(
          'age recipients: `age1...` strings, or files of them (one a line, # comments), relative to the inventory.',
        ),
    }),
    z.strictObject({
      openpgp: z
        .array(z.string().min(1))
        .min(1)
        .describe('OpenPGP public key files (`gpg --export --armor KEYID`), relative to the inventory.'),
    }),
  ])
  .describe('Encrypt backup files at rest for these recipients; only public keys are needed here.');

export const decryptConfigSchema = z
  .strictObject({
    identity: secretRef.describe(
      "Secret reference to the age identity file or armored OpenPGP private key that opens this store's backups (restore, verify, drill).",
    ),
    passphrase: secretRef
      .optional()
      .describe("Secret reference to the OpenPGP private key's passphrase, if it has one."),
  })
  .describe('How restores, `backups verify` and drills open encrypted backups of this store.');

export type EncryptConfig = z.infer<typeof encryptConfigSchema>;
export type DecryptConfig = z.infer<typeof decryptConfigSchema>;

/** Recipients as configured: `age1...` strings and absolute file paths. */
export interface EncryptionSpec {
  format: EncryptionFormat;
  recipients: string[];
}

const localPath = (p: string, base: string) =>
  p === '~' || p.startsWith('~/') ? join(homedir(), p.slice(1)) : resolve(base, p);

/** The store's `encrypt:` with paths made absolute against `base` (the inventory's directory). */
export function encryptionSpecFromConfig(c: EncryptConfig, base: string): EncryptionSpec {
  if ('age' in c)
    return { format: 'age', recipients: c.age.map((r) => (r.startsWith('age1') ? r : localPath(r, base))) };
  return { format: 'openpgp', recipients: c.openpgp.map((r) => localPath(r, base)) };
}

/**
 * `--encrypt-to` values: `age1...` strings or files (of age recipients, or an OpenPGP public key).
 * All must be of one format.
 */
export function encryptionSpecFromFlags(values: readonly string[], base = process.cwd()): EncryptionSpec {
  const items = values.map((v) => {
    if (v.startsWith('age1')) return { format: 'age' as const, value: v };
    if (/^AGE-SECRET-KEY-/i.test(v) || /PRIVATE KEY/.test(v)) {
      redactor.add(v);
      throw new InputError(
        '--encrypt-to was given a secret key. Encryption needs only the public side; a secret never goes on a command line.',
        { hint: 'Pass the recipient (`age-keygen -y KEYFILE` prints it) or a public key file.' },
      );
    }
    const path = localPath(v, base);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new InputError(
        `--encrypt-to ${v}: neither an age recipient (age1...) nor a readable file (${(e as NodeJS.ErrnoException).code ?? 'error'}).`,
      );
    }
    return {
      format:
        /-----BEGIN PGP PUBLIC KEY BLOCK-----/.test(text) || !/age1/.test(text)
          ? ('openpgp' as const)
          : ('age' as const),
      value: path,
    };
  });
  const formats = new Set(items.map((i) => i.format));
  if (formats.size !== 1)
    throw new InputError('--encrypt-to mixes age recipients and OpenPGP keys; a backup is encrypted in one format.', {
      hint: 'Give only age recipients, or only OpenPGP public key files.',
    });
  return { format: items[0]!.format, recipients: items.map((i) => i.value) };
}

interface ResolvedRecipients {
  format: EncryptionFormat;
  age: AgeRecipient[];
  pgp: PgpRecipient[];
}

async function resolveRecipients(spec: EncryptionSpec): Promise<ResolvedRecipients> {
  const out: ResolvedRecipients = { format: spec.format, age: [], pgp: [] };
  for (const r of spec.recipients) {
    if (spec.format === 'openpgp') {
      out.pgp.push(...(await readPgpRecipients(r)));
      continue;
    }
    if (r.startsWith('age1')) {
      out.age.push(parseAgeRecipient(r));
      continue;
    }
    let text: string;
    try {
      text = readFileSync(r, 'utf8');
    } catch (e) {
      throw new InputError(
        `Cannot read the age recipients file ${r} (${(e as NodeJS.ErrnoException).code ?? 'error'}).`,
        { hint: 'Write the recipients (`age-keygen -y KEYFILE`) into it, one a line.' },
      );
    }
    if (/AGE-SECRET-KEY-/i.test(text)) {
      parseAgeIdentities(text, r); // registers the keys with the redactor before the error below
      throw new InputError(`${r} holds an age *identity* (secret key); encryption needs only recipients.`, {
        hint: `Write \`age-keygen -y ${r}\` into a recipients file and name that instead; keep the identity where restores run.`,
      });
    }
    text.split(/\r?\n/).forEach((line, i) => {
      const l = line.trim();
      if (l && !l.startsWith('#')) out.age.push(parseAgeRecipient(l, `${r}, line ${i + 1}`));
    });
  }
  if (out.age.length + out.pgp.length === 0)
    throw new InputError(`No ${spec.format} recipient in ${spec.recipients.join(', ')}.`);
  return out;
}

export interface EncryptStage {
  /** Appended to the file name (`.age`, `.pgp`). */
  suffix: string;
  /** Pipeline stages between the verifier and the store: the encryptor, then a hash of what is stored. */
  streams: Duplex[];
  /** What the manifest records; only after the pipeline finished. */
  result(): EncryptionRecord;
}

/** A pass-through that hashes and counts what flows by. */
export function hashTap(): { stream: Transform; digest: () => { sha256: string; size: number } } {
  const hash = createHash('sha256');
  let size = 0;
  let sha256: string | undefined;
  const stream = new Transform({
    transform(chunk: Buffer, _e, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  return { stream, digest: () => ({ sha256: (sha256 ??= hash.digest('hex')), size }) };
}

/** Builds the encryption stage for one backup (recipient files are read now, before any byte flows). */
export async function createEncryptStage(spec: EncryptionSpec): Promise<EncryptStage> {
  const r = await resolveRecipients(spec);
  const encryptor = r.format === 'age' ? createAgeEncryptStream(r.age) : await createPgpEncryptStream(r.pgp);
  const tap = hashTap();
  const recipients = r.format === 'age' ? r.age.map((x) => x.text) : r.pgp.map((x) => x.fingerprint);
  return {
    suffix: ENCRYPTED_SUFFIX[r.format],
    streams: [encryptor, tap.stream],
    result: () => {
      const d = tap.digest();
      return { format: r.format, recipients, stored_size: d.size, stored_sha256: d.sha256 };
    },
  };
}

/** Secret material read from a reference: an age identity file or an armored OpenPGP private key. */
export interface IdentityMaterial {
  text: string;
  passphrase?: string | undefined;
  /** The reference it came from, for messages (`file:/etc/vaultops/backup.key`). */
  source: string;
}

export interface DecryptionIdentity {
  source: string;
  age?: AgeIdentity[] | undefined;
  pgp?: PgpIdentity | undefined;
}

/** Resolves and parses an identity once, when a file first needs it. */
export type IdentityLoader = () => Promise<DecryptionIdentity>;

export async function parseIdentity(m: IdentityMaterial): Promise<DecryptionIdentity> {
  redactor.add(m.text, m.passphrase);
  if (m.text.includes('-----BEGIN PGP PRIVATE KEY BLOCK-----'))
    return { source: m.source, pgp: await parsePgpIdentity(m.text, m.passphrase, m.source) };
  if (/AGE-SECRET-KEY-1/i.test(m.text)) return { source: m.source, age: parseAgeIdentities(m.text, m.source) };
  if (m.text.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----'))
    throw new InputError(`${m.source} is an OpenPGP *public* key; decryption needs the private key.`, {
      hint: 'Point the reference at `gpg --export-secret-keys --armor KEYID` output (mode 0600).',
    });
  throw new InputError(
    `${m.source} is neither an age identity (AGE-SECRET-KEY-1...) nor an armored OpenPGP private key.`,
    { hint: 'Give the file `age-keygen -o` wrote, or `gpg --export-secret-keys --armor KEYID` output.' },
  );
}

/** Memoizes `load` + parse: the reference is resolved (and maybe prompted for) at most once. */
export function identityLoader(load: () => Promise<IdentityMaterial>): IdentityLoader {
  let p: Promise<DecryptionIdentity> | undefined;
  return () => (p ??= load().then(parseIdentity));
}

export interface EncryptedFormat {
  format: EncryptionFormat;
  armored: boolean;
}

/** What the first bytes of a file say: age, OpenPGP (binary or armored), or undefined (plaintext). */
export function sniffEncryption(start: Buffer): EncryptedFormat | undefined {
  const age = looksLikeAge(start);
  if (age) return { format: 'age', armored: age === 'armored' };
  if (start.subarray(0, 40).toString('latin1').startsWith('-----BEGIN PGP MESSAGE-----'))
    return { format: 'openpgp', armored: true };
  const b = start[0];
  if (b === undefined || (b & 0x80) === 0) return undefined;
  // An OpenPGP packet header: new format (bit 6) tag in the low 6 bits, old format in bits 5-2.
  // Encrypted messages start with a public-key (1) or symmetric (3) session key packet.
  const tag = b & 0x40 ? b & 0x3f : (b >> 2) & 0x0f;
  return tag === 1 || tag === 3 ? { format: 'openpgp', armored: false } : undefined;
}

export async function sniffFile(path: string): Promise<EncryptedFormat | undefined> {
  const h = await open(path, 'r');
  try {
    const buf = Buffer.alloc(64);
    const { bytesRead } = await h.read(buf, 0, 64, 0);
    return sniffEncryption(buf.subarray(0, bytesRead));
  } finally {
    await h.close();
  }
}

/** The decryptor for `fmt` with `identity`; an identity of the other format is a clear error. */
export function createDecryptStage(fmt: EncryptedFormat, identity: DecryptionIdentity): Duplex {
  if (fmt.format === 'age') {
    if (!identity.age)
      throw new WrongIdentityError(`This file is age-encrypted and ${identity.source} is an OpenPGP key.`, {
        hint: 'Give the age identity (AGE-SECRET-KEY-1...) of one of its recipients.',
      });
    return createAgeDecryptStream(identity.age);
  }
  if (!identity.pgp)
    throw new WrongIdentityError(`This file is OpenPGP-encrypted and ${identity.source} is an age identity.`, {
      hint: 'Give the armored OpenPGP private key of one of its recipients.',
    });
  return createPgpDecryptStream(identity.pgp, { armored: fmt.armored });
}

/** Encrypted files are read 1 MiB at a time: most age chunks are then slices, not copies. */
export const READ_CHUNK = 1 << 20;

/** The plaintext of an encrypted file, decrypted while it is read (nothing is written to disk). */
export function openDecrypted(path: string, fmt: EncryptedFormat, identity: DecryptionIdentity): Readable {
  const decryptor = createDecryptStage(fmt, identity);
  return pipeline(
    createReadStream(path, { highWaterMark: READ_CHUNK }),
    decryptor,
    () => undefined,
  ) as unknown as Readable;
}
