import { randomBytes, randomInt } from 'node:crypto';
import { VaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';

const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/**
 * A one-time password for generate-root, made here so it never travels except in the start
 * request, and registered with the redactor before anything can print it.
 *
 * Modern servers (`otp_length` > 0) want `otp_length` base62 characters; the token comes back as
 * base64(otp XOR token), byte for byte over the ASCII text, so the OTP must be exactly as long
 * as the token (28 on Vault >= 1.10, 26 on OpenBao and with disable_ssc_tokens).
 * Legacy servers (`otp_length` 0, UUID tokens) want 16 random bytes in padded std base64
 * (hashicorp/vault sdk/helper/roottoken/otp.go).
 */
export function generateOtp(otpLength: number): string {
  let otp: string;
  if (otpLength === 0) otp = randomBytes(16).toString('base64');
  else {
    if (!Number.isInteger(otpLength) || otpLength < 0 || otpLength > 256)
      throw new VaultopsError(`The server asked for an OTP of length ${otpLength}, which is not plausible.`);
    // randomInt is uniform (rejection sampling), unlike bytes % 62.
    otp = Array.from({ length: otpLength }, () => BASE62[randomInt(BASE62.length)]).join('');
  }
  redactor.add(otp);
  return otp;
}

/**
 * Decodes `encoded_token` with the OTP (hashicorp/vault sdk/helper/roottoken/decode.go).
 * The base64 is std alphabet *without* padding (RawStdEncoding), which Node's decoder accepts;
 * we check the alphabet ourselves because Node silently skips characters it does not know.
 */
export function decodeOtpToken(encoded: string, otp: string, otpLength: number): string {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded))
    throw new VaultopsError('The encoded token from the server is not base64; it cannot be decoded.');
  const raw = Buffer.from(encoded, 'base64');
  let token: string;
  if (otpLength === 0) {
    // Legacy: XOR of the two base64-decoded byte strings, formatted as a UUID.
    const otpBytes = Buffer.from(otp, 'base64');
    if (otpBytes.length !== raw.length) throw lengthMismatch();
    const x = Buffer.alloc(raw.length);
    for (let i = 0; i < raw.length; i++) x[i] = raw[i]! ^ otpBytes[i]!;
    const h = x.toString('hex');
    token = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
    x.fill(0);
  } else {
    const otpBytes = Buffer.from(otp, 'latin1');
    if (otpBytes.length !== raw.length) throw lengthMismatch();
    const x = Buffer.alloc(raw.length);
    for (let i = 0; i < raw.length; i++) x[i] = raw[i]! ^ otpBytes[i]!;
    token = x.toString('latin1');
    x.fill(0);
    otpBytes.fill(0);
  }
  raw.fill(0);
  redactor.add(token);
  return token;
}

function lengthMismatch(): VaultopsError {
  return new VaultopsError(
    'The encoded token and the OTP differ in length: this OTP does not belong to this attempt.',
    {
      hint: 'Cancel the attempt and start again; the OTP is only known to the process that started it.',
    },
  );
}
