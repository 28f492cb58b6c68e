import { describe, expect, it } from 'vitest';
import { Redactor } from '../../src/core/redact.js';

/** A small seeded generator (mulberry32): a failure prints its seed, and the seed reproduces it. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABETS = [
  'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789',
  '0123456789',
  '0123456789abcdef',
  'abcdefghijklmnopqrstuvwxyz0123456789+/=-_.',
  ' !"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~\n\t\u00e9\u4e2d\u{1F511}abc123',
];

describe('redactor fuzz: random secrets in random encodings inside random text and JSON', () => {
  it('never leaves a secret visible and never throws', () => {
    const seed = Number(process.env['REDACT_FUZZ_SEED'] ?? Date.now() % 2 ** 31);
    const rand = rng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const str = (alphabet: string, min: number, max: number): string => {
      const chars = [...alphabet];
      const n = min + Math.floor(rand() * (max - min + 1));
      let s = '';
      for (let i = 0; i < n; i++) s += pick(chars);
      return s;
    };
    for (let i = 0; i < 3000; i++) {
      const r = new Redactor();
      // A secret of 4+ characters (shorter ones are masked only where they stand alone, see redact.ts).
      const bytes = Buffer.from(Array.from({ length: 4 + Math.floor(rand() * 40) }, () => Math.floor(rand() * 256)));
      const registeredAs = pick(['text', 'base64', 'hex', 'base64url', 'digits'] as const);
      const secret =
        registeredAs === 'text'
          ? str(pick(ALPHABETS), 4, 40)
          : registeredAs === 'digits'
            ? str('0123456789', 6, 20)
            : registeredAs === 'hex'
              ? bytes.toString('hex')
              : bytes.toString(registeredAs);
      r.add(secret);
      const raw = registeredAs === 'text' || registeredAs === 'digits' ? Buffer.from(secret) : bytes;
      const shownAs = pick(['as-is', 'base64', 'base64url', 'hex', 'HEX', 'json', 'json2'] as const);
      const shown =
        shownAs === 'as-is'
          ? secret
          : shownAs === 'json'
            ? JSON.stringify(secret).slice(1, -1)
            : shownAs === 'json2'
              ? JSON.stringify(JSON.stringify(secret)).slice(1, -1)
              : shownAs === 'HEX'
                ? raw.toString('hex').toUpperCase()
                : raw.toString(shownAs);
      const text = `${str(pick(ALPHABETS), 0, 30)}${shown}${str(pick(ALPHABETS), 0, 30)}`;
      const where = `seed ${seed}, case ${i}: secret ${JSON.stringify(secret)} registered as ${registeredAs}, shown as ${shownAs}`;
      let out = '';
      let outValue = '';
      let tail = '';
      try {
        out = r.redact(text);
        outValue = JSON.stringify(
          r.redactValue({ text, n: registeredAs === 'digits' ? Number(secret) : 1, list: [text] }),
        );
        tail = r.redactTail(text, Math.floor(rand() * text.length));
      } catch (e) {
        expect.fail(`${where}: threw ${(e as Error).message}`);
      }
      expect(out.includes(shown), where).toBe(false);
      expect(outValue.includes(shown) || outValue.includes(JSON.stringify(shown).slice(1, -1)), where).toBe(false);
      if (registeredAs === 'digits')
        expect(outValue.includes(`"n":${Number(secret)}`) && String(Number(secret)) === secret, where).toBe(false);
      // A tail may start inside the secret: no suffix of it long enough to mean anything may show.
      for (let k = 4; k <= shown.length; k++)
        expect(tail.startsWith(shown.slice(-k)) && tail.length >= k, where).toBe(false);
      // Two levels of JSON escaping are covered (JSON text inside JSON); json2 put into JSON again would be a third.
      if (shownAs !== 'json2')
        expect(r.redact(JSON.stringify({ text })).includes(JSON.stringify(shown).slice(1, -1)), where).toBe(false);
    }
  });
});
