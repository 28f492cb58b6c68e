import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { InputError } from '../../core/errors.js';
import { redactor } from '../../core/redact.js';
import { bech32Decode, bech32Encode } from './bech32.js';
import { CiphertextDamagedError, WrongIdentityError } from './encryption-errors.js';

/**
 * The age v1 file format (c2sp.org/age, age-encryption.org/v1) with X25519 recipients, on
 * node:crypto alone: a text header that wraps a random 16-byte file key for each recipient and
 * ends with an HMAC, then a 16-byte nonce and the payload in 64 KiB chunks, each sealed with
 * ChaCha20-Poly1305 under a STREAM nonce (11-byte big-endian counter || last-chunk flag). Both
 * directions stream with constant memory: at most two chunks are held. Files from `age -r` open
 * here and files from here open with `age -d`; armored (`age -a`) and passphrase (scrypt) files
 * are refused with a message saying so.
 */

export const AGE_VERSION_LINE = 'age-encryption.org/v1';
const ARMOR_BEGIN = '-----BEGIN AGE ENCRYPTED FILE-----';
const CHUNK = 64 * 1024;
const TAG = 16;
const CT_CHUNK = CHUNK + TAG;
const NONCE_BYTES = 16;
const X25519_INFO = 'age-encryption.org/v1/X25519';
/** Real headers are a few hundred bytes per recipient; anything this large is not an age file. */
const MAX_HEADER = 1 << 20;
// DER prefixes of raw 32-byte X25519 keys (RFC 8410): node:crypto imports keys as SPKI/PKCS#8.
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

export interface AgeRecipient {
  /** `age1...`, as written in the inventory and recorded in the manifest. */
  text: string;
  publicKey: Buffer;
}

export interface AgeIdentity {
  /** The recipient this identity opens (never the secret itself). */
  recipient: string;
  publicKey: Buffer;
  secretKey: KeyObject;
}

const publicKeyObject = (raw: Buffer) =>
  createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
const rawPublicKey = (k: KeyObject) =>
  Buffer.from(k.export({ format: 'der', type: 'spki' })).subarray(SPKI_PREFIX.length);
const hkdf = (ikm: Buffer, salt: Buffer, info: string) => Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));

/** Raw (unpadded) base64, canonical, as the age header writes it. */
export function b64(data: Buffer): string {
  return data.toString('base64').replace(/=+$/, '');
}

/** Decodes raw base64, refusing padding and non-canonical encodings (the spec requires both). */
function fromB64(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]*$/.test(text) || text.length % 4 === 1) return undefined;
  const data = Buffer.from(text, 'base64');
  return b64(data) === text ? data : undefined;
}

export function parseAgeRecipient(text: string, source = 'age recipient'): AgeRecipient {
  const t = text.trim();
  const decoded = t.startsWith('age1') ? bech32Decode(t) : undefined;
  if (!decoded || decoded.hrp !== 'age' || decoded.data.length !== 32) {
    throw new InputError(`${source}: "${t.slice(0, 80)}" is not an age X25519 recipient.`, {
      hint: 'A recipient looks like age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq (`age-keygen -y KEYFILE` prints it).',
    });
  }
  return { text: t, publicKey: decoded.data };
}

/**
 * Reads age identities (the format of `age-keygen` output: `AGE-SECRET-KEY-1...` lines, `#`
 * comments, blank lines). Each key is given to the redactor before anything else happens with it;
 * errors name the line number, never its text.
 */
export function parseAgeIdentities(text: string, source = 'the identity'): AgeIdentity[] {
  const lines = text.split(/\r?\n/);
  for (const l of lines) if (/^AGE-SECRET-KEY-/i.test(l.trim())) redactor.add(l.trim(), l.trim().toLowerCase());
  const out: AgeIdentity[] = [];
  lines.forEach((line, i) => {
    const l = line.trim();
    if (l === '' || l.startsWith('#')) return;
    const decoded = bech32Decode(l);
    if (!decoded || decoded.hrp !== 'age-secret-key-' || decoded.data.length !== 32 || l !== l.toUpperCase()) {
      throw new InputError(`${source}, line ${i + 1}, is not an age identity (AGE-SECRET-KEY-1...).`, {
        hint: 'Give the file `age-keygen -o KEYFILE` wrote, through a secret reference (file:KEYFILE, env:NAME, cmd:...).',
      });
    }
    const secretKey = createPrivateKey({
      key: Buffer.concat([PKCS8_PREFIX, decoded.data]),
      format: 'der',
      type: 'pkcs8',
    });
    decoded.data.fill(0);
    const publicKey = rawPublicKey(createPublicKey(secretKey));
    out.push({ recipient: bech32Encode('age', publicKey), publicKey, secretKey });
  });
  if (out.length === 0)
    throw new InputError(`${source} holds no age identity (AGE-SECRET-KEY-1...).`, {
      hint: 'Generate one with `age-keygen -o KEYFILE`; its public line is the recipient to encrypt to.',
    });
  return out;
}

