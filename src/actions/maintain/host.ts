import { z } from 'zod';
import { defineAction } from '../types.js';
import { maintainNode, MaintenanceHaltedError } from '../../maintenance/node-maintenance.js';
import { serviceManager } from '../../ssh/services.js';
import type { Host } from '../../ssh/host.js';
import { defaultUnit, maintenanceWaits } from './waits.js';

export default defineAction({
  name: 'maintain.host',
  description:
    "Maintain one node's host with the rolling upgrade's gates and waits: the gate (every node a healthy voter, failure tolerance >= 1), then with reboot or restart_service a clean stop (a leader's stop lets a healthy standby take over; never a step-down), the command or script (its exit code and output tail are recorded, redacted), the reboot, then start, unseal and wait until a healthy caught-up voter, then the stabilization time. A failed command brings the node back and fails the step.",
  schema: z
    .strictObject({
      command: z.string().min(1).optional().describe('Shell command run on the host (through sudo when ssh.sudo).'),
      script: z.string().min(1).optional().describe('Local script copied to the host and run there (sh).'),
      reboot: z.boolean().default(false).describe('Reboot the host after the command; wait for SSH, service, node.'),
      restart_service: z
        .boolean()
        .default(false)
        .describe('Stop the server before the command and start it after (implied by reboot).'),
      unseal_keys: z
        .array(z.string().min(1))
        .optional()
        .describe('Unseal shares (Shamir), to unseal the node after a restart or reboot.'),
      command_timeout: z.number().int().min(1).default(600).describe('Seconds the command may run.'),
      wait: z.number().int().min(1).default(120).describe('Seconds each wait on the node may take.'),
    })
    .refine((a) => !(a.command && a.script), { message: 'give command or script, not both' })
    .refine((a) => a.command || a.script || a.reboot || a.restart_service, {
      message: 'nothing to do: give a command, a script, reboot or restart_service',
    }),
  changes: true,
  gates: ['every node a healthy voter, failure tolerance >= 1 before the node is touched', 'the leader goes last'],
  describe: (args, node) =>
    [
      `${node?.name ?? 'the node'}:`,
      args.reboot || args.restart_service ? 'stop the server (a clean stop),' : undefined,
      args.command ? `run \`${args.command}\`,` : args.script ? `run the script ${args.script},` : undefined,
      args.reboot ? 'reboot, wait for SSH,' : undefined,
      args.reboot || args.restart_service ? 'start, unseal,' : undefined,
      'wait until a healthy caught-up voter, stabilization',
    ]
      .filter(Boolean)
      .join(' '),
  async run(ctx, args) {
    const spec = ctx.spec.nodes.find((n) => n.name === ctx.node?.name);
    if (!spec) return { status: 'failed', message: 'maintain.host needs a node target (standbys, leader, node:NAME)' };
    if (!spec.ssh)
      return { status: 'failed', message: `node ${spec.name} has no ssh settings: maintenance must reach its host` };
    const timeoutMs = args.wait * 1000;
    const waits = await maintenanceWaits(ctx, spec, { unsealKeys: args.unseal_keys, timeoutMs });
    const isLeader = (await ctx.cluster.findLeader()).node.name === spec.name;
    const unit = defaultUnit(ctx);
    let host: Host = await ctx.openHost(spec);
    try {
      const r = await maintainNode({
        name: spec.name,
        host,
        reopenHost: () => ctx.openHost(spec),
        serviceOn: (h) => serviceManager(h, spec.service, unit),
        isLeader,
        work: {
          command: args.command,
          script: args.script,
          reboot: args.reboot,
          restartService: args.restart_service,
          commandTimeoutMs: args.command_timeout * 1000,
        },
        waits,
        timeoutMs,
        emit: (m) => ctx.log(m),
      });
      host = r.host;
      const did = [
        r.command ? `command exited ${r.command.exitCode}` : undefined,
        r.newLeader ? `leader handed to ${r.newLeader}` : undefined,
        r.rebooted ? 'rebooted' : r.restarted ? 'restarted' : undefined,
      ].filter(Boolean);
      // The journal keeps the message: the exit code and the output's last lines, redacted.
      const tail = r.command?.tail.length ? `; output tail: ${r.command.tail.slice(-10).join(' | ')}` : '';
      return {
        status: 'changed',
        message: `${did.join(', ')}; healthy voter again in ${(r.ms / 1000).toFixed(1)} s${isLeader ? ' (was the leader)' : ''}${tail}`,
        data: { command: r.command, new_leader: r.newLeader, rebooted: r.rebooted, restarted: r.restarted, ms: r.ms },
      };
    } catch (e) {
      if (!(e instanceof MaintenanceHaltedError) || !e.command) throw e;
      return {
        status: 'failed',
        message: `${e.message}${e.command.tail.length ? ` Output tail: ${e.command.tail.slice(-10).join(' | ')}` : ''}`,
        details: [...e.details],
        data: { exit_code: e.command.exitCode, timed_out: e.command.timedOut, tail: e.command.tail },
      };
    } finally {
      host.close();
    }
  },
});
