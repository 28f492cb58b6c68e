import type { AnyAction } from '../actions/registry.js';
import type { ClusterSpec } from '../inventory/schema.js';
import type { ClusterNode, NodeProbe } from '../vault/cluster.js';
import { ProblemsError } from '../core/problems-error.js';
import { nearest } from '../core/positions.js';
import { evaluate, parseExpr, pathsOf, render, truthy, unwrapTemplate } from '../core/expr.js';

export { unwrapTemplate };
import type { Playbook, Step } from './load.js';

/** The live state a plan is made against; asked of the nodes, never taken from the file. */
export interface LiveState {
  leader: string | null;
  threshold: number | null;
  sealed_count: number;
  unreachable_count: number;
  nodes: Record<string, LiveNode>;
}

export interface LiveNode {
  name: string;
  api_addr: string;
  zone: string | null;
  reachable: boolean;
  state: string;
  sealed: boolean | null;
  initialized: boolean | null;
  version: string | null;
  leader: boolean;
}

export function liveState(
  nodes: readonly ClusterNode[],
  probes: readonly NodeProbe[],
  threshold: number | null,
): LiveState {
  const live: LiveState = { leader: null, threshold, sealed_count: 0, unreachable_count: 0, nodes: {} };
  for (const n of nodes) {
    const p = probes.find((x) => x.node.name === n.name);
    const h = p?.health;
    const ln: LiveNode = {
      name: n.name,
      api_addr: n.apiAddr,
      zone: n.zone ?? null,
      reachable: h !== undefined,
      state: h?.state ?? 'unreachable',
      sealed: h ? h.state === 'sealed' || h.body.sealed === true : null,
      initialized: h ? h.body.initialized !== false && h.state !== 'uninitialized' : null,
      version: h?.body.version ?? null,
      leader: h?.state === 'active',
    };
    if (ln.leader) live.leader = n.name;
    if (ln.sealed) live.sealed_count++;
    if (!ln.reachable) live.unreachable_count++;
    live.nodes[n.name] = ln;
  }
  return live;
}

export type Section = 'main' | 'rescue' | 'always';

export interface PlanInstance {
  /** Position in the plan, from 1. */
  seq: number;
  /** stepId or stepId@node: the key the journal and resume use. */
  key: string;
  stepId: string;
  name: string;
  action: string;
  node?: string | undefined;
  section: Section;
  changes: boolean;
  gate: boolean;
  gates: string[];
  description: string;
  when?: string | undefined;
  /** Decided now: the step would be skipped, and why. Steps whose condition needs run-time values are decided at run time. */
  skip?: string | undefined;
  serial?: number | undefined;
}

export interface Plan {
  playbook: string;
  cluster: string;
  live: LiveState;
  instances: PlanInstance[];
  confirmations: string[];
  notes: string[];
}

export interface PlanInput {
  playbook: Playbook;
  clusterName: string;
  spec: ClusterSpec;
  nodes: readonly ClusterNode[];
  live: LiveState;
  actions: Map<string, AnyAction>;
  /** Non-secret vars known now (flags, defaults); secret vars are not shown to the plan. */
  vars: Record<string, unknown>;
}

export function clusterScope(name: string, spec: ClusterSpec): Record<string, unknown> {
  return { name, ...spec };
}

/**
 * Resolves every step to its instances, in order, per node, with gates and skip reasons. Pure:
 * it reads the live state handed in and changes nothing.
 */
