import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { InputError } from '../core/errors.js';
import { ProblemsError } from '../core/problems-error.js';
import { nearest } from '../core/positions.js';
import { YamlSource, type PathKey } from '../core/yaml-doc.js';
import { z } from 'zod';
import { actionStepSchema, blockStepSchema, playbookSchema, varSchema, type VarSpec } from './schema.js';
import { ExprError, isTemplate, parseExpr, pathsOf, templateExprs } from '../core/expr.js';
import type { AnyAction } from '../actions/registry.js';

export interface Step {
  /** Stable id within the playbook: "1", "2", "3.block.1", "3.always.2". */
  id: string;
  name: string;
  path: PathKey[];
  when?: string | undefined;
  confirm?: string | undefined;
  kind: 'action' | 'block';
  action?: string | undefined;
  target: string;
  with: Record<string, unknown>;
  register?: string | undefined;
  retries: number;
  delayMs: number;
  until?: string | undefined;
  serial?: number | undefined;
  gate: boolean;
  ignoreErrors: boolean;
  block?: Step[] | undefined;
  rescue?: Step[] | undefined;
  always?: Step[] | undefined;
}

export interface Playbook {
  file: string;
  name: string;
  description?: string | undefined;
  vars: Record<string, VarSpec>;
  steps: Step[];
  source: YamlSource;
  /** sha256 of the file's text, for the journal. */
  text: string;
}

/** Roots an expression may read. Registered names are added as steps declare them. */
const BUILTIN_ROOTS = ['vars', 'cluster', 'live', 'node', 'result', 'run'];

export function loadPlaybook(file: string, actions: Map<string, AnyAction>): Playbook {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(`Cannot read playbook ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}.`, {
      hint: 'Give a path to a playbook file, e.g. playbooks/health-check.yml.',
    });
  }
  return parsePlaybook(file, text, actions);
}

export function parsePlaybook(file: string, text: string, actions: Map<string, AnyAction>): Playbook {
  const src = new YamlSource(file, text);
  const raw = src.toJS();
  if (src.problems.length) throw new ProblemsError(`Playbook ${file}`, src.problems);
  // Pass 1: the shape of the document, steps checked one by one below for precise messages.
  const top = src.validate(
    playbookSchema.extend({ steps: z.array(z.unknown()).min(1, 'a playbook needs at least one step') }),
    raw ?? {},
  );
  if (!top) throw new ProblemsError(`Playbook ${file}`, src.problems);
  const vars: Record<string, VarSpec> = {};
  for (const [k, v] of Object.entries(top.vars ?? {})) {
    vars[k] = varSchema.parse(v);
    refuseCommandRefs(src, ['vars', k, 'default'], vars[k].default);
  }
  // Pass 2: steps, actions, arguments, expressions.
  const registered = new Set<string>();
  const steps = parseSteps(src, top.steps, ['steps'], '', actions, vars, registered);
  requireConfirmations(src, steps, actions, false);
  if (src.problems.length) throw new ProblemsError(`Playbook ${file}`, src.problems);
  return { file, name: top.name ?? basename(file), description: top.description, vars, steps, source: src, text };
}

/** A destructive action runs only in a step (or block) that asks for the typed confirmation first. */
function requireConfirmations(
  src: YamlSource,
  steps: readonly Step[],
  actions: Map<string, AnyAction>,
  confirmed: boolean,
): void {
  for (const s of steps) {
    const here = confirmed || s.confirm !== undefined;
    if (s.kind === 'action') {
      if (!here && s.action && actions.get(s.action)?.destructive) {
        src.add(
          s.path,
          `${s.action} replaces data on the cluster and needs a typed confirmation`,
          'add confirm: "{{ cluster.name }}" to the step (answered at a terminal or with --confirm NAME)',
        );
      }
      continue;
    }
    for (const list of [s.block, s.rescue, s.always]) if (list) requireConfirmations(src, list, actions, here);
  }
}

