import { z } from 'zod';
import { defineAction } from '../types.js';

export default defineAction({
  name: 'vault.autopilot_health',
  description: 'Check that autopilot reports the cluster healthy with enough failure tolerance.',
  schema: z.strictObject({
    min_failure_tolerance: z
      .number()
      .int()
      .min(0)
      .default(1)
      .describe('Nodes the cluster must be able to lose and keep quorum.'),
  }),
  changes: false,
  gates: ['autopilot healthy', 'failure tolerance'],
  describe: (args) => `check autopilot is healthy with failure tolerance >= ${args.min_failure_tolerance ?? 1}`,
  async run(ctx, args) {
    if (!ctx.cluster.hasToken)
      return {
        status: 'failed',
        message: 'reading autopilot needs a token: set token: in the inventory (env:, file: or prompt:)',
      };
    const leader = await ctx.cluster.findLeader();
    const state = await leader.client.autopilotState();
    const data = {
      healthy: state.healthy,
      failure_tolerance: state.failure_tolerance,
      leader: state.leader,
      voters: state.voters,
    };
    if (!state.healthy) {
      const sick = Object.values(state.servers ?? {})
        .filter((s) => !s.healthy)
        .map((s) => s.name || s.id);
      return {
        status: 'failed',
        message: `autopilot reports the cluster unhealthy${sick.length ? ` (unhealthy: ${sick.join(', ')})` : ''}`,
        data,
      };
    }
    if (state.failure_tolerance < args.min_failure_tolerance) {
      return {
        status: 'failed',
        message: `failure tolerance is ${state.failure_tolerance}, below ${args.min_failure_tolerance}: losing a node now would lose quorum`,
        data,
      };
    }
    return {
      status: 'ok',
      message: `healthy, failure tolerance ${state.failure_tolerance}, ${state.voters.length} voters, leader ${state.leader}`,
      data,
    };
  },
});
