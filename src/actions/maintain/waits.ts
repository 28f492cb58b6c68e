import { GateError } from '../../core/errors.js';
import type { NodeSpec } from '../../inventory/schema.js';
import type { NodeWaits } from '../../maintenance/node-maintenance.js';
import type { ServiceManager } from '../../ssh/services.js';
import { UpgradeHaltedError } from '../../upgrade/members.js';
import { autopilotStabilization, startAndRejoin, waitForNewLeader } from '../../upgrade/node-waits.js';
import { gateBeforeNode } from '../../upgrade/rolling.js';
import type { ActionContext } from '../types.js';

/**
 * The rolling upgrade's gates and waits, handed to maintenance (use cases do not import each
 * other): the same gate before a node goes down (every node a healthy voter, failure tolerance
 * >= 1), the same wait for a new active node, the same start-unseal-rejoin wait and the same
 * stabilization time after each node. Their halts are worded for maintenance here.
 */
export async function maintenanceWaits(
  ctx: ActionContext,
  spec: NodeSpec,
  o: { unsealKeys?: string[] | undefined; timeoutMs: number },
): Promise<NodeWaits> {
  const node = ctx.cluster.nodes.find((n) => n.name === spec.name)!;
  const leader = await ctx.cluster.findLeader();
  return {
    gate: async () => {
      try {
        await gateBeforeNode({ cluster: ctx.cluster, clusterName: ctx.clusterName }, { spec });
      } catch (e) {
        if (!(e instanceof GateError)) throw e;
        throw new GateError(e.message, {
          details: e.details,
          hint: 'Nothing was changed on this node. Fix the cluster (`vaultops status -i INV`), then resume the run.',
        });
      }
    },
    newLeader: (stopped) => waitForNewLeader(ctx.cluster, stopped, o.timeoutMs, ctx.signal),
    rejoin: async (service: ServiceManager) => {
      try {
        const { stableForMs } = await startAndRejoin(
          { cluster: ctx.cluster, unsealKeys: o.unsealKeys, signal: ctx.signal },
          { spec, node, service },
          undefined,
          o.timeoutMs,
          (e) => ctx.log('message' in e ? e.message : e.reason),
        );
        return stableForMs;
      } catch (e) {
        if (!(e instanceof UpgradeHaltedError)) throw e;
        throw new UpgradeHaltedError(
          e.node,
          e.message.replace(/^Upgrade halted/, 'Maintenance halted'),
          e.details,
          'Read the log above. The other nodes were not touched and keep quorum; resume the run once the node is fixed.',
        );
      }
    },
    stabilizationMs: await autopilotStabilization(leader.client),
  };
}

export function defaultUnit(ctx: ActionContext): string {
  return ctx.spec.flavor === 'openbao' ? 'openbao' : 'vault';
}