/** A fresh identity and its recipient (tests; operators use `age-keygen`). */
export function generateAgeIdentity(): { identity: string; recipient: string } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const raw = Buffer.from(privateKey.export({ format: 'der', type: 'pkcs8' })).subarray(PKCS8_PREFIX.length);
  const identity = bech32Encode('AGE-SECRET-KEY-', raw);
  redactor.add(identity, identity.toLowerCase());
  return { identity, recipient: bech32Encode('age', rawPublicKey(publicKey)) };
}

/** ChaCha20-Poly1305 with the tag appended; `into` collects the two parts without another copy. */
function seal(key: Buffer, nonce: Buffer, plaintext: Buffer, into?: Buffer[]): Buffer {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
  const body = c.update(plaintext);
  c.final();
  if (into) {
    into.push(body, c.getAuthTag());
    return body;
  }
  return Buffer.concat([body, c.getAuthTag()]);
}

function open(key: Buffer, nonce: Buffer, sealed: Buffer): Buffer | undefined {
  if (sealed.length < TAG) return undefined;
  const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
  d.setAuthTag(sealed.subarray(sealed.length - TAG));
  const body = d.update(sealed.subarray(0, sealed.length - TAG));
  try {
    d.final();
  } catch {
    body.fill(0);
    return undefined;
  }
  return body;
}

function streamNonce(counter: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeUIntBE(counter, 5, 6);
  n[11] = last ? 1 : 0;
  return n;
}

function wrapLines(body: string): string {
  let s = '';
  for (let i = 0; i < body.length; i += 64) s += `${body.slice(i, i + 64)}\n`;
  // The body ends with a line shorter than 64 columns, empty if need be.
  if (body.length % 64 === 0) s += '\n';
  return s;
}

/** The header (with its MAC) and payload key for a new file to `recipients`. */
function newFile(recipients: readonly AgeRecipient[]): { header: Buffer; payloadKey: Buffer; nonce: Buffer } {
  if (recipients.length === 0) throw new InputError('age encryption needs at least one recipient.');
  const fileKey = randomBytes(16);
  let header = `${AGE_VERSION_LINE}\n`;
  for (const r of recipients) {
    const eph = generateKeyPairSync('x25519');
    const share = rawPublicKey(eph.publicKey);
    const shared = diffieHellman({ privateKey: eph.privateKey, publicKey: publicKeyObject(r.publicKey) });
    const wrapKey = hkdf(shared, Buffer.concat([share, r.publicKey]), X25519_INFO);
    header += `-> X25519 ${b64(share)}\n${wrapLines(b64(seal(wrapKey, Buffer.alloc(12), fileKey)))}`;
    shared.fill(0);
    wrapKey.fill(0);
  }
  header += '---';
  const mac = createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header'))
    .update(header, 'latin1')
    .digest();
  header += ` ${b64(mac)}\n`;
  const nonce = randomBytes(NONCE_BYTES);
  const payloadKey = hkdf(fileKey, nonce, 'payload');
  fileKey.fill(0);
  return { header: Buffer.from(header, 'latin1'), payloadKey, nonce };
}

/**
 * Encrypts what flows through to `recipients`. A full chunk is sealed only once the next byte has
 * arrived, because the last chunk carries the last-chunk flag; an empty input gives one empty final
 * chunk, as the spec requires.
 */
export function createAgeEncryptStream(recipients: readonly AgeRecipient[]): Transform {
  const { header, payloadKey, nonce } = newFile(recipients);
  const staging = Buffer.alloc(CHUNK);
  let fill = 0;
  let counter = 0;
  let started = false;
  const start = (t: Transform) => {
    if (started) return;
    started = true;
    t.push(Buffer.concat([header, nonce]));
  };
  return new Transform({
    transform(chunk: Buffer, _enc, callback: TransformCallback) {
      start(this);
      const out: Buffer[] = [];
      let i = 0;
      while (i < chunk.length) {
        if (fill === CHUNK) {
          seal(payloadKey, streamNonce(counter++, false), staging, out);
          fill = 0;
        }
        const n = Math.min(CHUNK - fill, chunk.length - i);
        chunk.copy(staging, fill, i, i + n);
        fill += n;
        i += n;
      }
      // One buffer per input chunk: fewer short-lived Buffers for the GC to find (they live outside the heap).
      if (out.length) this.push(Buffer.concat(out));
      callback();
    },
    flush(callback: TransformCallback) {
      start(this);
      this.push(seal(payloadKey, streamNonce(counter++, true), staging.subarray(0, fill)));
      staging.fill(0);
      payloadKey.fill(0);
      callback();
    },
  });
}

