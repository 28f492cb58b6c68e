import { z } from 'zod';
import { defineAction } from '../types.js';
import { immutableUpgrade } from '../../upgrade/immutable.js';
import { binaryArgs, immutableStateFile, noPlaybookTofu, binarySourceOf } from './args-and-state-files.js';

export default defineAction({
  name: 'upgrade.join_new_nodes',
  description:
    "Immutable upgrade: each of the inventory's new_nodes in turn is installed and started when it is not running (SSH, service manager), joined (sys/storage/raft/join, or its retry_join), unsealed (Shamir) and waited on until autopilot has promoted it to a healthy, caught-up voter. New nodes already voters are skipped.",
  schema: z.strictObject({
    ...binaryArgs,
    unseal_keys: z
      .array(z.string().min(1))
      .optional()
      .describe('Unseal shares (Shamir); a secret_list var such as {{ vars.unseal_keys }}.'),
    wait: z.number().int().min(1).default(120).describe('Seconds each wait on a node may take.'),
  }),
  changes: true,
  gates: ['cluster healthy, failure tolerance >= 1 (first run)', 'a running new node already runs the target version'],
  describe: (_args) => 'join the new nodes one at a time: install/start, raft join, unseal, wait until healthy voters',
  async run(ctx, args) {
    const r = await immutableUpgrade({
      cluster: ctx.cluster,
      clusterName: ctx.clusterName,
      spec: ctx.spec,
      binary: binarySourceOf(args),
      unsealKeys: args.unseal_keys,
      waitTimeoutMs: args.wait * 1000,
      stateFile: immutableStateFile(ctx),
      signal: ctx.signal,
      openHost: (n) => ctx.openHost(n, { trustOnFirstUse: noPlaybookTofu(args) }),
      onEvent: (e) => ctx.log('node' in e ? `${e.node}: ${'message' in e ? e.message : e.reason}` : e.message),
      only: { join: true },
    });
    if (!r.joined.length)
      return { status: 'ok', message: `every new node is already a healthy voter on ${r.target}`, data: r };
    return { status: 'changed', message: `${r.joined.join(', ')} joined as healthy voters on ${r.target}`, data: r };
  },
});
