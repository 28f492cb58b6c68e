import { ExitCode, type ExitCodeValue } from './exit-codes.js';

/**
 * Few error classes, each with a meaning and an exit code. The message says what happened and
 * `hint` says what to do next. Messages never carry secrets: callers pass values through the
 * redactor before building one, and the CLI redacts again before printing.
 */
export class VaultopsError extends Error {
  readonly exitCode: ExitCodeValue;
  readonly hint: string | undefined;
  /** Extra lines shown under the message (e.g. the last lines of a node's log). */
  readonly details: readonly string[];

  constructor(
    message: string,
    options: { exitCode?: ExitCodeValue; hint?: string; details?: readonly string[]; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.exitCode = options.exitCode ?? ExitCode.failed;
    this.hint = options.hint;
    this.details = options.details ?? [];
  }
}

type SubOptions = { hint?: string; details?: readonly string[]; cause?: unknown };

/** The user gave us something we cannot use: flags, files, answers. */
export class InputError extends VaultopsError {
  constructor(message: string, options: SubOptions = {}) {
    super(message, { ...options, exitCode: ExitCode.badInput });
  }
}

/** A node, host or service did not answer. */
export class UnreachableError extends VaultopsError {
  constructor(message: string, options: SubOptions = {}) {
    super(message, { ...options, exitCode: ExitCode.unreachable });
  }
}

/** A safety gate refused to continue; nothing was changed on the guarded node. */
export class GateError extends VaultopsError {
  constructor(message: string, options: SubOptions = {}) {
    super(message, { ...options, exitCode: ExitCode.gateRefused });
  }
}

/** Something this machine needs is not installed. */
export class PrerequisiteError extends VaultopsError {
  constructor(message: string, options: SubOptions = {}) {
    super(message, { ...options, exitCode: ExitCode.prerequisite });
  }
}

/** Vault answered with an error status. `status` is the HTTP code; the message holds Vault's errors. */
export class VaultApiError extends VaultopsError {
  readonly status: number;
  readonly errors: readonly string[];
  constructor(message: string, status: number, errors: readonly string[], options: SubOptions = {}) {
    super(message, { ...options, exitCode: ExitCode.failed });
    this.status = status;
    this.errors = errors;
  }
}

/** A run was interrupted at a safe point. */
export class InterruptedError extends VaultopsError {
  constructor(message: string, options: SubOptions = {}) {
    super(message, { ...options, exitCode: ExitCode.interrupted });
  }
}

/** The snapshot is not one we can trust: truncated, corrupt, or not a Raft snapshot at all. */
export class SnapshotInvalidError extends VaultopsError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, {
      hint: options.hint ?? 'Take a new snapshot; do not restore this file.',
      ...(options.cause === undefined ? {} : { cause: options.cause }),
    });
  }
}

export function isVaultopsError(e: unknown): e is VaultopsError {
  return e instanceof VaultopsError;
}
