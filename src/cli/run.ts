import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ExitCode } from '../core/exit-codes.js';
import { InputError } from '../core/errors.js';
import { stateDir } from '../core/state-dir.js';
import { prepare, execute, lockModeOf, parseVarFlags, type Prepared } from '../playbook/runner.js';
import { openDoor, type Door } from '../playbook/door.js';
import { catchInterrupts } from './interrupts.js';
import { listRuns, readRun, sha256 } from '../playbook/journal.js';
import { readFileSync } from 'node:fs';
import { makePrompter } from '../ui/prompter.js';
import { jsonReporter, listrReporter, planLines, plainReporter, fmtMs, type Reporter } from '../ui/reporters.js';
import { err, out, table } from '../ui/output.js';

export interface RunOptions {
  inventory: string;
  cluster?: string;
  var?: string[];
  json?: boolean;
  nonInteractive?: boolean;
  confirm?: string;
  yes?: boolean;
  breakLock?: boolean;
}

/** Built-in playbooks can be named without a path: `vaultops run unseal`. */
export function resolvePlaybook(name: string): string {
  if (existsSync(name)) return name;
  const builtIn = new URL(`../../playbooks/${name.replace(/\.ya?ml$/, '')}.yml`, import.meta.url);
  if (existsSync(builtIn)) return builtIn.pathname;
  throw new InputError(`No playbook ${name}.`, {
    hint: 'Give a path to a YAML playbook, or the name of a built-in one in playbooks/ (health-check, unseal, ...).',
  });
}

export async function planCommand(playbookArg: string, o: RunOptions): Promise<void> {
  const prompter = makePrompter({ nonInteractive: true });
  const p = await prepare({
    playbookFile: resolvePlaybook(playbookArg),
    inventoryFile: o.inventory,
    clusterName: o.cluster,
    vars: parseVarFlags(o.var),
    prompter,
    stateDir: stateDir(),
    planOnly: true,
  });
  await p.cluster.release();
  if (o.json) out.json(p.plan);
  else for (const l of planLines(p.plan)) out.line(l);
}

export async function runCommand(playbookArg: string, o: RunOptions): Promise<void> {
  const prompter = makePrompter({ nonInteractive: o.nonInteractive, confirm: o.confirm });
  const p = await prepare({
    playbookFile: resolvePlaybook(playbookArg),
    inventoryFile: o.inventory,
    clusterName: o.cluster,
    vars: parseVarFlags(o.var),
    prompter,
    stateDir: stateDir(),
    planOnly: false,
  });
  try {
    await runPrepared(p, o, prompter, undefined);
  } finally {
    await p.cluster.release();
  }
}

async function runPrepared(
  p: Prepared,
  o: RunOptions,
  prompter: ReturnType<typeof makePrompter>,
  resume: { runId: string; done: Map<string, string> } | undefined,
): Promise<void> {
  // Everything is asked before the first change: the plan is shown, the locks are taken (a held
  // lock refuses before anyone types anything), then the confirmations.
  if (!o.json) for (const l of planLines(p.plan)) err.line(l);
  const interrupts = catchInterrupts(
    'stopping at the next safe point (after the current step; always: blocks still run)',
  );
  let door: Door | undefined;
  try {
    door = await openDoor({
      stateDir: stateDir(),
      cluster: p.cluster,
      clusterName: p.clusterName,
      spec: p.spec,
      operation: p.playbook.name,
      mode: lockModeOf(p),
      breakLock: o.breakLock === true,
      runId: resume?.runId,
      resumeOf: resume?.runId,
      signal: interrupts.signal,
      warn: (m) => err.line(`warning: ${m}`),
    });
    interrupts.onHardExit(() => door?.closeNow());
    for (const expected of p.plan.confirmations) {
      await prompter.confirm({ message: `This run changes cluster ${p.clusterName}.`, expected, source: '--confirm' });
    }
    const changing = p.plan.instances.some((i) => i.changes && !i.skip);
    if (prompter.interactive && changing && !o.yes && p.plan.confirmations.length === 0) {
      const choice = await prompter.select({
        message: 'Run this plan?',
        choices: ['run', 'stop'] as const,
        default: 'run',
        source: '--yes',
      });
      if (choice !== 'run') {
        err.line('Stopped before anything changed.');
        return;
      }
    }
    const reporter: Reporter = o.json
      ? jsonReporter()
      : process.stdout.isTTY && !process.env['CI']
        ? await listrReporter(p.plan)
        : plainReporter();
    const result = await execute(p, {
      emit: reporter.emit,
      door,
      hardSignal: interrupts.hardSignal,
      stateDir: stateDir(),
      prompter,
      resume,
      onStart: (id) => interrupts.setResumeHint(`Resume later with: vaultops resume ${id} -i ${o.inventory}`),
      onProgress: (progress) => interrupts.onHardExit(() => progress.leftUndone()),
    });
    await reporter.done();
    if (result.status !== 'ok' && !o.json) {
      err.line(`Run ${result.runId} ${result.status}${result.message ? `: ${result.message}` : ''}.`);
      err.line(`Fix the cause, then continue with: vaultops resume ${result.runId} -i ${o.inventory}`);
    }
    process.exitCode =
      result.status === 'ok' ? ExitCode.ok : result.status === 'interrupted' ? ExitCode.interrupted : ExitCode.failed;
  } finally {
    interrupts.dispose();
    await door?.close();
  }
}

