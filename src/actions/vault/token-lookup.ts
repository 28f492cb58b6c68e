import { z } from 'zod';
import { defineAction } from '../types.js';

/** Looks a token up with itself: proves it works and shows its policies (never the token). */
export default defineAction({
  name: 'vault.token_lookup',
  description: 'Check that a token works (lookup-self) and, optionally, that it carries a policy.',
  schema: z.strictObject({
    token: z.string().min(1).describe('The token, e.g. {{ root.token }}.'),
    policy: z.string().optional().describe('Fail unless the token has this policy (e.g. root).'),
  }),
  changes: false,
  describe: (args) => `look the token up${args.policy ? ` and require policy ${args.policy}` : ''}`,
  async run(ctx, args) {
    const { client } = await ctx.cluster.findLeader();
    const info = await client.withToken(args.token).lookupSelf();
    if (args.policy && !info.policies.includes(args.policy))
      return {
        status: 'failed',
        message: `the token (accessor ${info.accessor}) lacks policy ${args.policy}: ${info.policies.join(', ')}`,
      };
    return {
      status: 'ok',
      message: `token works (accessor ${info.accessor}, policies ${info.policies.join(', ')})`,
      data: { accessor: info.accessor, policies: info.policies },
    };
  },
});
