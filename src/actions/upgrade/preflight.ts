import { z } from 'zod';
import { defineAction } from '../types.js';
import { closeMembers } from '../../upgrade/members.js';
import { preflightUpgrade } from '../../upgrade/rolling.js';
import { binaryArgs, progressFile, noPlaybookTofu, binarySourceOf, shownBinary } from './args-and-state-files.js';

export default defineAction({
  name: 'upgrade.preflight',
  description:
    'Check everything before an upgrade and stage the new binary on every host (verified there); changes no running node.',
  schema: z.strictObject({
    ...binaryArgs,
    unseal_keys: z
      .array(z.string().min(1))
      .optional()
      .describe('Unseal shares, to bring back a node an interrupted run left sealed or down.'),
  }),
  changes: true,
  gates: [
    'binary sha256 matches',
    'all nodes reachable, unsealed, voters',
    'autopilot healthy, failure tolerance >= 1',
    'SSH host keys verified',
    'target version newer than every node (nodes on it are skipped)',
  ],
  describe: (args) =>
    `check the cluster, stage ${shownBinary(args)} on every host (sha256 verified there), read its version`,
  async run(ctx, args) {
    const pre = await preflightUpgrade({
      cluster: ctx.cluster,
      clusterName: ctx.clusterName,
      spec: ctx.spec,
      binary: binarySourceOf(args),
      progressFile: progressFile(ctx),
      unsealKeys: args.unseal_keys,
      signal: ctx.signal,
      openHost: (n) => ctx.openHost(n, { trustOnFirstUse: noPlaybookTofu(args) }),
      onEvent: (e) => ctx.log('node' in e ? `${e.node}: ${'message' in e ? e.message : e.reason}` : e.message),
    });
    closeMembers(pre.members);
    const data = { target: pre.target, from_versions: pre.fromVersions, skipped: pre.skipped.map((s) => s.node) };
    if (pre.skipped.length === pre.members.length)
      return { status: 'ok', message: `every node is already on ${pre.target}`, data };
    return { status: 'changed', message: `staged ${pre.target} on ${pre.members.length} hosts`, data };
  },
});
