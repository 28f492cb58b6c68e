import type { Outcome } from '../core/outcome.js';
import type { Plan, PlanInstance } from './plan.js';
import type { RunStatus } from './journal.js';

/** What the engine tells reporters. Library code never prints: it emits these. */
export type RunEvent =
  | { type: 'run-start'; runId: string; plan: Plan; resumedFrom?: string | undefined }
  | { type: 'step-start'; instance: PlanInstance; attempt: number }
  | { type: 'step-log'; instance: PlanInstance; message: string }
  | { type: 'step-end'; instance: PlanInstance; outcome: Outcome; ms: number }
  | { type: 'run-end'; runId: string; status: RunStatus; recap: Recap; message?: string | undefined; ms: number };

export interface RecapRow {
  ok: number;
  changed: number;
  skipped: number;
  failed: number;
  unreachable: number;
}

/** Per node (and "cluster" for cluster-wide steps), like ansible's PLAY RECAP. */
export type Recap = Record<string, RecapRow>;

export type Emit = (event: RunEvent) => void;
