import { z } from 'zod';
import { defineAction } from '../types.js';
import { rollOutConfig } from '../../maintenance/config-rollout.js';
import { serviceManager } from '../../ssh/services.js';
import { defaultUnit, maintenanceWaits } from './waits.js';

export default defineAction({
  name: 'maintain.config',
  description:
    "Roll a new server configuration out to one node: stage it next to service.config (owner and mode kept), validate it with the server's own parser (operator diagnose), swap it in keeping the old file as <config>.vaultops-prev, then systemctl reload when only settings the server re-reads on SIGHUP changed, else restart (a leader by a clean stop so a healthy standby takes over); wait until a healthy caught-up voter, then the stabilization time. A node that does not come back gets its old file back and is restarted, then the step fails.",
  schema: z.strictObject({
    config: z.string().min(1).describe('Local path of the new server configuration file.'),
    unseal_keys: z
      .array(z.string().min(1))
      .optional()
      .describe('Unseal shares (Shamir), to unseal the node after a restart.'),
    wait: z.number().int().min(1).default(120).describe('Seconds each wait on the node may take.'),
  }),
  changes: true,
  gates: [
    'every node a healthy voter, failure tolerance >= 1 before the node is touched',
    'the server parses the new file',
    'the leader goes last',
  ],
  describe: (args, node) =>
    `${node?.name ?? 'the node'}: stage ${args.config}, validate, swap (old kept), reload or restart, unseal, wait until a healthy caught-up voter, stabilization; roll back on failure`,
  async run(ctx, args) {
    const spec = ctx.spec.nodes.find((n) => n.name === ctx.node?.name);
    if (!spec)
      return { status: 'failed', message: 'maintain.config needs a node target (standbys, leader, node:NAME)' };
    if (!spec.ssh || !spec.service?.config)
      return {
        status: 'failed',
        message: `node ${spec.name} needs ssh settings and service.config (where its configuration file lives)`,
      };
    const timeoutMs = args.wait * 1000;
    const waits = await maintenanceWaits(ctx, spec, { unsealKeys: args.unseal_keys, timeoutMs });
    const isLeader = (await ctx.cluster.findLeader()).node.name === spec.name;
    const host = await ctx.openHost(spec);
    try {
      const r = await rollOutConfig({
        name: spec.name,
        host,
        service: serviceManager(host, spec.service, defaultUnit(ctx)),
        configPath: spec.service.config,
        binaryPath: spec.service.binary,
        localFile: args.config,
        node: {
          name: spec.name,
          api_addr: spec.api_addr,
          cluster_addr: spec.cluster_addr ?? '',
          host: new URL(spec.api_addr).hostname,
        },
        isLeader,
        waits,
        timeoutMs,
        emit: (m) => ctx.log(m),
      });
      if (r.applied === 'unchanged') return { status: 'ok', message: `${spec.service.config} already holds it` };
      return {
        status: 'changed',
        message: `applied with ${r.applied === 'reload' ? 'systemctl reload' : 'a restart'}${r.newLeader ? `; leader handed to ${r.newLeader}` : ''}; healthy voter again in ${(r.ms / 1000).toFixed(1)} s`,
        data: r,
      };
    } finally {
      host.close();
    }
  },
});