function parseSteps(
  src: YamlSource,
  raw: unknown[],
  path: PathKey[],
  prefix: string,
  actions: Map<string, AnyAction>,
  vars: Record<string, VarSpec>,
  registered: Set<string>,
): Step[] {
  const out: Step[] = [];
  raw.forEach((item, i) => {
    const p = [...path, i];
    const id = `${prefix}${i + 1}`;
    if (item === null || typeof item !== 'object' || Array.isArray(item)) {
      src.add(p, `step ${id} must be a mapping with "action:" (or "block:")`);
      return;
    }
    const isBlock = 'block' in item;
    if (isBlock) {
      const b = src.validate(blockStepSchema, item, p);
      if (!b) return;
      checkExpr(src, [...p, 'when'], b.when, vars, registered);
      checkTemplate(src, [...p, 'confirm'], b.confirm, vars, registered);
      const step: Step = {
        id,
        name: b.name ?? `block ${id}`,
        path: p,
        when: b.when,
        confirm: b.confirm,
        kind: 'block',
        target: 'cluster',
        with: {},
        retries: 0,
        delayMs: 0,
        gate: false,
        ignoreErrors: false,
        block: parseSteps(src, b.block ?? [], [...p, 'block'], `${id}.block.`, actions, vars, registered),
      };
      if (b.rescue)
        step.rescue = parseSteps(src, b.rescue, [...p, 'rescue'], `${id}.rescue.`, actions, vars, registered);
      if (b.always)
        step.always = parseSteps(src, b.always, [...p, 'always'], `${id}.always.`, actions, vars, registered);
      out.push(step);
      return;
    }
    const s = src.validate(actionStepSchema, item, p);
    if (!s) {
      // Keep looking, so every problem of the step is reported at once.
      const r = item as { action?: unknown; with?: unknown };
      if (typeof r.action === 'string') {
        const a = actions.get(r.action);
        if (!a) {
          const guess = nearest(r.action, actions.keys());
          src.add([...p, 'action'], `unknown action "${r.action}"`, guess ? `did you mean "${guess}"?` : undefined);
        } else if (r.with && typeof r.with === 'object' && !Array.isArray(r.with))
          checkArgs(src, [...p, 'with'], a, r.with as Record<string, unknown>);
      }
      return;
    }
    const action = actions.get(s.action);
    if (!action) {
      const guess = nearest(s.action, actions.keys());
      src.add(
        [...p, 'action'],
        `unknown action "${s.action}"`,
        guess ? `did you mean "${guess}"?` : `actions: ${[...actions.keys()].sort().join(', ')}`,
      );
    } else {
      checkArgs(src, [...p, 'with'], action, s.with ?? {});
    }
    checkExpr(src, [...p, 'when'], s.when, vars, registered);
    checkTemplate(src, [...p, 'confirm'], s.confirm, vars, registered);
    checkTemplate(src, [...p, 'with'], s.with, vars, registered);
    refuseCommandRefs(src, [...p, 'with'], s.with);
    if (s.register) registered.add(s.register);
    checkExpr(src, [...p, 'until'], s.until, vars, registered, ['result']);
    if (s.until && !s.retries)
      src.add([...p, 'until'], '"until" needs "retries" (how many times to try)', 'add e.g. retries: 10 and delay: 2s');
    out.push({
      id,
      name: s.name ?? s.action,
      path: p,
      when: s.when,
      confirm: s.confirm,
      kind: 'action',
      action: s.action,
      target: s.target ?? 'cluster',
      with: s.with ?? {},
      register: s.register,
      retries: s.retries ?? 0,
      delayMs: toMs(s.delay ?? '1s'),
      until: s.until,
      serial: s.serial,
      gate: s.gate ?? false,
      ignoreErrors: s.ignore_errors ?? false,
    });
  });
  return out;
}

/**
 * A `cmd:` reference runs a shell command on the operator's machine when it is resolved. Those may
 * come only from the inventory or the command line, which the operator controls; a playbook (shared,
 * downloaded, reviewed less) may not carry one, neither as a var default nor as a step argument.
 */
export const COMMAND_REF = /^\s*cmd:/;

function refuseCommandRefs(src: YamlSource, path: PathKey[], value: unknown): void {
  if (typeof value === 'string') {
    if (COMMAND_REF.test(value)) {
      src.add(
        path,
        'a playbook may not hold a cmd: reference (it would run a command on this machine)',
        'put the cmd: reference in the inventory (and use {{ cluster.* }} here), or pass it with --var NAME=cmd:...',
      );
    }
  } else if (Array.isArray(value)) value.forEach((v, i) => refuseCommandRefs(src, [...path, i], v));
  else if (
    value &&
    typeof value === 'object' &&
    'trust_on_first_use' in value &&
    (value as { trust_on_first_use: unknown }).trust_on_first_use !== false
  ) {
    src.add(
      [...path, 'trust_on_first_use'],
      "a playbook may not turn trust-on-first-use on: only the operator's --trust-on-first-use flag does",
      'pin ssh.host_key or ssh.known_hosts in the inventory, and drop this argument',
    );
  } else if (value && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) refuseCommandRefs(src, [...path, k], v);
}

