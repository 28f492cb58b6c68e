import { resolve } from 'node:path';
import { InputError, InterruptedError } from '../core/errors.js';
import { prepareOutDir, Rekey, verifyShare, writeHolderFiles, type RekeyStep } from '../ceremony/rekey-ceremony.js';
import { readPublicKeyFile } from '../secrets/pgp.js';
import { rekeyCancel, rekeyVerifyStatus, type RekeyTarget } from '../vault/ceremonies.js';
import { out, err } from '../ui/output.js';
import { openCeremony, ShareSource, type CeremonyCliOptions, type OpenCeremony } from './ceremony-common.js';
import { throughDoor } from './through-door.js';

interface RekeyCommon extends CeremonyCliOptions {
  recovery?: boolean;
}

function target(o: RekeyCommon): RekeyTarget {
  return o.recovery ? 'recovery' : 'barrier';
}

interface StartOptions extends RekeyCommon {
  shares: string;
  threshold: string;
  pgpKey?: string[];
  verify?: boolean;
  outDir: string;
  sharesFrom?: string;
  confirm?: string;
  breakLock?: boolean;
}

/**
 * `vaultops rekey start`: new share count and threshold, one PGP key per new holder, optional
 * verification; collects the current shares and writes each new share, encrypted to its holder,
 * to its own file. Without verification the old shares stop working at that moment.
 */
export async function rekeyStartCommand(o: StartOptions): Promise<void> {
  const shares = Number(o.shares);
  const threshold = Number(o.threshold);
  const pgpKeys = await Promise.all((o.pgpKey ?? []).map((f) => readPublicKeyFile(f)));
  if (pgpKeys.length === 0)
    throw new InputError('New shares are only handed out encrypted: give one --pgp-key FILE per new holder.', {
      hint: `${shares} holders, ${shares} public keys (gpg --export KEYID > holder.gpg).`,
    });
  prepareOutDir(resolve(o.outDir));
  const c = await openCeremony(o, { confirm: o.confirm });
  try {
    // Without verification the old shares stop working the moment the threshold is reached: the
    // cluster name is typed (or given with --confirm) before anything starts.
    const confirm =
      o.verify === true
        ? undefined
        : {
            prompter: c.prompter,
            message: `Rekey ${c.conn.name} without verification: the current shares stop working as soon as the new ones are made.`,
          };
    await throughDoor(
      c.conn,
      {
        operation: 'rekey',
        breakLock: o.breakLock,
        confirm,
        onInterrupt: 'stopping the rekey (it stays open; cancel it with `vaultops rekey cancel`)',
      },
      async (door) => {
        const rekey = await Rekey.start(c.session, {
          target: target(o),
          shares,
          threshold,
          pgpKeys,
          verify: o.verify === true,
        });
        err.line(
          `Rekey started on ${c.session.node.name} (the leader; every call goes there): ${rekey.newShares} new shares, threshold ${rekey.newThreshold}${rekey.verificationRequired ? ', with verification' : ''}.`,
        );
        err.line(`Nonce: ${rekey.nonce}`);
        err.line(
          `Current shares needed: ${rekey.required}. Holders elsewhere: vaultops rekey contribute -i ${o.inventory} --nonce ${rekey.nonce}`,
        );
        const step = await collect(c, rekey, o.sharesFrom, false, door.signal);
        if (step) await finish(o, step);
      },
    );
  } finally {
    await c.close();
  }
}

interface ContributeOptions extends RekeyCommon {
  nonce: string;
  sharesFrom?: string;
  outDir: string;
}

export async function rekeyContributeCommand(o: ContributeOptions): Promise<void> {
  const c = await openCeremony(o);
  try {
    prepareOutDir(resolve(o.outDir));
    const rekey = await Rekey.join(c.session, target(o), o.nonce);
    const step = await collect(c, rekey, o.sharesFrom, true);
    if (step) await finish(o, step);
  } finally {
    await c.close();
  }
}

async function collect(
  c: OpenCeremony,
  rekey: Rekey,
  ref: string | undefined,
  onePerson = false,
  signal?: AbortSignal,
): Promise<Extract<RekeyStep, { kind: 'complete' }> | undefined> {
  if (!ref && !c.prompter.interactive)
    throw new InputError('No shares: nobody can type them here.', {
      hint: 'Pass --shares-from REF (env:NAME, file:PATH[#field], cmd:COMMAND) or run at a terminal.',
    });
  const source = new ShareSource({
    ref,
    prompter: c.prompter,
    nonce: rekey.nonce,
    label: `current ${rekey.target === 'barrier' ? 'unseal' : 'recovery'} key share`,
  });
  for (;;) {
    if (signal?.aborted)
      throw new InterruptedError(
        `Interrupted: the rekey (nonce ${rekey.nonce}) stays open at ${rekey.progress} of ${rekey.required}; cancel it with \`vaultops rekey cancel --nonce ${rekey.nonce}\` or let holders contribute.`,
      );
    const share = await source.next();
    if (share === undefined) {
      err.line(
        `Shares from ${ref} used up at ${rekey.progress} of ${rekey.required}; the rekey (nonce ${rekey.nonce}) stays open for the other holders.`,
      );
      return undefined;
    }
    const step = await rekey.submit(share);
    if (step.kind === 'complete') return step;
    err.line(`Progress: ${step.progress} of ${step.required}`);
    if (onePerson && !source.fromReference) return undefined;
  }
}

