import { z } from 'zod';
import { defineAction } from '../types.js';
import { revokeTokenValue } from '../../vault/root-tokens.js';
import { revokeAccessor, lookupAccessor } from '../../vault/ceremonies.js';

/**
 * Revokes a token (and its children) by value or by accessor, and proves it is gone. Meant for
 * `always:` blocks: with nothing to revoke (the generate step failed before making a token) it is
 * skipped, not failed, so the clean-up never hides the real error.
 */
export default defineAction({
  name: 'vault.revoke_token',
  description: 'Revoke a token (e.g. a generated root token) and check that lookups with it are refused.',
  schema: z.strictObject({
    token: z.string().optional().describe('The token, e.g. {{ root.token }} from a vault.generate_root step.'),
    accessor: z.string().optional().describe("Or its accessor (revoked with the inventory's token)."),
  }),
  changes: true,
  describe: (args) =>
    args.accessor
      ? `revoke the token with accessor ${args.accessor}`
      : 'revoke the generated token and check it is gone',
  async run(ctx, args) {
    const { client } = await ctx.cluster.findLeader();
    if (args.token) {
      const { accessor } = await revokeTokenValue(client, args.token);
      return accessor
        ? { status: 'changed', message: `revoked the token with accessor ${accessor}; lookups with it are refused` }
        : { status: 'ok', message: 'the token was already revoked' };
    }
    if (args.accessor) {
      await revokeAccessor(client, args.accessor);
      const still = await lookupAccessor(client, args.accessor).then(
        () => true,
        () => false,
      );
      if (still)
        return { status: 'failed', message: `the token with accessor ${args.accessor} still exists after revocation` };
      return { status: 'changed', message: `revoked the token with accessor ${args.accessor}` };
    }
    return { status: 'skipped', reason: 'no token to revoke (none was generated)' };
  },
});
