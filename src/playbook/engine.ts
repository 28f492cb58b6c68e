import { InterruptedError, VaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import type { ActionContext, Outcome, Prompter } from '../actions/types.js';
import type { AnyAction } from '../actions/registry.js';
import type { ClusterSpec } from '../inventory/schema.js';
import type { ClusterClient } from '../vault/cluster.js';
import { resolveSecret } from '../secrets/refs.js';
import { evaluate, parseExpr, render, truthy } from '../core/expr.js';
import type { Playbook, Step } from './load.js';
import { clusterScope, liveState, unwrapTemplate, type LiveState, type Plan, type PlanInstance } from './plan.js';
import type { Journal, RunStatus } from './journal.js';
import type { Emit, Recap } from './events.js';
import { openNodeHost } from '../ssh/open-host.js';
import { resolveStore } from '../backup/stores/store.js';

export interface EngineInput {
  runId: string;
  playbook: Playbook;
  plan: Plan;
  actions: Map<string, AnyAction>;
  cluster: ClusterClient;
  clusterName: string;
  spec: ClusterSpec;
  vars: Record<string, unknown>;
  prompter: Prompter;
  journal: Journal;
  emit: Emit;
  signal: AbortSignal;
  stateDir: string;
  inventoryFile?: string | undefined;
  /** Instances already finished by the run being resumed (key -> status). */
  done?: Map<string, string> | undefined;
  threshold: number | null;
}

export interface EngineResult {
  status: RunStatus;
  recap: Recap;
  message?: string | undefined;
  failedAt?: PlanInstance | undefined;
}

/**
 * Executes a plan in order. Steps of a block stop at the first failure, then `rescue` runs, then
 * `always` runs whatever happened (also after Ctrl-C), so clean-up such as revoking a root token
 * cannot be skipped. Nothing here prints or prompts: it emits events and asks the prompter.
 */
export async function executePlan(input: EngineInput): Promise<EngineResult> {
  const recap: Recap = {};
  const registered: Record<string, unknown> = {};
  let failedAt: PlanInstance | undefined;
  let failMessage: string | undefined;
  let interrupted = false;
  let live: LiveState = input.plan.live;
  const byStep = new Map<string, PlanInstance[]>();
  for (const inst of input.plan.instances) {
    const list = byStep.get(inst.stepId) ?? [];
    list.push(inst);
    byStep.set(inst.stepId, list);
  }

  const count = (inst: PlanInstance, outcome: Outcome) => {
    const row = (recap[inst.node ?? 'cluster'] ??= { ok: 0, changed: 0, skipped: 0, failed: 0, unreachable: 0 });
    row[outcome.status]++;
  };

  const refreshLive = async () => {
    const probes = await input.cluster.probeAll();
    live = liveState(input.cluster.nodes, probes, input.threshold);
  };

  const runInstance = async (step: Step, inst: PlanInstance): Promise<Outcome> => {
    const prior = input.done?.get(inst.key);
    if (prior && prior !== 'failed' && prior !== 'unreachable') {
      return { status: 'skipped', reason: `already ${prior} in the run being resumed` };
    }
    if (inst.skip !== undefined && !step.when) return { status: 'skipped', reason: inst.skip };
    const action = input.actions.get(step.action!)!;
    const nodeSpec = inst.node ? input.cluster.nodes.find((n) => n.name === inst.node) : undefined;
    const scope = () => ({
      vars: { ...input.vars },
      cluster: clusterScope(input.clusterName, input.spec),
      live,
      node: inst.node ? live.nodes[inst.node] : undefined,
      ...registered,
    });
    if (step.when) {
      if (!truthy(evaluate(parseExpr(unwrapTemplate(step.when)), scope()))) return { status: 'skipped', reason: `condition is false: ${step.when}` };
    }
    let args: unknown;
    try {
      args = action.schema.parse(render(step.with, scope()));
    } catch (e) {
      const issues = (e as { issues?: Array<{ path: PropertyKey[]; message: string }> }).issues;
      const why = issues ? issues.map((i) => `${i.path.map(String).join('.') || 'with'}: ${i.message}`).join('; ') : (e as Error).message;
      return { status: 'failed', message: `arguments of ${action.name} are invalid at run time: ${redactor.redact(why)}` };
    }
    const ctx: ActionContext = {
      cluster: input.cluster,
      clusterName: input.clusterName,
      spec: input.spec,
      node: nodeSpec,
      vars: scope(),
      resolveSecret: (ref) => resolveSecret(ref, { askSecret: (label) => input.prompter.secret({ message: label, source: ref }) }),
      prompter: input.prompter,
      log: (message) => input.emit({ type: 'step-log', instance: inst, message: redactor.redact(message) }),
      signal: input.signal,
      stateDir: input.stateDir,
      inventoryFile: input.inventoryFile,
      openHost: (node, options) => openNodeHost(node, options),
      openStore: (choice) => resolveStore(choice, input.clusterName, input.spec.stores, process.cwd()),
    };
    let outcome: Outcome = { status: 'failed', message: 'not run' };
    for (let attempt = 1; attempt <= step.retries + 1; attempt++) {
      if (input.signal.aborted && attempt > 1) break;
      input.journal.append({ type: 'step-start', ts: new Date().toISOString(), key: inst.key, seq: inst.seq, attempt });
      input.emit({ type: 'step-start', instance: inst, attempt });
      try {
        outcome = await action.run(ctx, args);
      } catch (e) {
        outcome =
          e instanceof VaultopsError && e.exitCode === 3
            ? { status: 'unreachable', message: redactor.redact(e.message) }
            : { status: 'failed', message: redactor.redact(e instanceof Error ? e.message : String(e)), details: e instanceof VaultopsError ? e.details.map((d) => redactor.redact(d)) : undefined };
      }
      const data = 'data' in outcome ? outcome.data : undefined;
      const done = step.until ? outcome.status !== 'failed' && outcome.status !== 'unreachable' && truthy(evaluate(parseExpr(unwrapTemplate(step.until)), { ...scope(), result: data })) : outcome.status !== 'failed' && outcome.status !== 'unreachable';
      if (done) break;
      if (attempt <= step.retries) {
        ctx.log(`attempt ${attempt} of ${step.retries + 1} ${step.until ? `did not meet "${step.until}"` : `failed: ${'message' in outcome ? outcome.message : ''}`}; again in ${Math.round(step.delayMs / 100) / 10} s`);
        await abortableSleep(step.delayMs, input.signal);
      } else if (step.until && outcome.status !== 'failed' && outcome.status !== 'unreachable') {
        outcome = { status: 'failed', message: `"${step.until}" was still false after ${step.retries + 1} attempts` };
      }
    }
    if (step.register) {
      const data = 'data' in outcome ? outcome.data : undefined;
      if (inst.node) {
        const map = (registered[step.register] ??= {}) as Record<string, unknown>;
        map[inst.node] = data;
      } else registered[step.register] = data;
    }
    return outcome;
  };

  const runStep = async (step: Step): Promise<boolean> => {
    const instances = byStep.get(step.id) ?? [];
    if (instances.length === 0) return true;
    const batch = step.serial ?? instances.length;
    let ok = true;
    for (let i = 0; i < instances.length; i += batch) {
      if (input.signal.aborted) {
        interrupted = true;
        return false;
      }
      const group = instances.slice(i, i + batch);
      const outcomes = await Promise.all(
        group.map(async (inst) => {
          const started = Date.now();
          const outcome = await runInstance(step, inst);
          const ms = Date.now() - started;
          count(inst, outcome);
          const message = outcome.status === 'skipped' ? outcome.reason : 'message' in outcome ? outcome.message : undefined;
          input.journal.append({ type: 'step-end', ts: new Date().toISOString(), key: inst.key, seq: inst.seq, status: outcome.status, ...(message ? { message } : {}), ms });
          input.emit({ type: 'step-end', instance: inst, outcome, ms });
          return { inst, outcome };
        }),
      );
      const bad = outcomes.find((o) => o.outcome.status === 'failed' || o.outcome.status === 'unreachable');
      if (bad && !step.ignoreErrors) {
        failedAt ??= bad.inst;
        failMessage ??= 'message' in bad.outcome ? bad.outcome.message : undefined;
        ok = false;
        break; // do not touch the next node
      }
      // Later steps see the cluster as it is now (who leads, who is sealed).
      if (instances.length > 1 || input.actions.get(step.action!)?.changes) await refreshLive().catch(() => undefined);
    }
    return ok;
  };

  const runSteps = async (steps: readonly Step[]): Promise<boolean> => {
    for (const step of steps) {
      if (input.signal.aborted) {
        interrupted = true;
        return false;
      }
      if (step.kind === 'action') {
        if (!(await runStep(step))) return false;
        continue;
      }
      let ok = true;
      if (step.when && !truthy(evaluate(parseExpr(unwrapTemplate(step.when)), { vars: input.vars, cluster: clusterScope(input.clusterName, input.spec), live, ...registered }))) continue;
      ok = await runSteps(step.block ?? []);
      if (!ok && step.rescue && !input.signal.aborted) ok = await runSteps(step.rescue);
      if (step.always) {
        // Clean-up runs even after a failure or Ctrl-C.
        const alwaysOk = await runAlways(step.always);
        ok = ok && alwaysOk;
      }
      if (!ok) return false;
    }
    return true;
  };

  const runAlways = async (steps: readonly Step[]): Promise<boolean> => {
    let ok = true;
    for (const s of steps) {
      if (s.kind === 'action') ok = (await runStep(s)) && ok;
      else ok = (await runSteps([s])) && ok;
    }
    return ok;
  };

  const ok = await runSteps(input.playbook.steps);
  interrupted ||= input.signal.aborted;
  // A step cut short by Ctrl-C reports "failed: interrupted"; the run as a whole was interrupted.
  const status: RunStatus = ok ? 'ok' : interrupted ? 'interrupted' : 'failed';
  const message = status === 'ok' ? undefined : status === 'interrupted' ? `interrupted at a safe point${failedAt ? ` (step ${failedAt.stepId}${failedAt.node ? ` on ${failedAt.node}` : ''} did not finish)` : ''}` : failedAt ? `step ${failedAt.stepId} (${failedAt.name})${failedAt.node ? ` on ${failedAt.node}` : ''} failed: ${failMessage ?? ''}` : undefined;
  return { status, recap, message, failedAt };
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}

export { InterruptedError };