async function finish(
  o: { outDir: string; inventory: string },
  step: Extract<RekeyStep, { kind: 'complete' }>,
): Promise<void> {
  const files = await writeHolderFiles(resolve(o.outDir), step, step.fingerprints);
  out.line(`New shares written, each encrypted to its holder's key (0600):`);
  for (const f of files) out.line(`  ${f}`);
  if (step.verificationNonce) {
    out.line(`Verification nonce: ${step.verificationNonce}`);
    out.line(
      `The old shares stay valid until ${files.length > 0 ? 'the threshold of new holders' : 'new holders'} prove their shares: vaultops rekey verify -i ${o.inventory} --nonce ${step.verificationNonce}`,
    );
  } else out.line('The rekey is done: the old shares no longer unseal.');
}

interface VerifyOptions extends RekeyCommon {
  nonce: string;
  sharesFrom?: string;
}

/** `vaultops rekey verify --nonce VN`: new holders prove their new shares. */
export async function rekeyVerifyCommand(o: VerifyOptions): Promise<void> {
  const c = await openCeremony(o);
  try {
    if (!o.sharesFrom && !c.prompter.interactive)
      throw new InputError('No new shares: nobody can type them here.', {
        hint: 'Pass --shares-from REF or run at a terminal.',
      });
    const source = new ShareSource({
      ref: o.sharesFrom,
      prompter: c.prompter,
      nonce: o.nonce,
      label: 'NEW key share (decrypted from your file)',
    });
    for (;;) {
      const share = await source.next();
      if (share === undefined) {
        const st = await rekeyVerifyStatus(c.session.pinnedClient, c.session.paths, target(o)).catch(() => undefined);
        err.line(`Verification: ${st?.progress ?? '?'} of ${st?.t ?? '?'}; the old shares are still the valid ones.`);
        return;
      }
      const r = await verifyShare(c.session, target(o), o.nonce, share);
      if (r.kind === 'complete') {
        out.line("Verification complete: the new shares are now the cluster's keys; the old ones no longer unseal.");
        return;
      }
      err.line(`Verification progress: ${r.progress} of ${r.required}`);
      if (!source.fromReference) return;
    }
  } finally {
    await c.close();
  }
}

export async function rekeyStatusCommand(o: RekeyCommon): Promise<void> {
  const c = await openCeremony(o);
  try {
    const st = await Rekey.pending(c.session, target(o));
    const verify = st?.verification_required
      ? await rekeyVerifyStatus(c.session.pinnedClient, c.session.paths, target(o)).catch(() => undefined)
      : undefined;
    const view = st
      ? {
          started: true,
          node: c.session.node.name,
          nonce: st.nonce,
          progress: st.progress,
          required: st.required,
          new_shares: st.n,
          new_threshold: st.t,
          verification_required: st.verification_required === true,
          verification:
            verify && verify.nonce ? { nonce: verify.nonce, progress: verify.progress, required: verify.t } : undefined,
        }
      : { started: false, node: c.session.node.name };
    if (o.json) out.json(view);
    else if (!st) out.line(`No ${o.recovery ? 'recovery-key ' : ''}rekey in progress on ${view.node}.`);
    else {
      out.line(
        `Rekey in progress on ${view.node}: nonce ${st.nonce}, ${st.progress} of ${st.required} current shares, to ${st.n} shares / threshold ${st.t}${st.verification_required ? ', with verification' : ''}.`,
      );
      if (verify?.nonce) out.line(`Verification: nonce ${verify.nonce}, ${verify.progress} of ${verify.t} new shares.`);
    }
  } finally {
    await c.close();
  }
}

interface CancelOptions extends RekeyCommon {
  nonce: string;
}

/** Cancels with the nonce in the body (CVE-2025-4656; a body-less DELETE fails, vault#31649). The old keys stay valid. */
export async function rekeyCancelCommand(o: CancelOptions): Promise<void> {
  const c = await openCeremony(o);
  try {
    const st = await Rekey.pending(c.session, target(o));
    if (!st) {
      out.line('No rekey in progress: nothing to cancel.');
      return;
    }
    if (st.nonce !== o.nonce)
      throw new InputError(`The rekey in progress has nonce ${st.nonce}, not ${o.nonce}: nothing was cancelled.`, {
        hint: 'Check the nonce with `vaultops rekey status`.',
      });
    await rekeyCancel(await c.session.leader('rekey'), c.session.paths, target(o), o.nonce);
    out.line(`Rekey ${o.nonce} cancelled; the current shares stay valid.`);
  } finally {
    await c.close();
  }
}
