import { resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import { runCommand } from './run.js';

export interface MaintainCliOptions {
  inventory: string;
  cluster?: string;
  command?: string;
  script?: string;
  config?: string;
  reboot?: boolean;
  restartService?: boolean;
  nonInteractive?: boolean;
  confirm?: string;
  yes?: boolean;
  breakLock?: boolean;
  json?: boolean;
}

/**
 * `vaultops maintain`: the built-in host-maintenance playbook (or config-rollout with --config)
 * through the engine, so the plan, the door (locks, typed confirmation), the journal and
 * `vaultops resume` are the same as for `vaultops run`. Local files are passed as absolute paths:
 * a resume may run from another directory.
 */
export async function maintainCommand(o: MaintainCliOptions): Promise<void> {
  const run = { ...o, var: [] as string[] };
  if (o.config !== undefined) {
    if (o.command !== undefined || o.script !== undefined || o.reboot || o.restartService)
      throw new InputError('--config goes alone: it rolls a configuration out, with its own restart or reload.', {
        hint: 'Run the host maintenance (--command/--script/--reboot/--restart-service) and the configuration roll-out as two runs.',
      });
    run.var.push(`config=${resolve(o.config)}`);
    return runCommand('config-rollout', run);
  }
  if (o.command !== undefined && o.script !== undefined)
    throw new InputError('--command and --script go one at a time.', {
      hint: 'Give the command to run on each host, or a local script to copy there and run.',
    });
  if (o.command === undefined && o.script === undefined && !o.reboot && !o.restartService)
    throw new InputError('Nothing to do on the hosts.', {
      hint: 'Give --command CMD or --script FILE (and --reboot or --restart-service if the node must go down), or --config FILE.',
    });
  if (o.command !== undefined) run.var.push(`command=${o.command}`);
  if (o.script !== undefined) run.var.push(`script=${resolve(o.script)}`);
  if (o.reboot) run.var.push('reboot=true');
  if (o.restartService) run.var.push('restart_service=true');
  return runCommand('host-maintenance', run);
}