/** Checks `with:` against the action's schema; values that are templates are checked at run time. */
function checkArgs(src: YamlSource, path: PathKey[], action: AnyAction, args: Record<string, unknown>): void {
  const result = action.schema.safeParse(args);
  if (result.success) return;
  for (const issue of result.error.issues) {
    const rel = issue.path.filter((k): k is PathKey => typeof k === 'string' || typeof k === 'number');
    let v: unknown = args;
    for (const k of rel) v = (v as Record<PathKey, unknown> | undefined)?.[k];
    if (typeof v === 'string' && isTemplate(v)) continue;
    if (issue.code === 'unrecognized_keys') {
      const shape = (action.schema as { def?: { shape?: Record<string, unknown> } }).def?.shape;
      for (const key of issue.keys) {
        const guess = shape ? nearest(key, Object.keys(shape)) : undefined;
        src.add(
          [...path, ...rel, key],
          `${action.name} has no argument "${key}"`,
          guess ? `did you mean "${guess}"?` : shape ? `arguments: ${Object.keys(shape).join(', ')}` : undefined,
          true,
        );
      }
      continue;
    }
    src.add([...path, ...rel], `${action.name} argument ${rel.join('.') || '(with)'}: ${issue.message}`);
  }
}

function checkExpr(
  src: YamlSource,
  path: PathKey[],
  expr: string | undefined,
  vars: Record<string, VarSpec>,
  registered: Set<string>,
  extraRoots: string[] = [],
): void {
  if (expr === undefined) return;
  const inner = isTemplate(expr) ? templateExprs(expr) : [expr];
  for (const e of inner) checkOne(src, path, e, vars, registered, extraRoots);
}

function checkTemplate(
  src: YamlSource,
  path: PathKey[],
  value: unknown,
  vars: Record<string, VarSpec>,
  registered: Set<string>,
): void {
  if (typeof value === 'string') {
    for (const e of templateExprs(value)) checkOne(src, path, e, vars, registered, []);
  } else if (Array.isArray(value)) value.forEach((v, i) => checkTemplate(src, [...path, i], v, vars, registered));
  else if (value && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) checkTemplate(src, [...path, k], v, vars, registered);
}

function checkOne(
  src: YamlSource,
  path: PathKey[],
  expr: string,
  vars: Record<string, VarSpec>,
  registered: Set<string>,
  extraRoots: string[],
): void {
  let node;
  try {
    node = parseExpr(expr);
  } catch (e) {
    src.add(path, `bad expression "${expr}": ${(e as ExprError).message}`);
    return;
  }
  for (const ref of pathsOf(node)) {
    if (ref.root === 'vars') {
      const name = ref.parts[0];
      if (typeof name === 'string' && !(name in vars)) {
        const guess = nearest(name, Object.keys(vars));
        src.add(
          path,
          `unknown var "${name}"`,
          guess
            ? `did you mean "${guess}"?`
            : Object.keys(vars).length
              ? `declared vars: ${Object.keys(vars).join(', ')}`
              : 'declare it under vars: at the top of the playbook',
        );
      }
      continue;
    }
    if (BUILTIN_ROOTS.includes(ref.root) || extraRoots.includes(ref.root) || registered.has(ref.root)) continue;
    const guess = nearest(ref.root, [...BUILTIN_ROOTS, ...registered]);
    src.add(
      path,
      `unknown name "${ref.root}" in "${expr}"`,
      guess ? `did you mean "${guess}"?` : `use vars.NAME, cluster.*, live.*, node.* or a registered result`,
    );
  }
}

export function toMs(d: string | number): number {
  if (typeof d === 'number') return d * 1000;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(d);
  if (!m) return 1000;
  return Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h']);
}

/** Every step, depth first, in source order (blocks, then rescue, then always). */
export function flattenSteps(steps: readonly Step[]): Step[] {
  const out: Step[] = [];
  for (const s of steps) {
    if (s.kind === 'action') out.push(s);
    else out.push(...flattenSteps(s.block ?? []), ...flattenSteps(s.rescue ?? []), ...flattenSteps(s.always ?? []));
  }
  return out;
}