interface ParsedHeader {
  stanzas: Array<{ args: string[]; body: Buffer }>;
  /** The bytes the MAC covers: everything up to and including `---`. */
  macInput: Buffer;
  mac: Buffer;
  /** Header length in bytes, the payload nonce follows. */
  length: number;
}

/** Parses a complete header from the start of `buf`; undefined when more bytes are needed. */
function parseHeader(buf: Buffer): ParsedHeader | undefined {
  const end = buf.indexOf('\n--- ', 0, 'latin1');
  // Every real header is longer than this: wait for enough bytes to tell what the file is.
  if (buf.length < 40 && end === -1) return undefined;
  const first = buf.subarray(0, 40).toString('latin1');
  if (first.startsWith(ARMOR_BEGIN)) {
    throw new InputError('This is an armored age file (`age -a`), which vaultops does not read.', {
      hint: 'Decrypt it with `age -d` and encrypt it again without -a; vaultops itself writes the binary format.',
    });
  }
  if (!first.startsWith(`${AGE_VERSION_LINE}\n`)) {
    throw new CiphertextDamagedError(
      first.startsWith('age-encryption.org/')
        ? `This age file has version "${first.split('\n')[0]!.slice(19)}"; only v1 is known.`
        : 'This is not an age v1 file (it does not start with "age-encryption.org/v1").',
    );
  }
  if (end === -1 || buf.indexOf(0x0a, end + 5) === -1) {
    if (buf.length > MAX_HEADER)
      throw new CiphertextDamagedError('The age header does not end within 1 MiB: not an age file.');
    return undefined;
  }
  const macEnd = buf.indexOf(0x0a, end + 5);
  const text = buf.subarray(0, macEnd + 1).toString('latin1');
  const bad = (why: string) => new CiphertextDamagedError(`The age header is malformed (${why}).`);
  const lines = text.split('\n');
  lines.pop(); // after the final LF
  const macLine = lines.pop()!;
  const stanzas: ParsedHeader['stanzas'] = [];
  let i = 1;
  while (i < lines.length) {
    const argLine = lines[i++]!;
    if (!argLine.startsWith('-> ')) throw bad(`line ${i} is neither a stanza nor the MAC`);
    const args = argLine.slice(3).split(' ');
    if (args.some((a) => a.length === 0 || !/^[\x21-\x7e]+$/.test(a)))
      throw bad(`stanza on line ${i} has an empty or non-printable argument`);
    let body = '';
    for (;;) {
      if (i >= lines.length) throw bad('a stanza body does not end with a short line');
      const l = lines[i++]!;
      if (!/^[A-Za-z0-9+/]*$/.test(l) || l.length > 64) throw bad(`line ${i} is not base64 wrapped at 64 columns`);
      body += l;
      if (l.length < 64) break;
    }
    const data = fromB64(body);
    if (!data) throw bad(`stanza body ending on line ${i} is not canonical base64`);
    stanzas.push({ args, body: data });
  }
  if (stanzas.length === 0) throw bad('no recipient stanza');
  const mac = fromB64(macLine.slice(4));
  if (!macLine.startsWith('--- ') || macLine.length !== 47 || !mac)
    throw bad('the MAC line is not "--- " and 43 base64 characters');
  return { stanzas, macInput: buf.subarray(0, end + 4), mac, length: macEnd + 1 };
}

/** Unwraps the file key with one of `identities`, then checks the header MAC with it. */
function unwrapFileKey(h: ParsedHeader, identities: readonly AgeIdentity[]): Buffer {
  if (h.stanzas.some((s) => s.args[0] === 'scrypt')) {
    throw new InputError('This age file is encrypted with a passphrase (age -p), which vaultops does not read.', {
      hint: 'Encrypt backups to X25519 recipients (age1...).',
    });
  }
  let fileKey: Buffer | undefined;
  for (const s of h.stanzas) {
    if (s.args[0] !== 'X25519') continue;
    const share = s.args.length === 2 ? fromB64(s.args[1]!) : undefined;
    if (!share || share.length !== 32 || s.body.length !== 32)
      throw new CiphertextDamagedError('An X25519 stanza of the age header is malformed.');
    for (const id of identities) {
      const shared = diffieHellman({ privateKey: id.secretKey, publicKey: publicKeyObject(share) });
      if (shared.every((b) => b === 0))
        throw new CiphertextDamagedError(
          'An X25519 stanza of the age header has a low-order share (all-zero shared secret): not a genuine age file.',
        );
      const wrapKey = hkdf(shared, Buffer.concat([share, id.publicKey]), X25519_INFO);
      shared.fill(0);
      fileKey = open(wrapKey, Buffer.alloc(12), s.body);
      wrapKey.fill(0);
      if (fileKey) break;
    }
    if (fileKey) break;
  }
  if (!fileKey || fileKey.length !== 16) {
    throw new WrongIdentityError(
      `None of the given age identities (${identities.map((x) => x.recipient).join(', ')}) opens this file.`,
      {
        hint: 'Give the identity of one of the recipients it was encrypted to (the manifest lists them: `vaultops backups inspect FILE`).',
      },
    );
  }
  const want = createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header'))
    .update(h.macInput)
    .digest();
  if (!timingSafeEqual(want, h.mac)) {
    fileKey.fill(0);
    throw new CiphertextDamagedError('The age header MAC does not match: the header was modified after encryption.');
  }
  return fileKey;
}

