import type { Outcome } from '../core/outcome.js';
import type { Plan, PlanInstance } from '../playbook/plan.js';
import type { Emit, Recap, RunEvent } from '../playbook/events.js';
import { redactor } from '../core/redact.js';
import { out, table } from './output.js';

export interface Reporter {
  emit: Emit;
  /** Resolves once everything is on screen. */
  done(): Promise<void>;
}

export function outcomeText(o: Outcome): string {
  switch (o.status) {
    case 'skipped':
      return `skipped: ${o.reason}`;
    case 'ok':
    case 'changed':
      return o.message ? `${o.status}: ${o.message}` : o.status;
    default:
      return `${o.status}: ${o.message}`;
  }
}

function where(i: PlanInstance): string {
  return i.node ? `${i.node} ` : '';
}

/** Plain, timestamped lines for cron and CI logs. */
export function plainReporter(): Reporter {
  const stamp = () => new Date().toISOString();
  let total = 0;
  return {
    emit(e: RunEvent) {
      switch (e.type) {
        case 'run-start':
          total = e.plan.instances.length;
          out.line(
            `${stamp()} run ${e.runId}${e.resumedFrom ? ' (resumed)' : ''}: ${e.plan.playbook} on cluster ${e.plan.cluster}, ${e.plan.instances.length} step instances`,
          );
          break;
        case 'step-start':
          out.line(
            `${stamp()} [${e.instance.seq}/${total}] ${where(e.instance)}${e.instance.name}${e.attempt > 1 ? ` (attempt ${e.attempt})` : ''}...`,
          );
          break;
        case 'step-log':
          out.line(`${stamp()}     ${where(e.instance)}${e.message}`);
          break;
        case 'step-end':
          out.line(
            `${stamp()} [${e.instance.seq}/${total}] ${where(e.instance)}${e.instance.name}: ${outcomeText(e.outcome)} (${fmtMs(e.ms)})`,
          );
          if (e.outcome.status === 'failed') for (const d of e.outcome.details ?? []) out.line(`${stamp()}     ${d}`);
          break;
        case 'run-end':
          for (const l of recapLines(e.recap)) out.line(l);
          out.line(`${stamp()} run ${e.runId} ${e.status} in ${fmtMs(e.ms)}${e.message ? `: ${e.message}` : ''}`);
          break;
      }
    },
    async done() {},
  };
}

/** One JSON object per line, for machines. */
export function jsonReporter(): Reporter {
  return {
    emit(e: RunEvent) {
      out.jsonLine({ ts: new Date().toISOString(), ...e });
    },
    async done() {},
  };
}

