import { InputError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import type { Prompter } from '../core/prompter.js';

/**
 * Without a TTY (cron, CI) or with --non-interactive nothing ever waits on stdin: every question
 * is answered from flags, or fails at once with the flag, env var or file that supplies it.
 */
export class UnattendedPrompter implements Prompter {
  readonly interactive = false;
  constructor(private readonly answers: { confirm?: string | undefined } = {}) {}

  async secret(q: { message: string; source: string }): Promise<string> {
    throw new InputError(`${q.message}: no value was given and nobody can be asked (no TTY or --non-interactive).`, {
      hint: `Supply it with ${q.source}.`,
    });
  }

  async text(q: { message: string; source: string }): Promise<string> {
    throw new InputError(`${q.message}: no value was given and nobody can be asked (no TTY or --non-interactive).`, {
      hint: `Supply it with ${q.source}.`,
    });
  }

  async confirm(q: { message: string; expected: string; source: string }): Promise<void> {
    if (this.answers.confirm === q.expected) return;
    if (this.answers.confirm !== undefined) {
      throw new InputError(
        `${q.message}: --confirm ${this.answers.confirm} does not match; expected "${q.expected}".`,
        { hint: `Pass --confirm ${q.expected} if you mean it.` },
      );
    }
    throw new InputError(
      `${q.message}: needs a typed confirmation, and nobody can be asked (no TTY or --non-interactive).`,
      { hint: `Pass --confirm ${q.expected}.` },
    );
  }

  async select<T extends string>(q: {
    message: string;
    choices: readonly T[];
    default?: T;
    source: string;
  }): Promise<T> {
    if (q.default !== undefined) return q.default;
    throw new InputError(`${q.message}: no answer given and nobody can be asked.`, {
      hint: `Supply it with ${q.source} (one of ${q.choices.join(', ')}).`,
    });
  }
}

/** A person at a terminal: masked secrets and typed confirmations through Inquirer. */
export class TerminalPrompter implements Prompter {
  readonly interactive = true;
  constructor(private readonly answers: { confirm?: string | undefined } = {}) {}

  async secret(q: { message: string; source: string }): Promise<string> {
    const { password } = await import('@inquirer/prompts');
    const value = await password(
      {
        message: q.message,
        mask: '*',
        validate: (v) => (v.trim() ? true : 'empty: type the value, or Ctrl-C to stop'),
      },
      { output: process.stderr },
    );
    const trimmed = value.trim();
    redactor.add(trimmed);
    return trimmed;
  }

  async text(q: { message: string; source: string }): Promise<string> {
    const { input } = await import('@inquirer/prompts');
    return (
      await input(
        { message: q.message, validate: (v) => (v.trim() ? true : 'empty: type a value, or Ctrl-C to stop') },
        { output: process.stderr },
      )
    ).trim();
  }

  async confirm(q: { message: string; expected: string; source: string }): Promise<void> {
    if (this.answers.confirm === q.expected) return;
    const { input } = await import('@inquirer/prompts');
    await input(
      {
        message: `${q.message} Type "${q.expected}" to go on:`,
        validate: (v) => (v.trim() === q.expected ? true : `type exactly "${q.expected}", or Ctrl-C to stop`),
      },
      { output: process.stderr },
    );
  }

  async select<T extends string>(q: {
    message: string;
    choices: readonly T[];
    default?: T;
    source: string;
  }): Promise<T> {
    const { select } = await import('@inquirer/prompts');
    return select<T>(
      {
        message: q.message,
        choices: q.choices.map((c) => ({ value: c, name: c })),
        ...(q.default !== undefined ? { default: q.default } : {}),
      },
      { output: process.stderr },
    );
  }
}

/** Interactive only when a person can answer: stdin and stderr are TTYs and --non-interactive is not set. */
export function makePrompter(options: {
  nonInteractive?: boolean | undefined;
  confirm?: string | undefined;
}): Prompter {
  const tty = process.stdin.isTTY === true && process.stderr.isTTY === true;
  return !options.nonInteractive && tty
    ? new TerminalPrompter({ confirm: options.confirm })
    : new UnattendedPrompter({ confirm: options.confirm });
}
