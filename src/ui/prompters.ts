import { InputError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import type { Prompter } from '../actions/types.js';

/**
 * The two answerers of the Prompter contract: a person at a terminal (masked secrets, typed
 * confirmations), or nobody (every question becomes an InputError that names the flag, env var or
 * file that answers it). Prompts are drawn on stderr so stdout stays data.
 */
export function isInteractive(nonInteractive: boolean | undefined): boolean {
  return nonInteractive !== true && process.stdin.isTTY === true && process.stderr.isTTY === true;
}

export function makePrompter(nonInteractive: boolean | undefined): Prompter {
  return isInteractive(nonInteractive) ? terminalPrompter() : unattendedPrompter();
}

export function unattendedPrompter(): Prompter {
  return {
    interactive: false,
    async secret(q) {
      throw new InputError(`${q.message}: nobody can be asked here (no terminal, or --non-interactive).`, { hint: `Supply it with ${q.source}.` });
    },
    async confirm(q) {
      throw new InputError(`${q.message}: a typed confirmation is needed and nobody can be asked here.`, { hint: `Pass ${q.source}.` });
    },
    async select(q) {
      if (q.default !== undefined) return q.default;
      throw new InputError(`${q.message}: nobody can be asked here.`, { hint: `Pass ${q.source}.` });
    },
  };
}

export function terminalPrompter(): Prompter {
  const context = { output: process.stderr };
  return {
    interactive: true,
    async secret(q) {
      const { password } = await import('@inquirer/prompts');
      const value = (await password({ message: redactor.redact(q.message), mask: '*' }, context)).trim();
      redactor.add(value);
      if (!value) throw new InputError(`${q.message}: nothing was typed.`, { hint: `Type it, or supply it with ${q.source}.` });
      return value;
    },
    async confirm(q) {
      const { input } = await import('@inquirer/prompts');
      const typed = await input({ message: redactor.redact(q.message) }, context);
      if (typed.trim() !== q.expected) throw new InputError(`Confirmation did not match ("${redactor.redact(typed.trim())}" typed): nothing was done.`, { hint: `Type exactly what was asked, or pass ${q.source}.` });
    },
    async select(q) {
      const { select } = await import('@inquirer/prompts');
      return select({ message: q.message, choices: q.choices.map((c) => ({ value: c, name: c })), ...(q.default !== undefined ? { default: q.default } : {}) }, context);
    },
  };
}
