import type { Command } from 'commander';
import { collect } from './options.js';

/** vaultops plan|run|resume|runs: the playbook engine. */
export function registerRunCommands(program: Command): void {
  const runOpts = (c: Command) =>
    c
      .requiredOption('-i, --inventory <file>', 'inventory file')
      .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
      .option(
        '--var <name=value>',
        'set a playbook var (repeatable); secrets only as references: env:NAME, file:PATH, prompt:',
        collect,
        [],
      )
      .option('--json', 'one JSON event per line');
  runOpts(
    program
      .command('plan')
      .argument('<playbook>', 'playbook file, or a built-in name (health-check, unseal, ...)')
      .description('print every step the run would take, per node, with gates and skips; changes nothing'),
  ).action(async (pb, o) => (await import('../run.js')).planCommand(pb, o));
  runOpts(
    program
      .command('run')
      .argument('<playbook>', 'playbook file, or a built-in name')
      .description('run a playbook: the plan first, every input asked before the first change'),
  )
    .option('--non-interactive', 'never ask: missing answers are errors naming the flag that supplies them')
    .option('--confirm <text>', 'the typed confirmation a playbook asks for (usually the cluster name)')
    .option('-y, --yes', 'do not ask "Run this plan?" at a terminal')
    .option('--break-lock', 'take over a stale cluster lock (its process is gone) or one held from another host')
    .action(async (pb, o) => (await import('../run.js')).runCommand(pb, o));
  // A preset: the built-in unseal playbook through the engine, its var given as a flag.
  program
    .command('unseal')
    .description('unseal every sealed node, one at a time, then check every node votes (the built-in unseal playbook)')
    .requiredOption('-i, --inventory <file>', 'inventory file')
    .option('--cluster <name>', 'cluster in the inventory (optional when it has one)')
    .option(
      '--keys <ref>',
      "key shares from env:NAME or file:PATH[#field] (default: the inventory's unseal.keys, else typed)",
    )
    .option('--non-interactive', 'never ask: missing shares are an error naming --keys')
    .option('-y, --yes', 'do not ask "Run this plan?" at a terminal')
    .option('--break-lock', 'take over a stale cluster lock (its process is gone) or one held from another host')
    .option('--json', 'one JSON event per line')
    .action(async (o: { keys?: string; var?: string[] } & Record<string, unknown>) =>
      (await import('../run.js')).runCommand('unseal', {
        ...(o as { inventory: string }),
        var: o.keys ? [`unseal_keys=${o.keys}`] : [],
      }),
    );
  program
    .command('resume')
    .argument('<run-id>', 'the run to continue (see `vaultops runs`)')
    .description('continue an interrupted or failed run from the step that did not finish, checking gates again')
    .option('-i, --inventory <file>', 'inventory file (default: the one the run used)')
    .option('--var <name=value>', 'set or override a var (repeatable)', collect, [])
    .option('--non-interactive', 'never ask')
    .option('--confirm <text>', 'typed confirmation')
    .option('-y, --yes', 'do not ask "Run this plan?"')
    .option('--break-lock', 'take over a stale lock')
    .option('--json', 'one JSON event per line')
    .action(async (id, o) => (await import('../run.js')).resumeCommand(id, o));
  const runs = program
    .command('runs')
    .description('runs recorded in the journal')
    .option('--json', 'machine-readable output')
    .action(async (o) => (await import('../run.js')).runsCommand(o));
  runs
    .command('show')
    .argument('<run-id>')
    .description('one run: who, when, every step and its outcome')
    .option('--json', 'machine-readable output')
    .action(async (id, o) => (await import('../run.js')).runsShowCommand(id, o));
}
