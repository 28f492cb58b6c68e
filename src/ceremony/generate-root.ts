import { InputError, VaultApiError, VaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import {
  generateRootCancel,
  generateRootStart,
  generateRootStatus,
  generateRootUpdate,
  type GenerateRootStatus,
} from '../vault/ceremonies.js';
import { sameFingerprint, type PgpPublicKey } from '../secrets/pgp.js';
import { decodeOtpToken, generateOtp } from './otp.js';
import type { CeremonySession } from './session.js';

export type ShareResult =
  | { kind: 'progress'; progress: number; required: number }
  /** OTP mode: the decoded token (registered with the redactor). PGP mode: `encrypted` (base64 PGP message). */
  | { kind: 'complete'; token?: string; encrypted?: string };

const WHAT = 'root token generation';

/**
 * One root-token generation attempt on one cluster. The OTP (when not PGP) exists only inside this
 * object: it is generated here, sent once in the start request, used to decode, then forgotten.
 */
export class RootGeneration {
  readonly session: CeremonySession;
  readonly nonce: string;
  readonly required: number;
  readonly mode: 'otp' | 'pgp' | 'unknown';
  readonly pgpFingerprint: string | undefined;
  #otp: string | undefined;
  readonly #otpLength: number;
  #progress: number;
  #done = false;

  private constructor(
    session: CeremonySession,
    st: GenerateRootStatus,
    mode: RootGeneration['mode'],
    otp: string | undefined,
  ) {
    this.session = session;
    this.nonce = st.nonce;
    this.required = st.required;
    this.mode = mode;
    this.pgpFingerprint = st.pgp_fingerprint || undefined;
    this.#otp = otp;
    this.#otpLength = st.otp_length;
    this.#progress = st.progress;
  }

  get progress(): number {
    return this.#progress;
  }

  /** What is in progress on the leader now (undefined when nothing is). */
  static async pending(session: CeremonySession): Promise<GenerateRootStatus | undefined> {
    const st = await generateRootStatus(await session.leader(WHAT), session.paths);
    return st.started ? st : undefined;
  }

  /**
   * Starts an attempt with a locally made OTP, or with the operator's PGP public key. Refuses when
   * one is already running: it may be another holder's, and only its starter can decode it.
   */
  static async start(session: CeremonySession, options: { pgpKey?: PgpPublicKey } = {}): Promise<RootGeneration> {
    const client = await session.leader(WHAT);
    const before = await generateRootStatus(client, session.paths);
    if (before.started) {
      throw new InputError(
        `A root token generation is already in progress on ${session.node.name} (nonce ${before.nonce}, ${before.progress} of ${before.required} shares).`,
        {
          hint: `Contribute to it with \`vaultops root contribute --nonce ${before.nonce}\`, or cancel it with \`vaultops root generate --cancel-pending\` (an OTP attempt started by another process cannot be decoded here).`,
        },
      );
    }
    if (options.pgpKey) {
      const st = await generateRootStart(client, session.paths, { pgpKey: options.pgpKey.vaultBase64 });
      if (!sameFingerprint(st.pgp_fingerprint, options.pgpKey.fingerprint)) {
        await generateRootCancel(client, session.paths, st.nonce).catch(() => undefined);
        throw new VaultopsError(
          `The server reports PGP fingerprint ${st.pgp_fingerprint ?? '(none)'} for the attempt, not ${options.pgpKey.fingerprint}; the attempt was cancelled.`,
        );
      }
      return new RootGeneration(session, st, 'pgp', undefined);
    }
    const otp = generateOtp(before.otp_length);
    const st = await generateRootStart(client, session.paths, { otp });
    return new RootGeneration(session, { ...st, otp_length: before.otp_length }, 'otp', otp);
  }

  /** Joins an attempt someone else started (a holder on another machine). The nonce must match. */
  static async join(session: CeremonySession, nonce: string): Promise<RootGeneration> {
    const st = await generateRootStatus(await session.leader(WHAT), session.paths);
    if (!st.started)
      throw new InputError(`No root token generation is in progress on ${session.node.name}, the leader.`, {
        hint: 'It was completed or cancelled, or the leader changed (which loses it). Ask the operator for the current nonce.',
      });
    if (st.nonce !== nonce) {
      throw new InputError(
        `The root token generation in progress has nonce ${st.nonce}, not ${nonce}: your share was not sent.`,
        {
          hint: 'The attempt you were told about is gone (cancelled or restarted). Check the nonce with the operator before sending a share.',
        },
      );
    }
    return new RootGeneration(session, st, st.pgp_fingerprint ? 'pgp' : 'unknown', undefined);
  }

  /**
   * Submits one share. At the threshold the server combines the shares; if one was wrong it aborts
   * that round (discarding the submitted shares) but keeps the attempt and its nonce, so the
   * holders can submit again: that is reported as a WrongShareError, not a dead ceremony.
   */
  async submit(share: string): Promise<ShareResult> {
    redactor.add(share);
    if (this.#done) throw new VaultopsError('This root token generation has already finished.');
    const client = await this.session.leader(WHAT);
    let st: GenerateRootStatus;
    try {
      st = await generateRootUpdate(client, this.session.paths, share.trim(), this.nonce);
    } catch (e) {
      throw await this.#explain(e);
    }
    if (!st.complete) {
      this.#progress = st.progress;
      return { kind: 'progress', progress: st.progress, required: st.required };
    }
    this.#done = true;
    const encoded = st.encoded_root_token || st.encoded_token || '';
    if (!encoded)
      throw new VaultopsError('The server said the root token generation is complete but sent no encoded token.');
    if (this.mode === 'pgp') return { kind: 'complete', encrypted: encoded };
    if (this.#otp === undefined) return { kind: 'complete', encrypted: encoded };
    const token = decodeOtpToken(encoded, this.#otp, this.#otpLength);
    this.#otp = undefined;
    return { kind: 'complete', token };
  }

  async status(): Promise<GenerateRootStatus> {
    return generateRootStatus(await this.session.leader(WHAT), this.session.paths);
  }

  async cancel(): Promise<void> {
    this.#done = true;
    this.#otp = undefined;
    await generateRootCancel(this.session.pinnedClient, this.session.paths, this.nonce);
  }

  async #explain(e: unknown): Promise<unknown> {
    if (!(e instanceof VaultApiError)) return e;
    const text = e.errors.join('; ');
    if (/incorrect nonce|nonce/i.test(text) && !/aborted/.test(text)) {
      return new InputError(
        `The server refused the share: it belongs to another attempt (this one's nonce is ${this.nonce}, and the server's attempt differs).`,
        {
          hint: 'The attempt was cancelled or restarted elsewhere. Check `vaultops root generate --status`.',
          cause: e,
        },
      );
    }
    if (/already been provided/.test(text))
      return new InputError('That share was already submitted in this round.', {
        hint: 'The next holder submits their own share.',
        cause: e,
      });
    // "failed to compute root key: duplicate part detected": a wrong share whose x-coordinate
    // equals a good one's cannot even be combined; the server drops the round as for any wrong share.
    if (/aborted|failed to (combine|compute|validate|unseal|verify)|duplicate part|invalid key|incorrect/i.test(text)) {
      const st = await generateRootStatus(this.session.pinnedClient, this.session.paths).catch(() => undefined);
      if (st) this.#progress = st.progress;
      return new WrongShareError(
        `The shares did not combine into this cluster's key: at least one of them is wrong (from another cluster or an old key set). ${st?.started ? `The attempt (nonce ${this.nonce}) is still open; progress is ${st.progress} of ${st.required}.` : 'The attempt is no longer open.'}`,
        st?.started === true,
        e,
      );
    }
    if (/no root generation in progress|not in progress/.test(text)) {
      return new VaultopsError(
        'The root token generation is no longer in progress: it was cancelled, completed elsewhere, or the leader restarted.',
        { hint: 'Start again.', cause: e },
      );
    }
    return e;
  }
}

/** A wrong share: the server said so; whether the attempt survived is in `attemptOpen`. */
export class WrongShareError extends InputError {
  readonly attemptOpen: boolean;
  constructor(message: string, attemptOpen: boolean, cause: unknown) {
    super(message, {
      hint: attemptOpen
        ? "Each holder submits their share again (check it is from this cluster's current key set)."
        : 'Start a new attempt.',
      cause,
    });
    this.attemptOpen = attemptOpen;
  }
}
