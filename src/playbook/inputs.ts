import { InputError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import type { Prompter } from '../core/prompter.js';
import { resolveSecret } from '../secrets/refs.js';
import { evaluate, parseExpr, render, truthy } from '../core/expr.js';
import { COMMAND_REF, type Playbook } from './load.js';
import type { VarSpec } from './schema.js';
import { unwrapTemplate } from './plan.js';

const SECRET_REF = /^(env|file|cmd|prompt):./;
/** A default that is exactly one path into the inventory's cluster. */
const INVENTORY_PATH = /^\s*\{\{\s*cluster(\.[A-Za-z0-9_-]+)+\s*\}\}\s*$/;

export interface ResolvedInputs {
  /** Every var, secrets included (in memory only). */
  vars: Record<string, unknown>;
  /** Names of secret vars (never journaled, never shown). */
  secretNames: Set<string>;
  /** Plan only: vars that have no value yet (run will ask, or fail unattended). */
  missing: string[];
}

/**
 * Resolves every var before the first change (rule 1: plan, then run): given values, then
 * defaults and inventory references, then a person at a terminal; unattended, a missing answer is
 * an InputError naming the flag or reference that supplies it.
 */
export async function resolveInputs(options: {
  playbook: Playbook;
  given: Record<string, string>;
  scope: Record<string, unknown>;
  prompter: Prompter;
  /** Only what the plan may show: no secret is resolved, none is asked. */
  planOnly?: boolean;
}): Promise<ResolvedInputs> {
  const { playbook, given, prompter } = options;
  const vars: Record<string, unknown> = {};
  const secretNames = new Set<string>();
  const missing: string[] = [];
  for (const name of Object.keys(given)) {
    if (!(name in playbook.vars)) {
      throw new InputError(`--var ${name}: playbook ${playbook.name} has no var "${name}".`, {
        hint: `Its vars: ${Object.keys(playbook.vars).join(', ') || 'none'}.`,
      });
    }
  }
  for (const [name, spec] of Object.entries(playbook.vars)) {
    const isSecret = spec.type === 'secret' || spec.type === 'secret_list';
    if (isSecret) secretNames.add(name);
    const scope = { ...options.scope, vars };
    if (spec.when !== undefined) {
      let needed = true;
      try {
        needed = truthy(evaluate(parseExpr(unwrapTemplate(spec.when)), scope));
      } catch {
        needed = true;
      }
      if (!needed) continue;
    }
    if (options.planOnly && isSecret) continue;
    let value: unknown = given[name];
    let source = `--var ${name}=...`;
    if (isSecret && typeof value === 'string' && !SECRET_REF.test(value)) {
      // A literal on the command line is visible to every user in /proc/PID/cmdline and in shell history.
      throw new InputError(`Var ${name} is a secret: pass a reference, never the value, on the command line.`, {
        hint: `--var ${name}=env:NAME, --var ${name}=file:PATH or --var ${name}=prompt:`,
      });
    }
    if (value === undefined && spec.default !== undefined) {
      try {
        value = render(spec.default, scope);
      } catch (e) {
        throw new InputError(
          `Var ${name}: its default ${String(spec.default)} cannot be worked out: ${(e as Error).message}.`,
        );
      }
      if (typeof spec.default === 'string' && /\{\{/.test(spec.default))
        source = `${spec.default.replace(/[{}\s]/g, '')} in the inventory, or --var ${name}=...`;
      // A cmd: reference runs a command here: only the inventory's own (a default that is exactly
      // {{ cluster.* }}) is taken; one the playbook makes up is refused before anything runs.
      if (
        typeof value === 'string' &&
        COMMAND_REF.test(value) &&
        !(typeof spec.default === 'string' && INVENTORY_PATH.test(spec.default))
      ) {
        throw new InputError(
          `Var ${name}: its default works out to a cmd: reference, which a playbook may not supply (it would run a command on this machine).`,
          {
            hint: `Put the reference in the inventory, or pass --var ${name}=cmd:... yourself.`,
          },
        );
      }
    }
    if (typeof value === 'string' && isSecret && SECRET_REF.test(value)) {
      if (options.planOnly) continue;
      value = await resolveSecret(value, {
        askSecret: (label) => prompter.secret({ message: label, source }),
      });
    }
    if (value === undefined || value === null || value === '') {
      // A default that works out to nothing (an inventory field not set) leaves the var needed.
      const required = spec.required ?? true;
      if (!required && value === undefined) continue;
      if (options.planOnly) {
        missing.push(name);
        continue;
      }
      value = await ask(name, spec, prompter, source, scope);
    }
    vars[name] = coerce(name, spec, value);
    if (isSecret) for (const v of [vars[name]].flat()) redactor.add(String(v));
  }
  return { vars, secretNames, missing };
}

async function ask(
  name: string,
  spec: VarSpec,
  prompter: Prompter,
  source: string,
  scope: Record<string, unknown>,
): Promise<unknown> {
  const message = spec.prompt ?? spec.description ?? name;
  if (spec.type === 'secret_list') {
    let count = 1;
    if (spec.count !== undefined) {
      const c = typeof spec.count === 'number' ? spec.count : Number(render(spec.count, scope));
      if (Number.isFinite(c) && c > 0) count = c;
    }
    const values: string[] = [];
    for (let i = 1; i <= count; i++) {
      const v = await prompter.secret({ message: `${message} (${i} of ${count})`, source });
      redactor.add(v);
      values.push(v);
    }
    return values;
  }
  if (spec.type === 'secret') {
    const v = await prompter.secret({ message, source });
    redactor.add(v);
    return v;
  }
  if (spec.choices?.length) return prompter.select({ message, choices: spec.choices, source });
  return prompter.text({ message: `${message} (var ${name})`, source });
}

function coerce(name: string, spec: VarSpec, value: unknown): unknown {
  switch (spec.type) {
    case 'number': {
      const n = typeof value === 'number' ? value : Number(value);
      if (!Number.isFinite(n)) throw new InputError(`Var ${name} must be a number, got "${String(value)}".`);
      return n;
    }
    case 'boolean':
      if (typeof value === 'boolean') return value;
      if (['true', 'yes', '1', 'on'].includes(String(value).toLowerCase())) return true;
      if (['false', 'no', '0', 'off'].includes(String(value).toLowerCase())) return false;
      throw new InputError(`Var ${name} must be true or false, got "${String(value)}".`);
    case 'secret_list':
      if (Array.isArray(value)) return value.map(String);
      return String(value)
        .split(/[\s,]+/)
        .filter(Boolean);
    default:
      if (spec.choices?.length && !spec.choices.includes(String(value)))
        throw new InputError(`Var ${name} must be one of ${spec.choices.join(', ')}, got "${String(value)}".`);
      return value;
  }
}
