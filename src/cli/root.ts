import { InputError, InterruptedError, VaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import { RootGeneration, WrongShareError, type ShareResult } from '../ceremony/generate-root.js';
import { huntRootTokens, revokeRootTokens, revokeTokenValue } from '../vault/root-tokens.js';
import { readPublicKeyFile, armorVaultCiphertext } from '../secrets/pgp.js';
import { resolveSecretString } from '../secrets/refs.js';
import { lookupAccessor, revokeAccessor } from '../vault/ceremonies.js';
import { out, err, table } from '../ui/output.js';
import {
  claimPrivateFile,
  confirmCluster,
  openCeremony,
  ShareSource,
  writeNewPrivateFile,
  type CeremonyCliOptions,
  type OpenCeremony,
  type PrivateFileClaim,
} from './ceremony-common.js';
import { throughDoor } from './through-door.js';

interface GenerateOptions extends CeremonyCliOptions {
  pgpKey?: string;
  sharesFrom?: string;
  tokenOut?: string;
  encryptedOut?: string;
  show?: boolean;
  cancelPending?: boolean;
  status?: boolean;
  breakLock?: boolean;
}

/**
 * `vaultops root generate`: start an attempt (local OTP, or the operator's PGP key), show the
 * nonce, collect the threshold of shares, decode, and hand the token to one place only
 * (a new 0600 file, or this terminal once). An OTP attempt that cannot finish is cancelled: its
 * OTP lives only in this process, so nobody else could ever decode it.
 */
export async function rootGenerateCommand(o: GenerateOptions): Promise<void> {
  const c = await openCeremony(o);
  try {
    if (o.status) return await printStatus(c, o);
    await throughDoor(
      c.conn,
      { operation: 'root generate', breakLock: o.breakLock, onInterrupt: 'cancelling the root token generation' },
      (door) => generate(c, o, door.signal),
    );
  } finally {
    await c.close();
  }
}

async function generate(c: OpenCeremony, o: GenerateOptions, signal: AbortSignal): Promise<void> {
  const pending = await RootGeneration.pending(c.session);
  if (pending) await handlePending(c, o, pending.nonce, pending.progress, pending.required);
  const pgpKey = o.pgpKey ? await readPublicKeyFile(o.pgpKey) : undefined;
  if (!pgpKey && !o.tokenOut && !o.show) {
    throw new InputError('The new root token needs somewhere to go.', {
      hint: 'Pass --token-out FILE (created 0600), --show (printed once at a terminal), or --pgp-key FILE (the token comes back encrypted to that key).',
    });
  }
  if (o.show && !c.prompter.interactive)
    throw new InputError('--show prints the token at a terminal only, and this is not one.', {
      hint: 'Use --token-out FILE or --pgp-key FILE.',
    });
  // Every output is claimed before a token exists: a path that cannot be written must fail now,
  // not after a root token was minted that then has nowhere to go.
  const outFile = pgpKey ? o.encryptedOut : o.tokenOut;
  const claim = outFile !== undefined ? claimPrivateFile(outFile) : undefined;
  let delivered = false;
  try {
    const attempt = await RootGeneration.start(c.session, pgpKey ? { pgpKey } : {});
    err.line(`Root token generation started on ${c.session.node.name} (the leader; every call goes there).`);
    err.line(`Nonce: ${attempt.nonce}`);
    err.line(
      `Shares needed: ${attempt.required}${pgpKey ? `; the token will be encrypted to ${pgpKey.fingerprint}` : '; OTP generated here and never shown'}.`,
    );
    err.line(
      `Holders elsewhere can contribute with: vaultops root contribute -i ${o.inventory} --nonce ${attempt.nonce}`,
    );
    let result: Extract<ShareResult, { kind: 'complete' }> | undefined;
    try {
      result = await collect(c, attempt, o.sharesFrom, 'unseal key share (or recovery key share)', signal);
    } finally {
      if (!result && attempt.mode === 'otp') {
        await attempt.cancel().catch(() => undefined);
        err.line(`The attempt ${attempt.nonce} was cancelled: its OTP existed only in this process.`);
      }
    }
    if (!result) {
      err.line(
        `The attempt ${attempt.nonce} stays open for holders to contribute; the token will be encrypted to ${pgpKey?.fingerprint}.`,
      );
      return;
    }
    await deliver(c, o, result, claim);
    delivered = true;
  } finally {
    if (!delivered) claim?.abandon();
  }
}
async function printStatus(c: OpenCeremony, o: GenerateOptions): Promise<void> {
  const st = await RootGeneration.pending(c.session);
  const view = st
    ? {
        started: true,
        node: c.session.node.name,
        nonce: st.nonce,
        progress: st.progress,
        required: st.required,
        pgp_fingerprint: st.pgp_fingerprint || undefined,
      }
    : { started: false, node: c.session.node.name };
  if (o.json) out.json(view);
  else
    out.line(
      st
        ? `Root token generation in progress on ${view.node}: nonce ${st.nonce}, ${st.progress} of ${st.required} shares${st.pgp_fingerprint ? `, PGP ${st.pgp_fingerprint}` : ''}.`
        : `No root token generation in progress on ${view.node}.`,
    );
}

/** A run killed mid-ceremony leaves an attempt behind: offer to cancel it, never decode someone else's. */
async function handlePending(
  c: OpenCeremony,
  o: GenerateOptions,
  nonce: string,
  progress: number,
  required: number,
): Promise<void> {
  const what = `A root token generation is already in progress (nonce ${nonce}, ${progress} of ${required} shares)`;
  let cancel = o.cancelPending === true;
  if (!cancel && c.prompter.interactive) {
    const choice = await c.prompter.select({
      message: `${what}. It may be another operator's, or one a killed run left behind; an OTP attempt can only be decoded by the process that started it.`,
      choices: [
        'cancel it and start a new one',
        'leave it (contribute with `vaultops root contribute --nonce`)',
      ] as const,
      source: '--cancel-pending',
    });
    cancel = choice.startsWith('cancel');
  }
  if (!cancel)
    throw new InputError(`${what}.`, {
      hint: `Contribute to it with \`vaultops root contribute --nonce ${nonce}\`, or cancel it with --cancel-pending.`,
    });
  const { generateRootCancel } = await import('../vault/ceremonies.js');
  await generateRootCancel(await c.session.leader('root token generation'), c.session.paths, nonce);
  err.line(`Cancelled the pending attempt ${nonce}.`);
}

async function collect(
  c: OpenCeremony,
  attempt: RootGeneration,
  ref: string | undefined,
  label: string,
  signal: AbortSignal,
): Promise<Extract<ShareResult, { kind: 'complete' }> | undefined> {
  const source = new ShareSource({ ref, prompter: c.prompter, nonce: attempt.nonce, label });
  if (!ref && !c.prompter.interactive) {
    throw new InputError('No shares: nobody can type them here.', {
      hint: 'Pass --shares-from REF (env:NAME, file:PATH[#field], cmd:COMMAND) or run at a terminal.',
    });
  }
  for (;;) {
    if (signal.aborted)
      throw new InterruptedError('Interrupted before the threshold of shares was reached: no token was made.');
    const share = await source.next();
    if (signal.aborted)
      throw new InterruptedError('Interrupted before the threshold of shares was reached: no token was made.');
    if (share === undefined) {
      const st = await attempt.status();
      throw new InputError(`The shares from ${ref} ran out at ${st.progress} of ${st.required}.`, {
        hint: `Give the threshold of shares, or let holders add theirs with \`vaultops root contribute --nonce ${attempt.nonce}\` (PGP attempts only stay open).`,
      });
    }
    try {
      const r = await attempt.submit(share);
      if (r.kind === 'complete') return r;
      err.line(`Progress: ${r.progress} of ${r.required}`);
    } catch (e) {
      if (e instanceof WrongShareError && e.attemptOpen && c.prompter.interactive) {
        err.line(`! ${e.message}`);
        err.line('The holders of this round submit their shares again.');
        continue;
      }
      throw e;
    }
  }
}

async function deliver(
  c: OpenCeremony,
  o: GenerateOptions,
  result: Extract<ShareResult, { kind: 'complete' }>,
  claim: PrivateFileClaim | undefined,
): Promise<void> {
  if (result.encrypted !== undefined) {
    const armored = await armorVaultCiphertext(result.encrypted);
    if (claim) {
      claim.write(armored);
      err.line(`The new root token, encrypted to the PGP key, is in ${claim.path} (decrypt with \`gpg -d\`).`);
    } else out.line(armored.trimEnd());
    err.line('Revoke it when done: vaultops root revoke --token REF (or --accessor).');
    return;
  }
  const token = result.token!;
  redactor.add(token);
  const own = c.session.pinnedClient.withToken(token);
  let info: Awaited<ReturnType<typeof own.lookupSelf>>;
  try {
    info = await own.lookupSelf();
    if (!info.policies.includes('root'))
      throw new VaultopsError('The decoded token has no root policy: the decode went wrong.');
  } catch (e) {
    // A token exists that we cannot vouch for: it must not outlive this run.
    const revoked = await revokeTokenValue(c.session.pinnedClient, token).then(
      () => true,
      () => false,
    );
    throw new VaultopsError(
      `${(e as Error).message} ${revoked ? 'The new token was revoked.' : 'The new token could not be revoked.'}`,
      {
        hint: revoked
          ? 'Start the ceremony again.'
          : `Find and revoke it with \`vaultops root hunt -i ${o.inventory} --revoke\`.`,
        cause: e,
      },
    );
  }
  err.line(`Accessor of the new root token: ${info.accessor}.`);
  try {
    if (claim) {
      claim.write(`${token}\n`);
      err.line(`The new root token is in ${claim.path} (mode 0600).`);
    } else {
      // The one place a token is shown on purpose: straight to the terminal, never through logs.
      process.stderr.write(`Root token (shown once): ${token}\n`);
    }
  } catch (e) {
    const revoked = await revokeAccessor(c.session.pinnedClient, info.accessor).then(
      () => true,
      () => false,
    );
    throw new VaultopsError(
      `The new root token could not be handed over (${(e as Error).message}). ${revoked ? 'It was revoked.' : `Revoke it: vaultops root revoke -i ${o.inventory} --accessor ${info.accessor}`}`,
      { cause: e },
    );
  }
  err.line(`Revoke it when done: vaultops root revoke -i ${o.inventory} --accessor ${info.accessor}`);
  if (o.json) out.json({ accessor: info.accessor, node: c.session.node.name });
}

interface ContributeOptions extends CeremonyCliOptions {
  nonce: string;
  sharesFrom?: string;
  encryptedOut?: string;
}

/** `vaultops root contribute --nonce N`: a holder on another machine adds their share. */
export async function rootContributeCommand(o: ContributeOptions): Promise<void> {
  const c = await openCeremony(o);
  try {
    const attempt = await RootGeneration.join(c.session, o.nonce);
    if (!o.sharesFrom && !c.prompter.interactive)
      throw new InputError('No share: nobody can type it here.', {
        hint: 'Pass --shares-from REF or run at a terminal.',
      });
    const source = new ShareSource({
      ref: o.sharesFrom,
      prompter: c.prompter,
      nonce: attempt.nonce,
      label: 'unseal key share (or recovery key share)',
    });
    // One share from a person; every share of a reference (normally one).
    for (;;) {
      if (attempt.mode !== 'pgp') {
        // The last share of an OTP attempt would mint a root token that only the starter's OTP
        // decodes, and the starter's process only learns of it from the final answer: it must
        // be submitted at the operator's terminal, or the token lives on, undecodable.
        const st = await attempt.status();
        if (st.progress >= st.required - 1) {
          throw new InputError(
            `This attempt needs one more share (${st.progress} of ${st.required}), and with an OTP the last share must be typed where the ceremony was started.`,
            {
              hint: "Give your share to the operator's terminal, or start the ceremony with --pgp-key so any holder may submit the last share.",
            },
          );
        }
      }
      const share = await source.next();
      if (share === undefined) break;
      const r = await attempt.submit(share);
      if (r.kind === 'progress') {
        err.line(`Progress: ${r.progress} of ${r.required} (nonce ${attempt.nonce})`);
        if (!source.fromReference) break;
        continue;
      }
      err.line('That was the last share: the root token was generated.');
      if (attempt.mode === 'pgp') {
        const armored = await armorVaultCiphertext(r.encrypted ?? '');
        if (o.encryptedOut) writeNewPrivateFile(o.encryptedOut, armored);
        else out.line(armored.trimEnd());
        err.line("It is encrypted to the operator's PGP key; hand it to them.");
      } else {
        // Only reachable if the attempt's mode was unknown to us: useless without the starter's OTP.
        out.line(`Encoded token: ${r.encrypted}`);
        err.line(
          'Give the encoded token to the operator who started the attempt; only their OTP decodes it. Revoke it with `vaultops root hunt --revoke` if it cannot be decoded.',
        );
      }
      break;
    }
  } finally {
    await c.close();
  }
}

interface RevokeOptions extends CeremonyCliOptions {
  accessor?: string;
  token?: string;
  confirm?: string;
  breakLock?: boolean;
}

export async function rootRevokeCommand(o: RevokeOptions): Promise<void> {
  if ((o.accessor === undefined) === (o.token === undefined))
    throw new InputError('Say which token: --accessor ACCESSOR or --token REF (one of them).', {
      hint: 'A token is given as a reference (env:NAME, file:PATH, prompt:LABEL), never on the command line.',
    });
  if (o.token !== undefined && !/^(env|file|prompt|cmd):/.test(o.token)) {
    throw new InputError('--token takes a reference (env:NAME, file:PATH, prompt:LABEL, cmd:COMMAND), not a token.', {
      hint: 'A token on the command line is visible to every user of this machine (ps, /proc). Revoke that token now.',
    });
  }
  const c = await openCeremony(o);
  try {
    await throughDoor(
      c.conn,
      { operation: 'root revoke', breakLock: o.breakLock, onInterrupt: 'stopping after the revocation in progress' },
      () => revoke(c, o),
    );
  } finally {
    await c.close();
  }
}

async function revoke(c: OpenCeremony, o: RevokeOptions): Promise<void> {
  {
    await confirmCluster(
      c.prompter,
      c.conn.name,
      o.confirm,
      `This revokes a token (and its children) on ${c.conn.name}.`,
    );
    if (o.token !== undefined) {
      const token = await resolveSecretString(o.token, {
        askSecret: (label) => c.prompter.secret({ message: label, source: '--token env:NAME or file:PATH' }),
      });
      const { accessor } = await revokeTokenValue(c.session.pinnedClient, token);
      out.line(
        accessor
          ? `Revoked the token with accessor ${accessor}; lookup with it is now refused.`
          : 'The token was already revoked (lookup with it is refused).',
      );
      return;
    }
    const client = await c.session.leader('revocation');
    const before = await lookupAccessor(client, o.accessor!).catch(() => undefined);
    await revokeAccessor(client, o.accessor!);
    const after = await lookupAccessor(client, o.accessor!).catch(() => undefined);
    if (after) throw new VaultopsError(`The token with accessor ${o.accessor} still exists after revocation.`);
    out.line(
      before
        ? `Revoked the token with accessor ${o.accessor} (${before.display_name}, policies ${before.policies.join(',')}).`
        : `No token has accessor ${o.accessor} (any more).`,
    );
  }
}

interface HuntOptions extends CeremonyCliOptions {
  revoke?: boolean;
  confirm?: string;
  keepOwn?: boolean;
  breakLock?: boolean;
}

/** `vaultops root hunt`: tokens with the root policy, by accessor, never the token. */
export async function rootHuntCommand(o: HuntOptions): Promise<void> {
  const c = await openCeremony(o);
  try {
    const client = await c.session.leader('root token hunt');
    if (!client.hasToken)
      throw new InputError('The hunt needs a token with sudo on auth/token/accessors.', {
        hint: 'Set token: in the inventory (or VAULT_TOKEN).',
      });
    const found = await huntRootTokens(client);
    const rows = found.map((r) => [
      r.accessor,
      r.created,
      r.displayName,
      r.path,
      r.isOwn ? "yes (this run's token)" : 'no',
    ]);
    if (o.json && !o.revoke) out.json({ cluster: c.conn.name, root_tokens: found });
    else if (!o.json) {
      out.line(`${found.length} token${found.length === 1 ? '' : 's'} with the root policy on ${c.conn.name}:`);
      if (found.length)
        for (const l of table(rows, ['ACCESSOR', 'CREATED', 'DISPLAY NAME', 'PATH', 'OWN'])) out.line(l);
    }
    if (!o.revoke || found.length === 0) return;
    const targets = o.keepOwn ? found.filter((r) => !r.isOwn) : found;
    if (targets.length === 0) {
      out.line("Nothing to revoke (only this run's own token, kept with --keep-own).");
      return;
    }
    const own = targets.some((r) => r.isOwn);
    await confirmCluster(
      c.prompter,
      c.conn.name,
      o.confirm,
      `This revokes ${targets.length} root token${targets.length === 1 ? '' : 's'}${own ? ", including the inventory's own token (revoked last)" : ''}.${own ? ' Afterwards generate-root on OpenBao >= 2.6 and Vault >= 2.0 needs another privileged token.' : ''}`,
    );
    const revoked = await throughDoor(
      c.conn,
      {
        operation: 'root hunt --revoke',
        breakLock: o.breakLock,
        onInterrupt: 'stopping after the revocation in progress',
      },
      () => revokeRootTokens(client, targets, (m) => err.line(m)),
    );
    if (o.json) out.json({ cluster: c.conn.name, root_tokens: found, revoked });
    else out.line(`Revoked ${revoked.length} root token${revoked.length === 1 ? '' : 's'}.`);
  } finally {
    await c.close();
  }
}
