import { InterruptedError, VaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import { abortableSleep } from '../core/sleep.js';
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
  /** Aborted by the first interrupt: the run stops at the next safe point. */
  signal: AbortSignal;
  /**
   * Aborted by a second interrupt (or never): the only thing that cuts `always:` steps short.
   * `always:` blocks exist for clean-up such as revoking a root token, so the first interrupt
   * must not skip them.
   */
  hardSignal?: AbortSignal | undefined;
  /** How long `always:` steps may take once the run was interrupted (default 5 minutes). */
  alwaysTimeoutMs?: number | undefined;
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
  /** Clean-up that did not happen (an `always:` step cut short), in words an operator can act on. */
  leftUndone: string[];
}

/** What the engine knows at any moment about clean-up still owed, for a hard exit to report. */
export interface EngineProgress {
  /** Lines naming what an immediate exit now would leave undone (e.g. a token accessor to revoke). */
  leftUndone(): string[];
}

/**
 * Executes a plan in order. Steps of a block stop at the first failure, then `rescue` runs, then
 * `always` runs whatever happened (also after Ctrl-C), so clean-up such as revoking a root token
 * cannot be skipped. Nothing here prints or prompts: it emits events and asks the prompter.
 */
export async function executePlan(input: EngineInput, progress?: (p: EngineProgress) => void): Promise<EngineResult> {
  const recap: Recap = {};
  const registered: Record<string, unknown> = {};
  let failedAt: PlanInstance | undefined;
  let failMessage: string | undefined;
  let interrupted = false;
  let live: LiveState = input.plan.live;
  // Confirmations were asked before the run started (plan.confirmations); steps under one know it.
  const confirmedSteps = new Set<Step>();
  const markConfirmed = (steps: readonly Step[], confirmed: boolean) => {
    for (const s of steps) {
      const here = confirmed || s.confirm !== undefined;
      if (s.kind === 'action' && here) confirmedSteps.add(s);
      for (const list of [s.block, s.rescue, s.always]) if (list) markConfirmed(list, here);
    }
  };
  markConfirmed(input.playbook.steps, false);
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

  const runInstance = async (step: Step, inst: PlanInstance, sig: AbortSignal): Promise<Outcome> => {
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
      if (!truthy(evaluate(parseExpr(unwrapTemplate(step.when)), scope())))
        return { status: 'skipped', reason: `condition is false: ${step.when}` };
    }
    let args: unknown;
    try {
      args = action.schema.parse(render(step.with, scope()));
    } catch (e) {
      const issues = (e as { issues?: Array<{ path: PropertyKey[]; message: string }> }).issues;
      const why = issues
        ? issues.map((i) => `${i.path.map(String).join('.') || 'with'}: ${i.message}`).join('; ')
        : (e as Error).message;
      return {
        status: 'failed',
        message: `arguments of ${action.name} are invalid at run time: ${redactor.redact(why)}`,
      };
    }
    const ctx: ActionContext = {
      cluster: input.cluster,
      clusterName: input.clusterName,
      spec: input.spec,
      node: nodeSpec,
      vars: scope(),
      resolveSecret: (ref) =>
        resolveSecret(ref, { askSecret: (label) => input.prompter.secret({ message: label, source: ref }) }),
      prompter: input.prompter,
      log: (message) => input.emit({ type: 'step-log', instance: inst, message: redactor.redact(message) }),
      signal: sig,
      stateDir: input.stateDir,
      inventoryFile: input.inventoryFile,
      confirmed: confirmedSteps.has(step),
      openHost: (node, options) =>
        openNodeHost(node, {
          ...options,
          prompter: { askSecret: (label) => input.prompter.secret({ message: label, source: 'ssh.key_passphrase' }) },
        }),
      openStore: (choice) => resolveStore(choice, input.clusterName, input.spec.stores, process.cwd()),
    };
    let outcome: Outcome = { status: 'failed', message: 'not run' };
    for (let attempt = 1; attempt <= step.retries + 1; attempt++) {
      if (sig.aborted && attempt > 1) break;
      input.journal.append({ type: 'step-start', ts: new Date().toISOString(), key: inst.key, seq: inst.seq, attempt });
      input.emit({ type: 'step-start', instance: inst, attempt });
      try {
        outcome = await action.run(ctx, args);
      } catch (e) {
        outcome =
          e instanceof VaultopsError && e.exitCode === 3
            ? { status: 'unreachable', message: redactor.redact(e.message) }
            : {
                status: 'failed',
                message: redactor.redact(e instanceof Error ? e.message : String(e)),
                details: e instanceof VaultopsError ? e.details.map((d) => redactor.redact(d)) : undefined,
              };
      }
      const data = 'data' in outcome ? outcome.data : undefined;
      const done = step.until
        ? outcome.status !== 'failed' &&
          outcome.status !== 'unreachable' &&
          truthy(evaluate(parseExpr(unwrapTemplate(step.until)), { ...scope(), result: data }))
        : outcome.status !== 'failed' && outcome.status !== 'unreachable';
      if (done) break;
      if (attempt <= step.retries) {
        ctx.log(
          `attempt ${attempt} of ${step.retries + 1} ${step.until ? `did not meet "${step.until}"` : `failed: ${'message' in outcome ? outcome.message : ''}`}; again in ${Math.round(step.delayMs / 100) / 10} s`,
        );
        await abortableSleep(step.delayMs, sig);
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

  const runStep = async (step: Step, sig: AbortSignal): Promise<boolean> => {
    const instances = byStep.get(step.id) ?? [];
    if (instances.length === 0) return true;
    const batch = step.serial ?? instances.length;
    let ok = true;
    for (let i = 0; i < instances.length; i += batch) {
      if (sig.aborted) {
        interrupted = true;
        return false;
      }
      const group = instances.slice(i, i + batch);
      const outcomes = await Promise.all(
        group.map(async (inst) => {
          const started = Date.now();
          const outcome = await runInstance(step, inst, sig);
          const ms = Date.now() - started;
          count(inst, outcome);
          const message =
            outcome.status === 'skipped' ? outcome.reason : 'message' in outcome ? outcome.message : undefined;
          input.journal.append({
            type: 'step-end',
            ts: new Date().toISOString(),
            key: inst.key,
            seq: inst.seq,
            status: outcome.status,
            ...(message ? { message } : {}),
            ms,
          });
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

  const runSteps = async (steps: readonly Step[], sig: AbortSignal): Promise<boolean> => {
    for (const step of steps) {
      if (sig.aborted) {
        interrupted = true;
        return false;
      }
      if (step.kind === 'action') {
        if (!(await runStep(step, sig))) return false;
        continue;
      }
      let ok = true;
      if (
        step.when &&
        !truthy(
          evaluate(parseExpr(unwrapTemplate(step.when)), {
            vars: input.vars,
            cluster: clusterScope(input.clusterName, input.spec),
            live,
            ...registered,
          }),
        )
      )
        continue;
      ok = await runSteps(step.block ?? [], sig);
      if (!ok && step.rescue && !sig.aborted) ok = await runSteps(step.rescue, sig);
      if (step.always) {
        // Clean-up runs even after a failure or the first Ctrl-C / SIGTERM: it gets its own
        // signal, which only a second interrupt or the clean-up timeout aborts.
        const alwaysOk = await runAlways(step.always);
        ok = ok && alwaysOk;
      }
      if (!ok) return false;
    }
    return true;
  };

  const alwaysSignal = (): AbortSignal => {
    const timeout = AbortSignal.timeout(input.alwaysTimeoutMs ?? 5 * 60_000);
    return input.hardSignal ? AbortSignal.any([input.hardSignal, timeout]) : timeout;
  };

  const runAlways = async (steps: readonly Step[]): Promise<boolean> => {
    const pending = flattenActions(steps);
    pendingAlways.push(...pending);
    const sig = alwaysSignal();
    let ok = true;
    try {
      for (const s of steps) {
        if (s.kind === 'action') ok = (await runStep(s, sig)) && ok;
        else ok = (await runSteps([s], sig)) && ok;
        // A step the second interrupt cut short did not do its clean-up.
        if (!sig.aborted) for (const a of flattenActions([s])) finishedAlways.add(a);
      }
    } finally {
      if (sig.aborted) {
        // Cut short by a second interrupt or the timeout: say exactly what was not cleaned up.
        for (const a of pending) if (!finishedAlways.has(a)) leftUndone.push(...owedBy(a));
      }
      for (const a of pending) pendingAlways.splice(pendingAlways.indexOf(a), 1);
    }
    return ok;
  };

  const pendingAlways: Step[] = [];
  const finishedAlways = new Set<Step>();
  const leftUndone: string[] = [];
  /** An `always:` step not run, with the registered values an operator needs to do it by hand. */
  const owedBy = (step: Step): string[] => {
    const lines = [`always step "${step.name}" (${step.action}) did not run`];
    for (const accessor of accessorsIn(registered))
      lines.push(
        `token with accessor ${accessor} may still be valid: revoke it with \`vaultops root revoke --accessor ${accessor}\``,
      );
    return lines;
  };
  progress?.({
    leftUndone: () => {
      const owed = [...leftUndone];
      for (const s of pendingAlways) if (!finishedAlways.has(s)) owed.push(...owedBy(s));
      // Before any always block started: what the blocks still ahead would have cleaned up.
      if (owed.length === 0) for (const s of alwaysAhead(input.playbook.steps)) owed.push(...owedBy(s));
      return [...new Set(owed)];
    },
  });

  const ok = await runSteps(input.playbook.steps, input.signal);
  interrupted ||= input.signal.aborted;
  // A step cut short by Ctrl-C reports "failed: interrupted"; the run as a whole was interrupted.
  const status: RunStatus = ok ? 'ok' : interrupted ? 'interrupted' : 'failed';
  const message =
    status === 'ok'
      ? undefined
      : status === 'interrupted'
        ? `interrupted at a safe point${failedAt ? ` (step ${failedAt.stepId}${failedAt.node ? ` on ${failedAt.node}` : ''} did not finish)` : ''}`
        : failedAt
          ? `step ${failedAt.stepId} (${failedAt.name})${failedAt.node ? ` on ${failedAt.node}` : ''} failed: ${failMessage ?? ''}`
          : undefined;
  return { status, recap, message, failedAt, leftUndone: [...new Set(leftUndone)] };
}

/** The action steps of a list of steps, blocks included, in order. */
function flattenActions(steps: readonly Step[]): Step[] {
  const out: Step[] = [];
  for (const s of steps) {
    if (s.kind === 'action') out.push(s);
    else out.push(...flattenActions([...(s.block ?? []), ...(s.rescue ?? []), ...(s.always ?? [])]));
  }
  return out;
}

/** Every `always:` action step of a playbook (what a hard exit before them would skip). */
function alwaysAhead(steps: readonly Step[]): Step[] {
  const out: Step[] = [];
  for (const s of steps) {
    if (s.kind === 'action') continue;
    out.push(...alwaysAhead([...(s.block ?? []), ...(s.rescue ?? [])]));
    if (s.always) out.push(...flattenActions(s.always));
  }
  return out;
}

/** Token accessors registered by earlier steps (e.g. `root.accessor` of vault.generate_root). */
function accessorsIn(registered: Record<string, unknown>): string[] {
  const found: string[] = [];
  const visit = (v: unknown, depth: number) => {
    if (depth > 3 || v === null || typeof v !== 'object') return;
    for (const [k, x] of Object.entries(v)) {
      if (k === 'accessor' && typeof x === 'string' && x) found.push(x);
      else visit(x, depth + 1);
    }
  };
  visit(registered, 0);
  return found;
}

export { InterruptedError };