export async function resumeCommand(runId: string, o: RunOptions): Promise<void> {
  const dir = stateDir();
  const run = readRun(dir, runId);
  if (!run) throw new InputError(`No run ${runId} in ${dir}.`, { hint: 'List runs with `vaultops runs`.' });
  if (run.status === 'ok') {
    out.line(`Run ${runId} already finished ok; nothing to resume.`);
    return;
  }
  let text = '';
  try {
    text = readFileSync(run.meta.playbookFile, 'utf8');
  } catch {
    throw new InputError(`Run ${runId} used the playbook ${run.meta.playbookFile}, which cannot be read now.`, {
      hint: 'Put the playbook back where it was, or start a new run.',
    });
  }
  if (sha256(text) !== run.meta.playbookSha256) {
    throw new InputError(
      `The playbook ${run.meta.playbookFile} changed since the run started, so its recorded plan no longer matches it.`,
      {
        hint: 'Put the playbook back as it was (the journal has its sha256) to resume, or start a new run with `vaultops run`.',
      },
    );
  }
  const prompter = makePrompter({ nonInteractive: o.nonInteractive, confirm: o.confirm });
  const inventory = o.inventory ?? run.meta.inventory;
  const given = { ...run.meta.givenVars, ...parseVarFlags(o.var) };
  const p = await prepare({
    playbookFile: run.meta.playbookFile,
    inventoryFile: inventory,
    clusterName: run.meta.cluster,
    vars: given,
    prompter,
    stateDir: dir,
    planOnly: false,
  });
  try {
    // Continue exactly the recorded plan. Finished instances are skipped; the unfinished one and
    // everything after it run again, and gate steps are checked again first.
    const done = new Map<string, string>();
    for (const [key, v] of run.outcomes)
      if (v.status === 'ok' || v.status === 'changed' || v.status === 'skipped') done.set(key, v.status);
    const recorded = run.meta.plan;
    const gates = new Set(recorded.instances.filter((i) => i.gate).map((i) => i.key));
    for (const g of gates) done.delete(g);
    p.plan = { ...recorded, live: p.plan.live, instances: recorded.instances.map((i) => ({ ...i, skip: undefined })) };
    if (!o.json)
      err.line(
        `Resuming run ${runId}: ${done.size} of ${recorded.instances.length} step instances are done; gates are checked again.`,
      );
    await runPrepared(p, { ...o, inventory }, prompter, { runId, done });
  } finally {
    await p.cluster.release();
  }
}

export async function runsCommand(o: { json?: boolean }): Promise<void> {
  const runs = listRuns(stateDir());
  if (o.json) {
    out.json(
      runs.map((r) => ({
        id: r.meta.id,
        playbook: r.meta.playbook,
        cluster: r.meta.cluster,
        status: r.status,
        started: r.meta.startedAt,
        ended: r.endedAt,
        user: r.meta.user,
      })),
    );
    return;
  }
  if (!runs.length) {
    out.line('No runs yet.');
    return;
  }
  for (const l of table(
    runs.map((r) => [r.meta.id, r.meta.playbook, r.meta.cluster, r.status, r.meta.startedAt, r.meta.user]),
    ['RUN', 'PLAYBOOK', 'CLUSTER', 'STATUS', 'STARTED', 'USER'],
  ))
    out.line(l);
}

export async function runsShowCommand(runId: string, o: { json?: boolean }): Promise<void> {
  const run = readRun(stateDir(), runId);
  if (!run) throw new InputError(`No run ${runId}.`, { hint: 'List runs with `vaultops runs`.' });
  if (o.json) {
    out.json({ ...run.meta, status: run.status, ended: run.endedAt, outcomes: Object.fromEntries(run.outcomes) });
    return;
  }
  out.line(`Run ${run.meta.id}: ${run.meta.playbook} on ${run.meta.cluster} — ${run.status}`);
  out.line(
    `  by ${run.meta.user}@${run.meta.host}, started ${run.meta.startedAt}${run.endedAt ? `, ended ${run.endedAt}` : ''}`,
  );
  out.line(
    `  playbook ${run.meta.playbookFile} (sha256 ${run.meta.playbookSha256.slice(0, 12)}), inventory ${resolve(run.meta.inventory)}`,
  );
  for (const i of run.meta.plan.instances) {
    const o = run.outcomes.get(i.key);
    const state = o
      ? `${o.status}${o.message ? `: ${o.message}` : ''} (${fmtMs(o.ms)})`
      : run.started.has(i.key)
        ? 'started, not finished'
        : 'not run';
    out.line(`  #${String(i.seq).padEnd(3)} ${i.node ?? 'cluster'}  ${i.name}: ${state}`);
  }
}
