import { z } from 'zod';
import { defineAction } from '../types.js';
import { immutableUpgrade } from '../../upgrade/immutable.js';
import { binaryArgs, immutableStateFile, noPlaybookTofu, binarySourceOf } from './args-and-state-files.js';

export default defineAction({
  name: 'upgrade.retire_node',
  description:
    "Immutable upgrade: an old node leaves. A standby: remove-peer, then a clean stop (systemctl stop: the unit's KillSignal) and wait until gone. The active node only when no other old node is a member: a clean stop (a new node takes over), then remove-peer on the new leader. Quorum and autopilot health are checked before and after.",
  schema: z.strictObject({
    ...binaryArgs,
    wait: z.number().int().min(1).default(120).describe('Seconds each wait may take.'),
  }),
  changes: true,
  gates: [
    'every new node a healthy voter on the target',
    'autopilot healthy, failure tolerance >= 1',
    'the old leader goes last, when no other old node is left',
  ],
  describe: (_args, node) =>
    `retire ${node?.name ?? 'the node'}: remove-peer + stop (the leader: stop, then remove-peer)`,
  async run(ctx, args) {
    if (!ctx.node)
      return { status: 'failed', message: 'upgrade.retire_node needs a node target (standbys, leader, node:NAME)' };
    const r = await immutableUpgrade({
      cluster: ctx.cluster,
      clusterName: ctx.clusterName,
      spec: ctx.spec,
      binary: binarySourceOf(args),
      waitTimeoutMs: args.wait * 1000,
      stateFile: immutableStateFile(ctx),
      signal: ctx.signal,
      openHost: (n) => ctx.openHost(n, { trustOnFirstUse: noPlaybookTofu(args) }),
      onEvent: (e) => ctx.log('node' in e ? `${e.node}: ${'message' in e ? e.message : e.reason}` : e.message),
      only: { retire: [ctx.node.name] },
    });
    if (!r.removed.includes(ctx.node.name))
      return { status: 'skipped', reason: `${ctx.node.name} already left the cluster` };
    return { status: 'changed', message: `${ctx.node.name} removed from the cluster and stopped` };
  },
});
