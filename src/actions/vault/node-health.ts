import { z } from 'zod';
import { defineAction } from '../types.js';
import { UnreachableError } from '../../core/errors.js';

export default defineAction({
  name: 'vault.node_health',
  description: 'Check that a node answers, is unsealed and (optionally) is a Raft voter.',
  schema: z.strictObject({
    unsealed: z.boolean().default(true).describe('Fail when the node is sealed.'),
    voter: z.boolean().default(true).describe('Fail when the node is not a Raft voter (needs a token).'),
  }),
  changes: false,
  gates: ['node reachable', 'node unsealed'],
  describe: (args, node) =>
    `check ${node?.name ?? 'node'} is reachable${args.unsealed ? ', unsealed' : ''}${args.voter ? ', a voter' : ''}`,
  async run(ctx, args) {
    const node = ctx.node!;
    let health;
    try {
      health = await ctx.cluster.client(node.name).health();
    } catch (e) {
      if (e instanceof UnreachableError) return { status: 'unreachable', message: e.message };
      throw e;
    }
    const data = { state: health.state, version: health.body.version, sealed: health.body.sealed };
    if (args.unsealed && (health.state === 'sealed' || health.body.sealed))
      return { status: 'failed', message: `${node.name} is sealed`, data };
    if (health.state === 'uninitialized') return { status: 'failed', message: `${node.name} is not initialised`, data };
    if (args.voter) {
      if (!ctx.cluster.hasToken)
        return {
          status: 'failed',
          message: 'checking voters needs a token: set token: in the inventory (env:, file: or prompt:)',
        };
      const leader = await ctx.cluster.findLeader();
      const config = await leader.client.raftConfiguration();
      const server = config.config.servers.find(
        (s) => s.node_id === node.name || s.address.split(':')[0] === new URL(node.apiAddr).hostname,
      );
      if (!server) return { status: 'failed', message: `${node.name} is not in the Raft configuration`, data };
      if (!server.voter)
        return {
          status: 'failed',
          message: `${node.name} is not a voter (yet): autopilot promotes healthy nodes after the stabilization time`,
          data,
        };
    }
    return { status: 'ok', message: `${health.state}, ${health.body.version ?? 'version unknown'}`, data };
  },
});