/**
 * Decrypts an age file flowing through. Plaintext leaves a chunk only after that chunk
 * authenticated; the end of input without a valid final chunk is an error (truncation), and so is
 * an empty final chunk after others.
 */
export function createAgeDecryptStream(identities: readonly AgeIdentity[]): Transform {
  let head: Buffer[] = [];
  let headLen = 0;
  let payloadKey: Buffer | undefined;
  let pending: Buffer[] = [];
  let pendingLen = 0;
  let counter = 0;

  const take = (n: number): Buffer => {
    let out: Buffer;
    if (pending[0]!.length >= n) {
      out = pending[0]!.subarray(0, n);
      pending[0] = pending[0]!.subarray(n);
      if (pending[0].length === 0) pending.shift();
    } else {
      const all = Buffer.concat(pending, pendingLen);
      out = all.subarray(0, n);
      pending = all.length > n ? [all.subarray(n)] : [];
    }
    pendingLen -= n;
    return out;
  };
  const openChunk = (sealed: Buffer, last: boolean): Buffer => {
    const plain = open(payloadKey!, streamNonce(counter, last), sealed);
    if (!plain) {
      throw new CiphertextDamagedError(
        last
          ? `The last chunk of the age payload (chunk ${counter + 1}) does not authenticate as the final chunk: the file was truncated or modified.`
          : `Chunk ${counter + 1} of the age payload does not authenticate: the file was modified or damaged.`,
      );
    }
    if (last && plain.length === 0 && counter > 0)
      throw new CiphertextDamagedError(
        'The age payload ends with an empty final chunk after other chunks: not a valid age file.',
      );
    counter++;
    return plain;
  };

  return new Transform({
    transform(chunk: Buffer, _enc, callback: TransformCallback) {
      try {
        if (!payloadKey) {
          head.push(chunk);
          headLen += chunk.length;
          const buf = head.length === 1 ? head[0]! : Buffer.concat(head, headLen);
          head = [buf];
          const h = parseHeader(buf);
          if (!h || buf.length < h.length + NONCE_BYTES) return callback();
          const fileKey = unwrapFileKey(h, identities);
          payloadKey = hkdf(fileKey, buf.subarray(h.length, h.length + NONCE_BYTES), 'payload');
          fileKey.fill(0);
          const rest = buf.subarray(h.length + NONCE_BYTES);
          head = [];
          if (rest.length === 0) return callback();
          chunk = rest;
        }
        pending.push(chunk);
        pendingLen += chunk.length;
        // Hold back up to one sealed chunk: only the end of input says which chunk is the last.
        const out: Buffer[] = [];
        while (pendingLen > CT_CHUNK) out.push(openChunk(take(CT_CHUNK), false));
        if (out.length) this.push(out.length === 1 ? out[0] : Buffer.concat(out));
        callback();
      } catch (e) {
        callback(e as Error);
      }
    },
    flush(callback: TransformCallback) {
      try {
        if (!payloadKey) {
          const buf = Buffer.concat(head, headLen);
          if (buf.length === 0) throw new CiphertextDamagedError('The encrypted file is empty.');
          const h = parseHeader(buf);
          throw new CiphertextDamagedError(
            h
              ? 'The age file ends right after its header: truncated.'
              : 'The age file ends inside its header: truncated or not an age file.',
          );
        }
        if (pendingLen === 0)
          throw new CiphertextDamagedError(
            `The age payload ends after chunk ${counter} without a final chunk: the file was truncated.`,
          );
        const plain = openChunk(take(pendingLen), true);
        payloadKey.fill(0);
        if (plain.length) this.push(plain);
        callback();
      } catch (e) {
        callback(e as Error);
      }
    },
  });
}

/** Whether `start` (the first bytes of a file) is an age file, binary or armored. */
export function looksLikeAge(start: Buffer): 'binary' | 'armored' | undefined {
  const s = start.subarray(0, 40).toString('latin1');
  if (s.startsWith(`${AGE_VERSION_LINE}\n`)) return 'binary';
  if (s.startsWith(ARMOR_BEGIN)) return 'armored';
  return undefined;
}
