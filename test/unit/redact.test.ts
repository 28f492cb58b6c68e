import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MASK, Redactor } from '../../src/core/redact.js';

describe('the redactor masks every secret it was told about', () => {
  it('masks a secret inside a longer string, every time it appears', () => {
    const r = new Redactor();
    r.add('hvs.CAESIJ7example-root-token');
    expect(r.redact('token=hvs.CAESIJ7example-root-token; again hvs.CAESIJ7example-root-token.')).toBe(
      `token=${MASK}; again ${MASK}.`,
    );
  });

  it('leaves text alone when it knows no secrets; a secret of 1-3 characters is masked only where it stands alone', () => {
    const r = new Redactor();
    expect(r.redact('nothing to hide')).toBe('nothing to hide');
    r.add('', undefined, null);
    expect(r.size).toBe(0);
    r.add('abc');
    expect(r.redact('abc is masked, abcdef is not')).toBe(`${MASK} is masked, abcdef is not`);
  });

  it('masks secrets with regex characters literally', () => {
    const r = new Redactor();
    r.add('a+b*c?(d)[e]{f}|g^h$i.j\\k');
    expect(r.redact('x a+b*c?(d)[e]{f}|g^h$i.j\\k y')).toBe(`x ${MASK} y`);
    expect(r.redact('aaab')).toBe('aaab');
  });

  it('masks the longest secret first when one contains another', () => {
    const r = new Redactor();
    r.add('secret-value', 'secret-value-with-suffix');
    expect(r.redact('secret-value-with-suffix')).toBe(MASK);
  });

  it('masks values inside JSON structures and keeps the structure', () => {
    const r = new Redactor();
    const token = 's.ExampleRootToken123';
    r.add(token);
    const value = { step: 'unseal', args: { token, nested: [`Bearer ${token}`, 42, null] }, ok: true };
    const out = r.redactValue(value);
    expect(out).toEqual({ step: 'unseal', args: { token: MASK, nested: [`Bearer ${MASK}`, 42, null] }, ok: true });
    expect(JSON.stringify(out)).not.toContain(token);
    // The input is not modified.
    expect(value.args.token).toBe(token);
  });

  it('a base64 unseal key is also masked in its hex form, as Vault prints both', () => {
    const r = new Redactor();
    const key = randomBytes(33);
    const b64 = key.toString('base64');
    const hex = key.toString('hex');
    r.add(b64);
    expect(r.redact(`unseal_keys_b64: ${b64}`)).toBe(`unseal_keys_b64: ${MASK}`);
    expect(r.redact(`unseal_keys_hex: ${hex}`)).toBe(`unseal_keys_hex: ${MASK}`);
    expect(r.redact(JSON.stringify({ keys: [hex], keys_base64: [b64] }))).not.toMatch(
      new RegExp(`${hex}|${b64.replace(/[+/=]/g, '\\$&')}`),
    );
  });
});
