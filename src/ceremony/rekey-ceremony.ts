import { accessSync, closeSync, constants, mkdirSync, openSync, readdirSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { InputError, VaultApiError, VaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import {
  rekeyCancel,
  rekeyStart,
  rekeyStatus,
  rekeyUpdate,
  rekeyVerifyStatus,
  rekeyVerifyUpdate,
  type RekeyStatus,
  type RekeyTarget,
} from '../vault/ceremonies.js';
import { armorVaultCiphertext, sameFingerprint, type PgpPublicKey } from '../secrets/pgp.js';
import type { CeremonySession } from './session.js';

export interface RekeyRequest {
  target: RekeyTarget;
  shares: number;
  threshold: number;
  /** One public key per new holder, in holder order; the new shares come back encrypted to them. */
  pgpKeys: readonly PgpPublicKey[];
  /** New holders prove they hold their share before the old keys stop working. */
  verify: boolean;
}

export type RekeyStep =
  | { kind: 'progress'; progress: number; required: number }
  /**
   * The threshold was reached. `newShares[i]` is holder i's share: base64 PGP ciphertext when PGP
   * keys were given (else the clear share, registered with the redactor). With verification the
   * old keys stay valid until `verify` completes.
   */
  | {
      kind: 'complete';
      newShares: string[];
      encrypted: boolean;
      fingerprints: string[];
      verificationNonce: string | undefined;
    };

export type VerifyStep = { kind: 'progress'; progress: number; required: number } | { kind: 'complete' };

function what(target: RekeyTarget): string {
  return target === 'barrier' ? 'rekey' : 'recovery-key rekey';
}

/**
 * One rekey (unseal keys, or recovery keys on an auto-unseal cluster). Without verification the
 * root key is replaced the moment the threshold of old shares is in; with verification only
 * after the threshold of *new* shares is proven.
 */
export class Rekey {
  readonly session: CeremonySession;
  readonly target: RekeyTarget;
  readonly nonce: string;
  readonly required: number;
  readonly newShares: number;
  readonly newThreshold: number;
  readonly verificationRequired: boolean;
  #verificationNonce: string | undefined;
  #progress: number;

  private constructor(session: CeremonySession, target: RekeyTarget, st: RekeyStatus) {
    this.session = session;
    this.target = target;
    this.nonce = st.nonce;
    this.required = st.required;
    this.newShares = st.n;
    this.newThreshold = st.t;
    this.verificationRequired = st.verification_required === true;
    this.#verificationNonce = st.verification_nonce || undefined;
    this.#progress = st.progress;
  }

  get progress(): number {
    return this.#progress;
  }

  get verificationNonce(): string | undefined {
    return this.#verificationNonce;
  }

  static async pending(session: CeremonySession, target: RekeyTarget): Promise<RekeyStatus | undefined> {
    const st = await rekeyStatus(await session.leader(what(target)), session.paths, target);
    return st.started ? st : undefined;
  }

  static async start(session: CeremonySession, req: RekeyRequest): Promise<Rekey> {
    if (
      !Number.isInteger(req.shares) ||
      !Number.isInteger(req.threshold) ||
      req.threshold < 1 ||
      req.shares < req.threshold ||
      req.shares > 255
    ) {
      throw new InputError(`A rekey to ${req.shares} shares with threshold ${req.threshold} is not possible.`, {
        hint: 'Use 1 <= threshold <= shares <= 255, and threshold >= 2 when shares > 1.',
      });
    }
    if (req.shares > 1 && req.threshold < 2)
      throw new InputError('A threshold of 1 with several shares lets any one holder unseal alone.', {
        hint: 'Use --threshold 2 or more.',
      });
    if (req.pgpKeys.length !== 0 && req.pgpKeys.length !== req.shares) {
      throw new InputError(
        `${req.pgpKeys.length} PGP keys for ${req.shares} new shares: one key per holder is needed.`,
        { hint: 'Give --pgp-key once per new holder, in holder order.' },
      );
    }
    const client = await session.leader(what(req.target));
    const before = await rekeyStatus(client, session.paths, req.target);
    if (before.started) {
      throw new InputError(
        `A ${what(req.target)} is already in progress on ${session.node.name} (nonce ${before.nonce}, ${before.progress} of ${before.required} shares, to ${before.n}/${before.t}).`,
        {
          hint: `Contribute with \`vaultops rekey contribute --nonce ${before.nonce}\` or cancel it with \`vaultops rekey cancel --nonce ${before.nonce}\`.`,
        },
      );
    }
    const st = await rekeyStart(client, session.paths, req.target, {
      secret_shares: req.shares,
      secret_threshold: req.threshold,
      ...(req.pgpKeys.length ? { pgp_keys: req.pgpKeys.map((k) => k.vaultBase64) } : {}),
      require_verification: req.verify,
    });
    const fprs = st.pgp_fingerprints ?? [];
    if (req.pgpKeys.length && !req.pgpKeys.every((k, i) => sameFingerprint(fprs[i], k.fingerprint))) {
      await rekeyCancel(client, session.paths, req.target, st.nonce).catch(() => undefined);
      throw new VaultopsError(
        'The server reports other PGP fingerprints than the keys given; the rekey was cancelled.',
      );
    }
    return new Rekey(session, req.target, st);
  }

  /** Joins a rekey someone else started; the nonce must match the one in progress. */
  static async join(session: CeremonySession, target: RekeyTarget, nonce: string): Promise<Rekey> {
    const st = await rekeyStatus(await session.leader(what(target)), session.paths, target);
    if (!st.started)
      throw new InputError(`No ${what(target)} is in progress on ${session.node.name}, the leader.`, {
        hint: 'It was completed or cancelled, or the leader changed (which loses it).',
      });
    if (st.nonce !== nonce) {
      throw new InputError(
        `The ${what(target)} in progress has nonce ${st.nonce}, not ${nonce}: your share was not sent.`,
        { hint: 'Check the nonce with the operator who started the rekey.' },
      );
    }
    return new Rekey(session, target, st);
  }

  /** Submits one *current* share. */
  async submit(share: string): Promise<RekeyStep> {
    redactor.add(share);
    const client = await this.session.leader(what(this.target));
    let res;
    try {
      res = await rekeyUpdate(client, this.session.paths, this.target, share.trim(), this.nonce);
    } catch (e) {
      throw await this.#explain(e);
    }
    if (!res.complete) {
      this.#progress = res.progress ?? this.#progress + 1;
      return { kind: 'progress', progress: this.#progress, required: res.required ?? this.required };
    }
    const newShares = res.keys_base64 ?? [];
    const encrypted = (res.pgp_fingerprints?.length ?? 0) > 0;
    if (!encrypted) redactor.add(...newShares, ...(res.keys ?? []));
    this.#verificationNonce = res.verification_nonce || undefined;
    return {
      kind: 'complete',
      newShares,
      encrypted,
      fingerprints: res.pgp_fingerprints ?? [],
      verificationNonce: this.#verificationNonce,
    };
  }

  /** Submits one *new* share to prove it (verification mode). Nothing changes until the threshold. */
  async verify(newShare: string): Promise<VerifyStep> {
    redactor.add(newShare);
    const nonce = this.#verificationNonce;
    if (!nonce)
      throw new VaultopsError('This rekey has no verification step (or it has not reached the threshold yet).');
    return verifyShare(this.session, this.target, nonce, newShare);
  }

  async cancel(): Promise<void> {
    await rekeyCancel(this.session.pinnedClient, this.session.paths, this.target, this.nonce);
  }

  async #explain(e: unknown): Promise<unknown> {
    if (!(e instanceof VaultApiError)) return e;
    const text = e.errors.join('; ');
    if (/nonce/i.test(text))
      return new InputError(`The server refused the share for rekey nonce ${this.nonce}: ${text}`, {
        hint: 'The rekey was cancelled or restarted; check `vaultops rekey status`.',
        cause: e,
      });
    if (/already been provided/.test(text))
      return new InputError('That share was already submitted in this round.', { cause: e });
    const st = await rekeyStatus(this.session.pinnedClient, this.session.paths, this.target).catch(() => undefined);
    if (st) this.#progress = st.progress;
    return new InputError(
      `The server refused the share: ${text}. ${st?.started ? `The rekey (nonce ${this.nonce}) is still open; progress is ${st.progress} of ${st.required}.` : 'The rekey is no longer open.'}`,
      { hint: "Check that each share is from this cluster's current key set, then submit again.", cause: e },
    );
  }
}

/** Verification by nonce alone: new holders may prove their shares from their own machines. */
export async function verifyShare(
  session: CeremonySession,
  target: RekeyTarget,
  verificationNonce: string,
  newShare: string,
): Promise<VerifyStep> {
  redactor.add(newShare);
  const client = await session.leader(what(target));
  const st = await rekeyVerifyStatus(client, session.paths, target).catch(() => undefined);
  if (st && st.nonce && st.nonce !== verificationNonce) {
    throw new InputError(
      `The rekey verification in progress has nonce ${st.nonce}, not ${verificationNonce}: your share was not sent.`,
      { hint: 'Ask the operator for the current verification nonce.' },
    );
  }
  try {
    const res = await rekeyVerifyUpdate(client, session.paths, target, newShare.trim(), verificationNonce);
    if (res.complete) return { kind: 'complete' };
    return { kind: 'progress', progress: res.progress, required: res.t };
  } catch (e) {
    if (e instanceof VaultApiError) {
      const now = await rekeyVerifyStatus(session.pinnedClient, session.paths, target).catch(() => undefined);
      throw new InputError(
        `The server refused the new share: ${e.errors.join('; ')}.${now ? ` Verification progress is ${now.progress} of ${now.t}.` : ''}`,
        {
          hint: 'Each new holder submits the share they decrypted from their own file; the old keys stay valid until verification completes.',
          cause: e,
        },
      );
    }
    throw e;
  }
}

/**
 * Writes each holder's new share to its own file (0600, never overwriting): an armored PGP
 * message when the holders gave keys (`gpg -d` opens it), else refused unless `allowClear`.
 */
export async function writeHolderFiles(
  dir: string,
  step: Extract<RekeyStep, { kind: 'complete' }>,
  fingerprints: readonly string[],
  allowClear = false,
): Promise<string[]> {
  if (!step.encrypted && !allowClear)
    throw new VaultopsError('Refusing to write new shares in clear to files.', {
      hint: 'Give one --pgp-key per holder.',
    });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files: string[] = [];
  for (let i = 0; i < step.newShares.length; i++) {
    const fpr = fingerprints[i]?.toUpperCase().slice(-16) ?? 'clear';
    const file = join(dir, `holder-${i + 1}-${fpr}.${step.encrypted ? 'asc' : 'txt'}`);
    const body = step.encrypted ? await armorVaultCiphertext(step.newShares[i]!) : `${step.newShares[i]!}\n`;
    const fd = openSync(file, 'wx', 0o600);
    try {
      writeSync(fd, body);
    } finally {
      closeSync(fd);
    }
    files.push(file);
  }
  return files;
}

/**
 * Checks, before a rekey starts, that the holder files can be written: without verification the
 * new shares exist only in the server's answer, so a directory we cannot write would lose them.
 */
export function prepareOutDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new InputError(`Cannot write the new shares to ${dir} (${(e as NodeJS.ErrnoException).code ?? 'error'}).`, {
      hint: 'Choose a directory this user can write; nothing was started.',
    });
  }
  const clash = readdirSync(dir).filter((f) => /^holder-\d+-/.test(f));
  if (clash.length)
    throw new InputError(`${dir} already holds holder files (${clash.slice(0, 3).join(', ')}).`, {
      hint: 'Use an empty directory: share files are never overwritten. Nothing was started.',
    });
}