/** A live listr2 task list on a terminal: one task per step, nested per node. */
export async function listrReporter(plan: Plan, options: { recap?: boolean } = {}): Promise<Reporter> {
  const { Listr } = await import('listr2');
  type Pending = {
    resolve: (o: Outcome | undefined) => void;
    promise: Promise<Outcome | undefined>;
    settled: boolean;
    output?: (s: string) => void;
  };
  const pending = new Map<number, Pending>();
  for (const inst of plan.instances) {
    let resolve!: (o: Outcome | undefined) => void;
    const promise = new Promise<Outcome | undefined>((r) => (resolve = r));
    const p: Pending = {
      resolve: (o) => {
        if (!p.settled) {
          p.settled = true;
          resolve(o);
        }
      },
      promise,
      settled: false,
    };
    pending.set(inst.seq, p);
  }
  // Instances of one step may run side by side: only steps before the current one are "not run".
  const firstOfStep = new Map<string, number>();
  for (const inst of plan.instances) if (!firstOfStep.has(inst.stepId)) firstOfStep.set(inst.stepId, inst.seq);
  const settleBefore = (seq: number, stepId?: string) => {
    const limit = stepId === undefined ? seq : (firstOfStep.get(stepId) ?? seq);
    for (const [s, p] of pending) if (s < limit && !p.settled) p.resolve(undefined);
  };
  const stepTask = (inst: PlanInstance) => ({
    title: `${inst.node ? `${inst.node}: ` : ''}${inst.description}`,
    task: async (_: unknown, task: { skip: (m: string) => void; output: string; title: string }) => {
      const p = pending.get(inst.seq)!;
      p.output = (s) => (task.output = redactor.redact(s));
      const o = await p.promise;
      if (o === undefined) return task.skip(`${task.title} — not run`);
      if (o.status === 'skipped') return task.skip(`${task.title} — skipped: ${redactor.redact(o.reason)}`);
      if (o.status === 'failed' || o.status === 'unreachable') throw new Error(redactor.redact(o.message));
      if (o.message) task.title = `${task.title} — ${redactor.redact(o.message)}`;
      return undefined;
    },
    rendererOptions: { persistentOutput: false },
  });
  const groups: PlanInstance[][] = [];
  for (const inst of plan.instances) {
    const last = groups[groups.length - 1];
    if (last && last[0]!.stepId === inst.stepId) last.push(inst);
    else groups.push([inst]);
  }
  const tasks = groups.map((g) => {
    const first = g[0]!;
    const label = `${first.stepId}. ${first.name}${first.section !== 'main' ? ` (${first.section})` : ''}`;
    if (g.length === 1 && !first.node) return { ...stepTask(first), title: label };
    return {
      title: label,
      task: (_: unknown, task: { newListr: (t: unknown[], o: unknown) => unknown }) =>
        task.newListr(g.map(stepTask), { concurrent: !first.serial, exitOnError: false }),
    };
  });
  const list = new Listr(tasks as never, {
    concurrent: false,
    exitOnError: false,
    rendererOptions: { collapseSubtasks: false, showErrorMessage: true, collapseErrors: false },
  });
  const running = list.run().catch(() => undefined);
  let recap: { recap: Recap; line: string } | undefined;
  return {
    emit(e: RunEvent) {
      switch (e.type) {
        case 'step-start':
          settleBefore(e.instance.seq, e.instance.stepId);
          break;
        case 'step-log':
          pending.get(e.instance.seq)?.output?.(e.message);
          break;
        case 'step-end':
          settleBefore(e.instance.seq, e.instance.stepId);
          pending.get(e.instance.seq)?.resolve(e.outcome);
          break;
        case 'run-end':
          settleBefore(Number.MAX_SAFE_INTEGER);
          recap = {
            recap: e.recap,
            line: `run ${e.runId} ${e.status} in ${fmtMs(e.ms)}${e.message ? `: ${e.message}` : ''}`,
          };
          break;
        default:
          break;
      }
    },
    async done() {
      await running;
      if (recap && options.recap !== false) {
        out.line();
        for (const l of recapLines(recap.recap)) out.line(l);
        out.line(recap.line);
      }
    },
  };
}

export function recapLines(recap: Recap): string[] {
  const names = Object.keys(recap).sort((a, b) => (a === 'cluster' ? 1 : b === 'cluster' ? -1 : a.localeCompare(b)));
  if (!names.length) return ['RECAP: nothing ran'];
  const rows = names.map((node) => {
    const r = recap[node]!;
    return [
      node,
      ':',
      `ok=${r.ok}`,
      `changed=${r.changed}`,
      `skipped=${r.skipped}`,
      `failed=${r.failed}`,
      `unreachable=${r.unreachable}`,
    ];
  });
  return [
    'RECAP',
    ...table(rows, ['', '', '', '', '', '', ''])
      .slice(1)
      .map((l) => `  ${l}`),
  ];
}

export function fmtMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** The plan as a person reads it: every step instance in order, with gates and skip reasons. */
export function planLines(plan: Plan): string[] {
  const lines = [
    `Plan: ${plan.playbook} on cluster ${plan.cluster} (leader now: ${plan.live.leader ?? 'none'}; sealed: ${plan.live.sealed_count}; unreachable: ${plan.live.unreachable_count})`,
  ];
  let lastStep = '';
  for (const i of plan.instances) {
    if (i.stepId !== lastStep) {
      lines.push(
        `  ${i.stepId}. ${i.name}${i.section !== 'main' ? ` [${i.section === 'always' ? 'always runs' : 'only if the block fails'}]` : ''}${i.serial ? ` [serial ${i.serial}]` : ''}`,
      );
      lastStep = i.stepId;
    }
    const mark = i.skip ? 'skip' : i.changes ? 'CHANGE' : 'check';
    lines.push(
      `     #${String(i.seq).padEnd(3)} ${mark.padEnd(6)} ${i.action} ${i.node ? `on ${i.node}` : '(cluster)'}: ${i.skip ? `skipped: ${i.skip}` : i.description}${i.gate ? ' [gate]' : ''}${i.gates.length && !i.skip ? ` (checks: ${i.gates.join(', ')})` : ''}${i.when && !i.skip ? ` (when ${i.when})` : ''}`,
    );
  }
  for (const n of plan.notes) lines.push(`  note: ${n}`);
  if (plan.confirmations.length) lines.push(`  needs typed confirmation: ${plan.confirmations.join(', ')}`);
  const changing = plan.instances.filter((i) => i.changes && !i.skip).length;
  lines.push(`${plan.instances.length} step instances, ${changing} may change the cluster.`);
  return lines;
}
