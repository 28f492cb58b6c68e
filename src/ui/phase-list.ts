import type { Plan, PlanInstance } from '../playbook/plan.js';
import { listrReporter } from './reporters.js';

/** One phase of a command that is not a playbook (an upgrade: gates, staging, each node...). */
export interface Phase {
  key: string;
  node?: string | undefined;
  title: string;
}

export interface PhaseList {
  /** A progress line for a phase; phases before it are done. */
  log(key: string, message: string): void;
  skip(key: string, reason: string): void;
  /** Ends the list: the phase in hand failed with `error`, or every phase reached is done. */
  finish(error?: unknown): Promise<void>;
}

/**
 * The live task list `vaultops run` shows on a terminal, for a command whose phases are known
 * before it starts: the phases become the instances of a plan and the engine's listr2 reporter
 * draws them, so every door looks the same to the person at the terminal.
 */
export async function phaseTaskList(name: string, cluster: string, phases: readonly Phase[]): Promise<PhaseList> {
  const instances: PlanInstance[] = phases.map((p, i) => ({
    seq: i + 1,
    key: p.key,
    stepId: String(i + 1),
    name: p.title,
    action: name,
    node: undefined,
    section: 'main',
    changes: true,
    gate: false,
    gates: [],
    description: p.title,
  }));
  const plan = { playbook: name, cluster, instances, confirmations: [], notes: [] } as unknown as Plan;
  const reporter = await listrReporter(plan, { recap: false });
  const started = Date.now();
  let current = -1;
  const moveTo = (index: number) => {
    while (current < index) {
      if (current >= 0)
        reporter.emit({ type: 'step-end', instance: instances[current]!, outcome: { status: 'ok' }, ms: 0 });
      current++;
      reporter.emit({ type: 'step-start', instance: instances[current]!, attempt: 1 });
    }
  };
  const indexOf = (key: string) => instances.findIndex((i) => i.key === key);
  return {
    log(key, message) {
      const i = indexOf(key);
      if (i < 0) return;
      if (i > current) moveTo(i);
      reporter.emit({ type: 'step-log', instance: instances[i]!, message });
    },
    skip(key, reason) {
      const i = indexOf(key);
      if (i < 0) return;
      if (i > current) moveTo(i);
      reporter.emit({ type: 'step-end', instance: instances[i]!, outcome: { status: 'skipped', reason }, ms: 0 });
    },
    async finish(error) {
      if (current >= 0) {
        const outcome =
          error === undefined
            ? ({ status: 'ok' } as const)
            : ({ status: 'failed', message: error instanceof Error ? error.message : String(error) } as const);
        reporter.emit({ type: 'step-end', instance: instances[current]!, outcome, ms: 0 });
      }
      reporter.emit({
        type: 'run-end',
        runId: name,
        status: error === undefined ? 'ok' : 'failed',
        recap: {},
        ms: Date.now() - started,
      });
      await reporter.done();
    },
  };
}
