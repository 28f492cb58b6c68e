import { z } from 'zod';
import { defineAction } from '../types.js';
import { verifyUpgrade } from '../../upgrade/end-state.js';

export default defineAction({
  name: 'upgrade.verify',
  description: 'After an upgrade: exactly one leader, every node on the version, sys/version-history lists it.',
  schema: z.strictObject({
    version: z.string().min(1).describe('The version every node must report, e.g. {{ preflight.target }}.'),
  }),
  changes: false,
  describe: (args) => `one leader, all nodes on ${args.version ?? 'the staged version'}, sys/version-history lists it`,
  async run(ctx, args) {
    const v = await verifyUpgrade(ctx.cluster, ctx.clusterName, args.version);
    return { status: 'ok', message: `leader ${v.leader}; version history ${v.versionHistory.join(', ')}`, data: v };
  },
});
