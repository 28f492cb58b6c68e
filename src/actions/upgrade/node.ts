import { z } from 'zod';
import { defineAction } from '../types.js';
import { remoteBinaryVersion, STAGED_SUFFIX } from '../../upgrade/binary-install.js';
import { memberFor } from '../../upgrade/members.js';
import { autopilotStabilization } from '../../upgrade/node-waits.js';
import { gateBeforeNode, upgradeMember } from '../../upgrade/rolling.js';
import { compareVersions } from '../../core/version.js';
import { binaryArgs, defaultUnit, progressFile, noPlaybookTofu, binarySourceOf } from './args-and-state-files.js';

export default defineAction({
  name: 'upgrade.node',
  description:
    "Upgrade one node in place: a clean stop (systemctl stop: the unit's KillSignal) and wait until gone, swap in the staged binary (previous kept), start, unseal, wait until it is a healthy caught-up voter on the new version, then the stabilization time. The leader is only taken when every other node is already on the new version.",
  schema: z.strictObject({
    ...binaryArgs,
    unseal_keys: z
      .array(z.string().min(1))
      .optional()
      .describe('Unseal shares (Shamir); a secret_list var such as {{ vars.unseal_keys }}.'),
    wait: z.number().int().min(1).default(120).describe('Seconds each wait on the node may take.'),
    rollback_on_failure: z
      .boolean()
      .default(false)
      .describe('Put the previous binary back when the node does not come back, then fail.'),
  }),
  changes: true,
  gates: [
    'cluster healthy, failure tolerance >= 1 before the node goes down',
    'the leader goes last',
    'node not already on the target version',
  ],
  describe: (_args, node) =>
    `upgrade ${node?.name ?? 'the node'}: stop, swap binary, start, unseal, wait healthy voter + caught up + stabilization`,
  async run(ctx, args) {
    const spec = ctx.spec.nodes.find((n) => n.name === ctx.node?.name);
    if (!spec) return { status: 'failed', message: 'upgrade.node needs a node target (standbys, leader, node:NAME)' };
    const host = await ctx.openHost(spec, { trustOnFirstUse: noPlaybookTofu(args) });
    try {
      const m = memberFor(ctx.cluster, spec, host, defaultUnit(ctx));
      const target = await remoteBinaryVersion(host, `${m.binaryPath}${STAGED_SUFFIX}`, args.sha256).catch(
        () => undefined,
      );
      const health = await ctx.cluster.client(spec.name).health();
      const current = health.body.version ?? '0.0.0';
      if (target === undefined) {
        return compareVersions(current, '0.0.0') > 0
          ? { status: 'failed', message: `no staged binary on ${spec.name}: run upgrade.preflight first` }
          : { status: 'failed', message: `${spec.name} does not report a version` };
      }
      if (compareVersions(current, target) >= 0) return { status: 'skipped', reason: `already on ${current}` };
      const probes = await ctx.cluster.probeAll();
      const leader = await ctx.cluster.findLeader(probes);
      const isLeader = leader.node.name === spec.name;
      if (isLeader) {
        const older = probes.filter(
          (p) => p.node.name !== spec.name && compareVersions(p.health?.body.version ?? '0.0.0', target) < 0,
        );
        if (older.length)
          return {
            status: 'failed',
            message: `${spec.name} is the leader and ${older.map((p) => p.node.name).join(', ')} still run an older version: the leader goes last, so that it fails over to an upgraded node`,
          };
      }
      const unsealKeys = args.unseal_keys;
      const o = {
        cluster: ctx.cluster,
        clusterName: ctx.clusterName,
        binary: binarySourceOf(args),
        unsealKeys,
        signal: ctx.signal,
        onNodeFailure: args.rollback_on_failure ? ('rollback' as const) : ('halt' as const),
        progressFile: progressFile(ctx),
      };
      await gateBeforeNode(o, m);
      const stabilization = await autopilotStabilization(leader.client);
      const t = await upgradeMember(o, m, isLeader, target, stabilization, args.wait * 1000, (e) =>
        ctx.log('message' in e ? e.message : e.reason),
      );
      return {
        status: 'changed',
        message: `${current} -> ${target} in ${(t.totalMs / 1000).toFixed(1)} s${isLeader ? ' (was the leader)' : ''}`,
        data: t,
      };
    } finally {
      host.close();
    }
  },
});
