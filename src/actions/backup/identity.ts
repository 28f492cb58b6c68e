import { InputError } from '../../core/errors.js';
import { identityLoader, type IdentityLoader } from '../../backup/crypto/encryption.js';
import type { BackupStore } from '../../backup/stores/store.js';
import type { ActionContext } from '../types.js';

/**
 * The identity for an action that may meet an encrypted backup: the step's `identity` reference,
 * else the store's `decrypt:`. Resolved through the run's secret resolver (so it is redacted from
 * the journal and every reporter) only when an encrypted file needs it.
 */
export function identityForAction(
  ctx: ActionContext,
  refs: { identity?: string | undefined; passphrase?: string | undefined },
  store: BackupStore | undefined,
): IdentityLoader | undefined {
  // The step's references come from the playbook: a cmd: one would run a command on this machine.
  // Those may come only from the inventory (the store's decrypt:) or the command line (--identity).
  for (const [arg, r] of [
    ['identity', refs.identity],
    ['identity_passphrase', refs.passphrase],
  ] as const) {
    if (r !== undefined && /^\s*cmd:/.test(r)) {
      return () =>
        Promise.reject(
          new InputError(
            `The step's ${arg} is a cmd: reference, which a playbook may not supply (it would run a command on this machine).`,
            {
              hint: 'Set decrypt: { identity: cmd:... } on the store in the inventory, or use an env: or file: reference here.',
            },
          ),
        );
    }
  }
  const ref = refs.identity ?? store?.decryption?.identity;
  const passRef = refs.passphrase ?? (refs.identity === undefined ? store?.decryption?.passphrase : undefined);
  if (ref === undefined) return undefined;
  const one = async (r: string): Promise<string> => {
    const v = await ctx.resolveSecret(r);
    if (Array.isArray(v)) throw new InputError(`Secret reference ${r} gives a list where one key is needed.`);
    return v;
  };
  return identityLoader(async () => ({
    text: await one(ref),
    passphrase: passRef === undefined ? undefined : await one(passRef),
    source: ref,
  }));
}
