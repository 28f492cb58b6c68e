import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MASK, Redactor } from '../../src/core/redact.js';

/** Gaps an adversarial review found: each of these leaked or threw before. */
describe('the redactor closes the gaps of quoted, numeric, short and re-encoded secrets', () => {
  it('masks a secret with " and \\ in JSON text (where it appears escaped) and in redactValue', () => {
    const r = new Redactor();
    const secret = 'pa"ss\\word-42';
    r.add(secret);
    const json = JSON.stringify({ message: `the key is ${secret}` });
    expect(r.redact(json)).not.toContain(JSON.stringify(secret).slice(1, -1));
    expect(JSON.parse(r.redact(json))).toEqual({ message: `the key is ${MASK}` });
    const v = r.redactValue({ message: `the key is ${secret}`, list: [secret] });
    expect(JSON.stringify(v)).not.toContain('pa\\"ss');
    expect(v).toEqual({ message: `the key is ${MASK}`, list: [MASK] });
  });

  it('a digits-only secret does not make redactValue throw, and numbers equal to it are masked', () => {
    const r = new Redactor();
    r.add('12345678');
    expect(() => r.redactValue({ pin: 12345678, text: 'pin 12345678' })).not.toThrow();
    expect(r.redactValue({ pin: 12345678, text: 'pin 12345678', port: 8200 })).toEqual({
      pin: MASK,
      text: `pin ${MASK}`,
      port: 8200,
    });
  });

  it('masks secrets shorter than 6 characters: 4-5 anywhere, 1-3 where they stand alone', () => {
    const r = new Redactor();
    r.add('k3y9', 'q7');
    expect(r.redact('pin=k3y9;')).toBe(`pin=${MASK};`);
    expect(r.redact('xk3y9x')).toBe(`x${MASK}x`);
    expect(r.redact('code q7 here, "q7"')).toBe(`code ${MASK} here, "${MASK}"`);
    // A 2-character secret inside a word is ordinary text, not the secret.
    expect(r.redact('aq7b')).toBe('aq7b');
  });

  it('derives every encoding: hex given -> base64 and base64url masked; uppercase hex; base64url', () => {
    const bytes = randomBytes(32);
    const fromHex = new Redactor();
    fromHex.add(bytes.toString('hex'));
    expect(fromHex.redact(`b64 ${bytes.toString('base64')}`)).toBe(`b64 ${MASK}`);
    expect(fromHex.redact(`b64url ${bytes.toString('base64url')}`)).toBe(`b64url ${MASK}`);
    expect(fromHex.redact(`HEX ${bytes.toString('hex').toUpperCase()}`)).toBe(`HEX ${MASK}`);
    const fromB64 = new Redactor();
    fromB64.add(bytes.toString('base64'));
    expect(fromB64.redact(`b64url ${bytes.toString('base64url')}`)).toBe(`b64url ${MASK}`);
    expect(fromB64.redact(`HEX ${bytes.toString('hex').toUpperCase()}`)).toBe(`HEX ${MASK}`);
    const text = new Redactor();
    text.add('correct horse battery');
    expect(text.redact(Buffer.from('correct horse battery').toString('base64'))).toBe(MASK);
  });

  it('a tail cut through a secret shows none of it', () => {
    const r = new Redactor();
    const secret = 'hvs.ZZtail-secret-0123456789abcdef';
    r.add(secret);
    const full = `${'x'.repeat(100)}${secret}${'y'.repeat(50)}`;
    // Keep the last 60 characters: the cut falls inside the secret.
    const out = r.redactTail(full, 60);
    expect(out.length).toBeLessThanOrEqual(60 + MASK.length);
    expect(out).not.toContain(secret.slice(-10));
    expect(out.endsWith('y'.repeat(50))).toBe(true);
  });
});
