import { z } from 'zod';
import { defineAction } from '../types.js';
import { preflightMaintenance } from '../../maintenance/preflight.js';
import { serviceManager } from '../../ssh/services.js';
import { defaultUnit } from './waits.js';

export default defineAction({
  name: 'maintain.preflight',
  description:
    'Before host maintenance or a configuration roll-out: every node reachable, unsealed, a voter; autopilot healthy; failure tolerance >= 1; every host reachable over SSH (verified host key) with its server running under its service manager; the local script or configuration readable. Changes nothing.',
  schema: z.strictObject({
    script: z.string().min(1).optional().describe('The local script that will run on each host.'),
    config: z.string().min(1).optional().describe('The local configuration file that will be rolled out.'),
  }),
  changes: false,
  gates: [
    'all nodes reachable, unsealed, voters',
    'autopilot healthy, failure tolerance >= 1',
    'SSH host keys verified, server running on every host',
  ],
  describe: () => 'check the cluster and every host before the first node is touched',
  async run(ctx, args) {
    const unit = defaultUnit(ctx);
    const r = await preflightMaintenance({
      cluster: ctx.cluster,
      clusterName: ctx.clusterName,
      spec: ctx.spec,
      script: args.script,
      config: args.config,
      openHost: (n) => ctx.openHost(n),
      serviceOn: (h, n) => serviceManager(h, n.service, unit),
    });
    return { status: 'ok', message: r.join('; ') };
  },
});