export function makePlan(input: PlanInput): Plan {
  const { playbook, spec, live } = input;
  const instances: PlanInstance[] = [];
  const notes: string[] = [];
  const confirmations: string[] = [];
  const scopeBase = { vars: input.vars, cluster: clusterScope(input.clusterName, spec), live };

  const visit = (steps: readonly Step[], section: Section) => {
    for (const step of steps) {
      if (step.confirm) {
        try {
          confirmations.push(String(render(step.confirm, scopeBase)));
        } catch {
          confirmations.push(step.confirm);
        }
      }
      if (step.kind === 'block') {
        visit(step.block ?? [], section);
        if (step.rescue) visit(step.rescue, 'rescue');
        if (step.always) visit(step.always, 'always');
        continue;
      }
      const action = input.actions.get(step.action!)!;
      const nodes = resolveTarget(step.target, input.nodes, spec, live);
      if (nodes === 'none') {
        notes.push(
          `step ${step.id} (${step.name}): target ${step.target} matches no node now${step.target === 'leader' ? ' (no active node)' : ''}`,
        );
        continue;
      }
      for (const node of nodes) {
        const scope = { ...scopeBase, node: node ? live.nodes[node.name] : undefined };
        let skip: string | undefined;
        if (step.when && decidableNow(step.when)) {
          try {
            if (!truthy(evaluate(parseExpr(unwrapTemplate(step.when)), scope)))
              skip = `condition is false now: ${step.when}`;
          } catch {
            /* decided at run time */
          }
        }
        let description = step.name;
        if (action.describe) {
          try {
            description = action.describe(renderSafe(step.with, scope) as never, node);
          } catch {
            /* keep the name */
          }
        }
        instances.push({
          seq: instances.length + 1,
          key: node ? `${step.id}@${node.name}` : step.id,
          stepId: step.id,
          name: step.name,
          action: action.name,
          node: node?.name,
          section,
          changes: action.changes,
          gate: step.gate,
          gates: [...(action.gates ?? [])],
          description,
          when: step.when,
          skip,
          serial: step.serial,
        });
      }
    }
  };
  visit(playbook.steps, 'main');
  return { playbook: playbook.name, cluster: input.clusterName, live, instances, confirmations, notes };
}

/** Checks selectors against the inventory (a group or node that does not exist is bad input). */
export function checkSelectors(playbook: Playbook, spec: ClusterSpec, clusterName: string): void {
  const names = spec.nodes.map((n) => n.name);
  const groups = Object.keys(spec.groups ?? {});
  const walk = (steps: readonly Step[]) => {
    for (const s of steps) {
      if (s.kind === 'block') {
        walk(s.block ?? []);
        walk(s.rescue ?? []);
        walk(s.always ?? []);
        continue;
      }
      const t = s.target;
      if (['cluster', 'leader', 'standbys', 'all'].includes(t)) continue;
      if (t.startsWith('node:')) {
        const n = t.slice(5);
        if (!names.includes(n)) {
          const g = nearest(n, names);
          playbook.source.add(
            [...s.path, 'target'],
            `target ${t} matches no node of cluster ${clusterName}`,
            g ? `did you mean node:${g}?` : `nodes: ${names.join(', ')}`,
          );
        }
        continue;
      }
      const g = t.startsWith('group:') ? t.slice(6) : t;
      if (!groups.includes(g)) {
        const guess = nearest(g, [...groups, 'cluster', 'leader', 'standbys', 'all']);
        playbook.source.add(
          [...s.path, 'target'],
          `target "${t}" is neither cluster, leader, standbys, all, node:NAME nor a group of cluster ${clusterName}`,
          guess
            ? `did you mean "${guess}"?`
            : groups.length
              ? `groups: ${groups.join(', ')}`
              : 'define groups: in the inventory, or use all / leader / standbys',
        );
      } else if ((spec.groups?.[g] ?? []).length === 0) {
        playbook.source.add([...s.path, 'target'], `group ${g} of cluster ${clusterName} has no nodes`);
      }
    }
  };
  walk(playbook.steps);
  if (playbook.source.problems.length) throw new ProblemsError(`Playbook ${playbook.file}`, playbook.source.problems);
}

/** The nodes a target means now. `[undefined]` is the single cluster-wide instance. */
export function resolveTarget(
  target: string,
  nodes: readonly ClusterNode[],
  spec: ClusterSpec,
  live: LiveState,
): Array<ClusterNode | undefined> | 'none' {
  const pick = (pred: (n: ClusterNode) => boolean) => {
    const r = nodes.filter(pred);
    return r.length ? r : 'none';
  };
  switch (target) {
    case 'cluster':
      return [undefined];
    case 'leader':
      return pick((n) => n.name === live.leader);
    case 'standbys':
      // Standbys in inventory order; with no leader known, every node is "not the leader".
      return pick((n) => n.name !== live.leader);
    case 'all':
      return [...nodes];
    default: {
      if (target.startsWith('node:')) return pick((n) => n.name === target.slice(5));
      const g = target.startsWith('group:') ? target.slice(6) : target;
      const members = spec.groups?.[g] ?? [];
      return pick((n) => members.includes(n.name));
    }
  }
}

/** A condition is decided at plan time when it reads only what the plan knows. */
function decidableNow(when: string): boolean {
  try {
    return pathsOf(parseExpr(unwrapTemplate(when))).every((p) => ['cluster', 'live', 'node'].includes(p.root));
  } catch {
    return false;
  }
}

function renderSafe(value: unknown, scope: Record<string, unknown>): unknown {
  try {
    return render(value, scope);
  } catch {
    return value;
  }
}
