import { z } from 'zod';
import { defineAction } from '../types.js';
import { redactor } from '../../core/redact.js';
import { RootGeneration, WrongShareError } from '../../ceremony/generate-root.js';
import { CeremonySession } from '../../ceremony/session.js';

/**
 * Generates a root token from a quorum of shares with a locally made OTP (never shown) and hands
 * it to later steps through `register` only. Pair it with `vault.revoke_token` in an `always:`
 * block so the token is revoked whether the steps in between succeed or fail.
 */
export default defineAction({
  name: 'vault.generate_root',
  description:
    'Generate a root token from the threshold of unseal (or recovery) key shares, for later steps of this run only.',
  schema: z.strictObject({
    keys: z
      .array(z.string().min(1))
      .min(1, 'at least the threshold of key shares')
      .describe('Key shares (a secret_list var, e.g. {{ vars.unseal_keys }}).'),
    cancel_pending: z
      .boolean()
      .default(false)
      .describe('Cancel an attempt already in progress (e.g. left by a killed run) instead of failing.'),
  }),
  changes: true,
  gates: ['leader reachable', 'no other root generation in progress'],
  describe: () => 'generate a root token on the leader (local OTP, never shown), for later steps only',
  async run(ctx, args) {
    const session = await CeremonySession.open(ctx.cluster);
    const pending = await RootGeneration.pending(session);
    if (pending) {
      if (!args.cancel_pending) {
        return {
          status: 'failed',
          message: `a root token generation is already in progress on ${session.node.name} (nonce ${pending.nonce}, ${pending.progress} of ${pending.required}); set cancel_pending: true or cancel it with \`vaultops root generate --cancel-pending\``,
        };
      }
      const { generateRootCancel } = await import('../../vault/ceremonies.js');
      await generateRootCancel(await session.leader('root token generation'), session.paths, pending.nonce);
      ctx.log(`cancelled the pending attempt ${pending.nonce}`);
    }
    const attempt = await RootGeneration.start(session);
    ctx.log(`root token generation on ${session.node.name}: nonce ${attempt.nonce}, ${attempt.required} shares needed`);
    try {
      for (const key of args.keys) {
        if (ctx.signal.aborted) throw new Error('interrupted while submitting shares');
        const r = await attempt.submit(key);
        if (r.kind === 'progress') {
          ctx.log(`progress ${r.progress} of ${r.required}`);
          continue;
        }
        const token = r.token!;
        redactor.add(token);
        // From here a root token exists: whatever happens, it is registered so the always: block
        // can revoke it, and its accessor is logged (journaled) when it can be learnt.
        try {
          const info = await session.pinnedClient.withToken(token).lookupSelf();
          ctx.log(`root token minted: accessor ${info.accessor}`);
          return {
            status: 'changed',
            message: `root token generated on ${session.node.name} (accessor ${info.accessor}); revoke it in an always: block`,
            data: { token, accessor: info.accessor, node: session.node.name },
          };
        } catch (e) {
          return {
            status: 'failed',
            message: `a root token was generated on ${session.node.name} but could not be looked up (${e instanceof Error ? e.message : String(e)}); the always: block revokes it`,
            data: { token, node: session.node.name },
          };
        }
      }
      throw new Error(`the ${args.keys.length} shares given did not reach the threshold (${attempt.required})`);
    } catch (e) {
      // The OTP dies with this step: an attempt left open could never be decoded. Cancel it.
      await attempt.cancel().catch(() => undefined);
      if (e instanceof WrongShareError) return { status: 'failed', message: `${e.message} The attempt was cancelled.` };
      throw e;
    }
  },
});
