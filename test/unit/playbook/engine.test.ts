import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { defineAction, type ActionContext, type Prompter } from '../../../src/actions/types.js';
import type { AnyAction } from '../../../src/actions/registry.js';
import { parsePlaybook } from '../../../src/playbook/load.js';
import { makePlan, type LiveState } from '../../../src/playbook/plan.js';
import { executePlan, type EngineProgress } from '../../../src/playbook/engine.js';
import { Journal } from '../../../src/playbook/journal.js';
import type { RunEvent } from '../../../src/playbook/events.js';
import type { ClusterSpec } from '../../../src/inventory/schema.js';
import type { ClusterClient } from '../../../src/vault/cluster.js';
import { ProblemsError } from '../../../src/core/problems-error.js';

// The engine's rules, tested with actions and a cluster that exist only here: no lab needed.
const calls: string[] = [];
const seen: Array<{ name: string; confirmed: boolean; aborted: boolean }> = [];
const record = (ctx: ActionContext, name: string) => {
  calls.push(`${name}${ctx.node ? `@${ctx.node.name}` : ''}`);
  seen.push({ name, confirmed: ctx.confirmed, aborted: ctx.signal.aborted });
};

const fakeActions: AnyAction[] = [
  defineAction({
    name: 'test.note',
    description: 'records that it ran',
    schema: z.strictObject({ label: z.string() }),
    changes: true,
    async run(ctx, a) {
      record(ctx, a.label);
      return { status: 'changed', data: { accessor: a.label === 'mint' ? 'acc-123' : undefined } };
    },
  }),
  defineAction({
    name: 'test.fail',
    description: 'fails',
    schema: z.strictObject({ label: z.string() }),
    changes: false,
    async run(ctx, a) {
      record(ctx, a.label);
      return { status: 'failed', message: `${a.label} failed` };
    },
  }),
  defineAction({
    name: 'test.hang',
    description: 'waits until its signal is aborted (a long wait the operator interrupts)',
    schema: z.strictObject({ label: z.string() }),
    changes: false,
    async run(ctx, a) {
      record(ctx, a.label);
      hangStarted?.();
      await new Promise<void>((resolve) => {
        if (ctx.signal.aborted) resolve();
        ctx.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      return { status: 'failed', message: 'interrupted' };
    },
  }),
  defineAction({
    name: 'test.destroy',
    description: 'destructive',
    schema: z.strictObject({ label: z.string() }),
    changes: true,
    destructive: true,
    async run(ctx, a) {
      record(ctx, a.label);
      return { status: 'changed' };
    },
  }),
];
let hangStarted: (() => void) | undefined;
const actions = new Map(fakeActions.map((a) => [a.name, a]));

const spec: ClusterSpec = {
  nodes: ['n1', 'n2', 'n3'].map((n, i) => ({ name: n, api_addr: `https://127.0.0.${11 + i}:8200` })),
};
const nodes = spec.nodes.map((n) => ({ name: n.name, apiAddr: n.api_addr }));
const liveNode = (name: string, leader: boolean) => ({
  name,
  api_addr: '',
  zone: null,
  reachable: true,
  state: leader ? 'active' : 'standby',
  sealed: false,
  initialized: true,
  version: '2.7.2',
  leader,
});
const live: LiveState = {
  leader: 'n2',
  threshold: 3,
  sealed_count: 0,
  unreachable_count: 0,
  nodes: { n1: liveNode('n1', false), n2: liveNode('n2', true), n3: liveNode('n3', false) },
};
// Only what the engine asks of a cluster: its nodes, and their health when it refreshes its view.
const cluster = {
  name: 'c',
  nodes,
  probeAll: async () =>
    nodes.map((node) => ({
      node,
      health: {
        state: node.name === 'n2' ? 'active' : 'standby',
        httpStatus: 200,
        body: { initialized: true, sealed: false, version: '2.7.2' },
      },
    })),
} as unknown as ClusterClient;
const prompter: Prompter = {
  interactive: false,
  secret: () => Promise.reject(new Error('no')),
  text: () => Promise.reject(new Error('no')),
  confirm: () => Promise.resolve(),
  select: () => Promise.reject(new Error('no')),
};

const stateDir = mkdtempSync(join(tmpdir(), 'vaultops-engine-'));
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

async function run(
  steps: string,
  o: {
    signal?: AbortSignal;
    hardSignal?: AbortSignal;
    done?: Map<string, string>;
    progress?: (p: EngineProgress) => void;
  } = {},
) {
  calls.length = 0;
  seen.length = 0;
  const playbook = parsePlaybook('p.yml', `name: p\nsteps:\n${steps}`, actions);
  const plan = makePlan({ playbook, clusterName: 'c', spec, nodes, live, actions, vars: {} });
  const events: RunEvent[] = [];
  const runId = `t-${Math.random().toString(16).slice(2)}`;
  const result = await executePlan(
    {
      runId,
      playbook,
      plan,
      actions,
      cluster,
      clusterName: 'c',
      spec,
      vars: {},
      prompter,
      journal: new Journal(stateDir, runId),
      emit: (e) => events.push(e),
      signal: o.signal ?? new AbortController().signal,
      hardSignal: o.hardSignal,
      stateDir,
      threshold: 3,
      done: o.done,
    },
    o.progress,
  );
  return { result, events, plan };
}

describe('the engine runs the plan in order and keeps its rules without a lab', () => {
  it('runs standbys one at a time, then the leader, in plan order', async () => {
    const { result } = await run(
      '  - action: test.note\n    target: standbys\n    serial: 1\n    with: {label: s}\n  - action: test.note\n    target: leader\n    with: {label: l}\n',
    );
    expect(result.status).toBe('ok');
    expect(calls).toEqual(['s@n1', 's@n3', 'l@n2']);
  });

  it('a failed gate stops the run before any later step changes anything', async () => {
    const { result } = await run(
      '  - action: test.fail\n    target: all\n    gate: true\n    with: {label: gate}\n  - action: test.note\n    with: {label: change}\n',
    );
    expect(result.status).toBe('failed');
    expect(calls.filter((c) => c.startsWith('change'))).toEqual([]);
    expect(result.message).toMatch(/gate failed/);
  });

  it('a failure on one node of a serial step leaves the next nodes untouched', async () => {
    const { result } = await run('  - action: test.fail\n    target: standbys\n    serial: 1\n    with: {label: f}\n');
    expect(result.status).toBe('failed');
    expect(calls).toEqual(['f@n1']);
  });

  it('always: runs after a failure in its block', async () => {
    const { result } = await run(
      '  - block:\n      - action: test.note\n        with: {label: mint}\n      - action: test.fail\n        with: {label: boom}\n      - action: test.note\n        with: {label: never}\n    always:\n      - action: test.note\n        with: {label: revoke}\n',
    );
    expect(result.status).toBe('failed');
    expect(calls).toEqual(['mint', 'boom', 'revoke']);
  });

  it('always: runs after an interrupt, with a signal of its own; the run ends interrupted', async () => {
    const ctrl = new AbortController();
    const started = new Promise<void>((r) => (hangStarted = r));
    const running = run(
      '  - block:\n      - action: test.note\n        with: {label: mint}\n      - action: test.hang\n        with: {label: wait}\n      - action: test.note\n        with: {label: never}\n    always:\n      - action: test.note\n        with: {label: revoke}\n',
      { signal: ctrl.signal },
    );
    await started;
    ctrl.abort();
    const { result } = await running;
    expect(calls).toEqual(['mint', 'wait', 'revoke']);
    expect(seen.find((s) => s.name === 'revoke')!.aborted).toBe(false);
    expect(result.status).toBe('interrupted');
    expect(result.leftUndone).toEqual([]);
  });

  it('a second interrupt cuts always: short, and the run says what was left undone (the accessor to revoke)', async () => {
    const soft = new AbortController();
    const hard = new AbortController();
    let progress: EngineProgress | undefined;
    let hangs = 0;
    hangStarted = () => {
      hangs++;
      if (hangs === 1)
        soft.abort(); // first interrupt during the block
      else {
        expect(progress!.leftUndone().join('\n')).toMatch(/always step "hang-revoke".*did not run|acc-123/);
        hard.abort(); // second interrupt during the always step
      }
    };
    const { result } = await run(
      '  - block:\n      - action: test.note\n        register: root\n        with: {label: mint}\n      - action: test.hang\n        with: {label: wait}\n    always:\n      - name: hang-revoke\n        action: test.hang\n        with: {label: revoke}\n',
      { signal: soft.signal, hardSignal: hard.signal, progress: (p) => (progress = p) },
    );
    expect(result.status).toBe('interrupted');
    expect(result.leftUndone.join('\n')).toContain('acc-123');
    expect(result.leftUndone.join('\n')).toContain('vaultops root revoke --accessor acc-123');
  });

  it('resume skips what the interrupted run finished and runs the rest', async () => {
    const steps = '  - action: test.note\n    with: {label: one}\n  - action: test.note\n    with: {label: two}\n';
    const { plan } = await run(steps);
    const { result, events } = await run(steps, { done: new Map([[plan.instances[0]!.key, 'changed']]) });
    expect(result.status).toBe('ok');
    expect(calls).toEqual(['two']);
    const skipped = events.find((e) => e.type === 'step-end' && e.outcome.status === 'skipped');
    expect(
      skipped && skipped.type === 'step-end' && skipped.outcome.status === 'skipped' ? skipped.outcome.reason : '',
    ).toMatch(/already changed/);
  });

  it('a destructive action needs confirm: on its step or block; the action then knows it was confirmed', async () => {
    expect(() =>
      parsePlaybook('p.yml', 'name: p\nsteps:\n  - action: test.destroy\n    with: {label: x}\n', actions),
    ).toThrow(ProblemsError);
    try {
      parsePlaybook('p.yml', 'name: p\nsteps:\n  - action: test.destroy\n    with: {label: x}\n', actions);
    } catch (e) {
      expect((e as ProblemsError).details[0]).toMatch(
        /^p\.yml:3:\d+ test\.destroy replaces data .* needs a typed confirmation .*confirm:/,
      );
    }
    await run(
      '  - block:\n      - action: test.destroy\n        with: {label: x}\n    confirm: "{{ cluster.name }}"\n',
    );
    expect(seen).toEqual([{ name: 'x', confirmed: true, aborted: false }]);
  });
});
