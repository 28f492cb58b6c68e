import {
  createCipheriv,
  createHmac,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
} from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import {
  b64,
  createAgeDecryptStream,
  createAgeEncryptStream,
  generateAgeIdentity,
  parseAgeIdentities,
  parseAgeRecipient,
} from '../../../src/backup/crypto/age.js';
import { bech32Decode, bech32Encode } from '../../../src/backup/crypto/bech32.js';
import { CiphertextDamagedError, WrongIdentityError } from '../../../src/backup/crypto/encryption-errors.js';
import { redactor } from '../../../src/core/redact.js';

/**
 * The age v1 format (c2sp.org/age) as vaultops writes and reads it. Interop with the real `age`
 * binary is in test/integration/backup-encryption-tools.test.ts; these check the format's edges.
 */
const CHUNK = 64 * 1024;
const me = generateAgeIdentity();
const other = generateAgeIdentity();

async function collect(input: Buffer, stream: NodeJS.ReadWriteStream, pieces = 1): Promise<Buffer> {
  const out: Buffer[] = [];
  const step = Math.max(1, Math.ceil(input.length / pieces));
  const parts: Buffer[] = [];
  for (let i = 0; i < input.length; i += step) parts.push(input.subarray(i, i + step));
  await pipeline(
    Readable.from(parts),
    stream,
    new Writable({
      write(c: Buffer, _e, cb) {
        out.push(c);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}
const encrypt = (plain: Buffer, pieces = 1, recipients = [me.recipient]) =>
  collect(plain, createAgeEncryptStream(recipients.map((r) => parseAgeRecipient(r))), pieces);
const decrypt = (cipher: Buffer, pieces = 1, identity = me.identity) =>
  collect(cipher, createAgeDecryptStream(parseAgeIdentities(identity)), pieces);
/** Where the payload starts: after the header line `--- MAC\n` and the 16-byte nonce. */
const payloadStart = (c: Buffer) => c.indexOf('\n', c.indexOf('\n--- ') + 1) + 1 + 16;

/** An age file to `me` with chunks exactly as given (flags included), per c2sp.org/age. */
function forge(chunks: Array<{ data: Buffer; last: boolean }>): Buffer {
  const raw = (k: ReturnType<typeof createPublicKey>) =>
    Buffer.from(k.export({ format: 'der', type: 'spki' })).subarray(12);
  const hkdf = (ikm: Buffer, salt: Buffer, info: string) => Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));
  const seal = (key: Buffer, nonce: Buffer, data: Buffer) => {
    const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    const body = c.update(data);
    c.final();
    return Buffer.concat([body, c.getAuthTag()]);
  };
  const recipient = parseAgeRecipient(me.recipient).publicKey;
  const eph = generateKeyPairSync('x25519');
  const share = raw(eph.publicKey);
  const shared = diffieHellman({
    privateKey: eph.privateKey,
    publicKey: createPublicKey({
      key: Buffer.concat([Buffer.from('302a300506032b656e032100', 'hex'), recipient]),
      format: 'der',
      type: 'spki',
    }),
  });
  const fileKey = randomBytes(16);
  const body = seal(
    hkdf(shared, Buffer.concat([share, recipient]), 'age-encryption.org/v1/X25519'),
    Buffer.alloc(12),
    fileKey,
  );
  let header = `age-encryption.org/v1\n-> X25519 ${b64(share)}\n${b64(body)}\n---`;
  header += ` ${b64(
    createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header'))
      .update(header)
      .digest(),
  )}\n`;
  const nonce = randomBytes(16);
  const key = hkdf(fileKey, nonce, 'payload');
  const sealed = chunks.map((c, i) => {
    const n = Buffer.alloc(12);
    n.writeUIntBE(i, 5, 6);
    n[11] = c.last ? 1 : 0;
    return seal(key, n, c.data);
  });
  return Buffer.concat([Buffer.from(header, 'latin1'), nonce, ...sealed]);
}

describe('age keys are bech32 strings that round-trip', () => {
  it("derives the recipient of the spec's example identity", () => {
    const [id] = parseAgeIdentities('AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX');
    expect(id!.recipient).toBe('age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj');
  });

  it('encodes and decodes bech32, refusing a changed character and mixed case', () => {
    const data = randomBytes(32);
    const s = bech32Encode('age', data);
    expect(bech32Decode(s)).toEqual({ hrp: 'age', data });
    const flipped = `${s.slice(0, 10)}${s[10] === 'q' ? 'p' : 'q'}${s.slice(11)}`;
    expect(bech32Decode(flipped)).toBeUndefined();
    expect(bech32Decode(`${s.slice(0, 5).toUpperCase()}${s.slice(5)}`)).toBeUndefined();
  });

  it('reads an identity file with comments and registers each key with the redactor', () => {
    const ids = parseAgeIdentities(
      `# created: 2026-01-01\n# public key: ${me.recipient}\n${me.identity}\n\n${other.identity}\n`,
    );
    expect(ids.map((i) => i.recipient)).toEqual([me.recipient, other.recipient]);
    expect(redactor.redact(`key ${me.identity} here`)).not.toContain(me.identity);
  });

  it('refuses a malformed identity without echoing it', () => {
    const broken = `${me.identity.slice(0, -1)}${me.identity.endsWith('Q') ? 'P' : 'Q'}`;
    let message = '';
    try {
      parseAgeIdentities(`# mine\n${broken}\n`, 'file:/keys/age.txt');
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toBe('file:/keys/age.txt, line 2, is not an age identity (AGE-SECRET-KEY-1...).');
  });

  it('refuses a recipient that is not age1 + 32 bytes', () => {
    expect(() => parseAgeRecipient('age1qqqq')).toThrow(/not an age X25519 recipient/);
    expect(() => parseAgeRecipient(bech32Encode('age', randomBytes(31)))).toThrow(/not an age X25519 recipient/);
  });
});

describe('age encryption round-trips at every chunk boundary, fed whole or in small pieces', () => {
  for (const size of [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5]) {
    it(`${size} bytes`, async () => {
      const plain = randomBytes(size);
      const cipher = await encrypt(plain, size > 1000 ? 7 : 1);
      // One 16-byte tag per chunk; an empty input still has one (empty, final) chunk.
      const chunks = Math.max(1, Math.ceil(size / CHUNK));
      expect(cipher.length - payloadStart(cipher)).toBe(size + 16 * chunks);
      expect((await decrypt(cipher)).equals(plain)).toBe(true);
      expect((await decrypt(cipher, 13)).equals(plain)).toBe(true);
    });
  }

  it('writes a header the spec describes: version line, one X25519 stanza per recipient, MAC', async () => {
    const cipher = await encrypt(Buffer.from('x'), 1, [me.recipient, other.recipient]);
    const header = cipher.subarray(0, payloadStart(cipher) - 16).toString('latin1');
    expect(header).toMatch(
      /^age-encryption\.org\/v1\n-> X25519 [A-Za-z0-9+/]{43}\n[A-Za-z0-9+/]{43}\n-> X25519 [A-Za-z0-9+/]{43}\n[A-Za-z0-9+/]{43}\n--- [A-Za-z0-9+/]{43}\n$/,
    );
    expect((await decrypt(cipher, 1, other.identity)).toString()).toBe('x');
  });

  it('uses a fresh file key and nonce for every file', async () => {
    const a = await encrypt(Buffer.from('same'));
    const b = await encrypt(Buffer.from('same'));
    expect(a.equals(b)).toBe(false);
  });
});

describe('age decryption refuses what it cannot trust, and releases nothing unauthenticated', () => {
  const plain = randomBytes(2 * CHUNK + 100);
  let cipher: Buffer;
  const fails = async (c: Buffer, identity = me.identity) => {
    try {
      await decrypt(c, 1, identity);
    } catch (e) {
      return e as Error;
    }
    throw new Error('decryption succeeded');
  };

  it('a wrong identity is a WrongIdentityError naming the recipient tried, never the secret', async () => {
    cipher ??= await encrypt(plain);
    const e = await fails(cipher, other.identity);
    expect(e).toBeInstanceOf(WrongIdentityError);
    expect(e.message).toContain(other.recipient);
    expect(e.message).not.toContain(other.identity);
  });

  it('a changed header (here: a stanza argument) fails the header MAC', async () => {
    const c = await encrypt(plain, 1, [me.recipient, other.recipient]);
    // Swap the second stanza's share for a valid but different one: the first stanza still opens
    // the file key, and the MAC over the whole header catches the change.
    const text = c.toString('latin1');
    const second = text.indexOf('-> X25519 ', text.indexOf('-> X25519 ') + 1) + 10;
    const tampered = Buffer.from(text.slice(0, second) + b64(randomBytes(32)) + text.slice(second + 43), 'latin1');
    const e = await fails(tampered);
    expect(e).toBeInstanceOf(CiphertextDamagedError);
    expect(e.message).toMatch(/header MAC does not match/);
  });

  it("a flipped payload byte fails that chunk's authentication", async () => {
    cipher ??= await encrypt(plain);
    const c = Buffer.from(cipher);
    c[payloadStart(c) + CHUNK + 16 + 10]! ^= 1;
    const e = await fails(c);
    expect(e).toBeInstanceOf(CiphertextDamagedError);
    expect(e.message).toMatch(/Chunk 2 of the age payload does not authenticate/);
  });

  it('a file cut at a chunk boundary has no final chunk: refused', async () => {
    cipher ??= await encrypt(plain);
    const e = await fails(cipher.subarray(0, payloadStart(cipher) + 2 * (CHUNK + 16)));
    expect(e).toBeInstanceOf(CiphertextDamagedError);
    expect(e.message).toMatch(/last chunk .* does not authenticate as the final chunk|without a final chunk/);
  });

  it('a non-final chunk presented as the last one fails (the last-chunk flag is authenticated)', async () => {
    cipher ??= await encrypt(plain);
    // Dropping the real last chunk leaves a full chunk sealed with flag 0 at the end.
    const e = await fails(cipher.subarray(0, payloadStart(cipher) + CHUNK + 16));
    expect(e.message).toMatch(/chunk 1\) does not authenticate as the final chunk/);
  });

  it('a file cut inside a chunk, right after the header, or inside the header is refused', async () => {
    cipher ??= await encrypt(plain);
    for (const cut of [cipher.length - 1, payloadStart(cipher) + 5, payloadStart(cipher), 30, 0]) {
      const e = await fails(cipher.subarray(0, cut));
      expect(e, `cut at ${cut}`).toBeInstanceOf(CiphertextDamagedError);
    }
  });

  it('an appended byte is refused (the last chunk no longer authenticates)', async () => {
    cipher ??= await encrypt(plain);
    expect(await fails(Buffer.concat([cipher, Buffer.from([0])]))).toBeInstanceOf(CiphertextDamagedError);
  });

  it('an empty final chunk after a full chunk is refused, and so is data after a final chunk', async () => {
    // Files vaultops never writes, built independently from the spec with node:crypto, to a real
    // recipient: the decryptor must refuse them although every chunk authenticates.
    const full = randomBytes(CHUNK);
    expect(
      await decrypt(
        forge([
          { data: full, last: false },
          { data: Buffer.alloc(0), last: true },
        ]),
      ).catch((e: Error) => e),
    ).toBeInstanceOf(CiphertextDamagedError);
    expect(
      await decrypt(
        forge([
          { data: full, last: true },
          { data: Buffer.from('more'), last: true },
        ]),
      ).catch((e: Error) => e),
    ).toBeInstanceOf(CiphertextDamagedError);
    // The same construction with a proper layout opens: the forge is faithful to the format.
    expect(
      (
        await decrypt(
          forge([
            { data: full, last: false },
            { data: Buffer.from('tail'), last: true },
          ]),
        )
      ).equals(Buffer.concat([full, Buffer.from('tail')])),
    ).toBe(true);
  });

  it('a plaintext gzip file is "not an age file", not a crash', async () => {
    const e = await fails(Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), randomBytes(100)]));
    expect(e.message).toMatch(/not an age v1 file/);
  });
});
