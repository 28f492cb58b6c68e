import { describe, expect, it } from 'vitest';
import { decodeOtpToken, generateOtp } from '../../src/ceremony/otp.js';
import { redactor } from '../../src/core/redact.js';

// Vectors computed outside this code base (Python: base64.b64encode(xor(token, otp)).rstrip('=')),
// the way hashicorp/vault sdk/helper/roottoken/encode.go builds them (RawStdEncoding).
describe("the generated root token is decoded exactly (unpadded base64, XOR with the OTP's ASCII bytes)", () => {
  it('decodes a 28-character token whose base64 has no padding', () => {
    const encoded = 'KTQwahEDFBxkJCQ4YC9iIjQzP3khOTw9N3dRUg';
    expect(encoded.length % 4).not.toBe(0);
    expect(decodeOtpToken(encoded, 'ABCDEFGHIJKLMNOPQRSTUVWXYZab', 28)).toBe('hvs.TEST-not-a-real-token-00');
  });

  it('decodes the legacy scheme (otp_length 0): XOR of two base64 strings, formatted as a UUID', () => {
    expect(decodeOtpToken('X308SQ85WymXibup38n76Q==', 'EBESExQVFhcYGRobHB0eHw==', 0)).toBe(
      '4f6c2e5a-1b2c-4d3e-8f90-a1b2c3d4e5f6',
    );
  });

  it('refuses an OTP of another length instead of returning garbage', () => {
    expect(() => decodeOtpToken('KTQwagYHAhsAAHt9f317ZWdla200NDQ8PDwGCg', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 26)).toThrow(
      /differ in length/,
    );
  });

  it('refuses text that is not base64', () => {
    expect(() => decodeOtpToken('not base64!', 'ABCDEFGHIJKLMNOPQRSTUVWXYZab', 28)).toThrow(/not base64/);
  });

  it("generates OTPs of the server's length from the base62 alphabet, and registers them with the redactor", () => {
    for (const n of [26, 28]) {
      const otp = generateOtp(n);
      expect(otp).toMatch(new RegExp(`^[A-Za-z0-9]{${n}}$`));
      expect(redactor.redact(`x ${otp} y`)).toBe('x [redacted] y');
    }
    expect(Buffer.from(generateOtp(0), 'base64')).toHaveLength(16);
    expect(generateOtp(28)).not.toBe(generateOtp(28));
  });

  it('a decoded token is registered with the redactor at once', () => {
    const token = decodeOtpToken('KTQwagYHAhsAAHt9f317ZWdla200NDQ8PDwGCg', 'ABCDEFGHIJKLMNOPQRSTUVWXYZab', 28);
    expect(redactor.redact(`token=${token}`)).toBe('token=[redacted]');
  });
});
