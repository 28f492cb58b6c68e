import { closeSync, fsyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { InputError } from '../core/errors.js';
import type { Prompter } from '../core/prompter.js';
import { CeremonySession } from '../ceremony/session.js';
import { resolveSecretList } from '../secrets/refs.js';
import { makePrompter } from '../ui/prompter.js';
import { connectCluster, type ConnectedCluster } from './cluster-from-inventory.js';

export interface CeremonyCliOptions {
  inventory: string;
  cluster?: string;
  nonInteractive?: boolean;
  json?: boolean;
}

export interface OpenCeremony {
  conn: ConnectedCluster;
  session: CeremonySession;
  prompter: Prompter;
  close(): Promise<void>;
}

/** Connects with the inventory's token (OpenBao >= 2.6 and Vault >= 2.0 need one) and pins the leader. */
export async function openCeremony(
  o: CeremonyCliOptions,
  answers: { confirm?: string | undefined } = {},
): Promise<OpenCeremony> {
  const prompter = makePrompter({ nonInteractive: o.nonInteractive, confirm: answers.confirm });
  const conn = await connectCluster(o.inventory, o.cluster, {
    prompter: {
      askSecret: (label) =>
        prompter.secret({ message: label, source: 'a file: or env: token reference in the inventory' }),
    },
  });
  try {
    const session = await CeremonySession.open(conn.client);
    return { conn, session, prompter, close: () => conn.client.release() };
  } catch (e) {
    await conn.client.release();
    throw e;
  }
}

/**
 * Where shares come from: a reference (env:, file:, cmd:; a JSON list or whitespace-separated),
 * or holders typing at this terminal one after another. Each typed share is preceded by the
 * holder confirming the nonce, so nobody types a share into an attempt they did not agree to.
 */
export class ShareSource {
  readonly #ref: string | undefined;
  readonly #prompter: Prompter;
  readonly #nonce: string;
  readonly #label: string;
  #list: string[] | undefined;
  #next = 0;
  #holder = 0;

  constructor(options: { ref: string | undefined; prompter: Prompter; nonce: string; label: string }) {
    this.#ref = options.ref;
    this.#prompter = options.prompter;
    this.#nonce = options.nonce;
    this.#label = options.label;
  }

  get fromReference(): boolean {
    return this.#ref !== undefined;
  }

  /** The next share, or undefined when a reference has no more. */
  async next(): Promise<string | undefined> {
    if (this.#ref !== undefined) {
      this.#list ??= await resolveSecretList(this.#ref);
      return this.#list[this.#next++];
    }
    this.#holder++;
    const short = this.#nonce.slice(0, 8);
    const typed = await this.#prompter.text({
      message: `Holder ${this.#holder}: the nonce of this ceremony is ${this.#nonce}. Check it against what you were told, then type its first 8 characters`,
      source: '--shares-from REF',
    });
    if (typed.trim() !== short) {
      // Stop rather than ask again: a holder who sees another nonce than announced must not go on.
      throw new InputError(
        `Holder ${this.#holder}'s confirmation did not match the nonce ${this.#nonce}: no share was sent.`,
        {
          hint: 'Check the nonce with the operator; if it differs from the one announced, someone else started this attempt.',
        },
      );
    }
    return this.#prompter.secret({
      message: `Holder ${this.#holder}: your ${this.#label} (masked)`,
      source: '--shares-from REF (env:NAME, file:PATH[#field] or cmd:COMMAND)',
    });
  }

  /** Start reading the reference from its first share again (a round aborted by a wrong share). */
  rewind(): void {
    this.#next = 0;
  }
}

/** Creates a file only we can read, never overwriting one that exists. */
export function writeNewPrivateFile(path: string, content: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(`Cannot create ${path} (${code ?? 'error'}).`, {
      hint:
        code === 'EEXIST'
          ? 'Choose a path that does not exist yet: the file is never overwritten.'
          : 'Check the directory exists and is writable.',
    });
  }
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
}

/** A new private file, created (empty) before the secret exists, filled once it does. */
export interface PrivateFileClaim {
  path: string;
  write(content: string): void;
  /** Removes the file when nothing was written into it. */
  abandon(): void;
}

export function claimPrivateFile(path: string): PrivateFileClaim {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(`Cannot create ${path} (${code ?? 'error'}): nothing was started.`, {
      hint:
        code === 'EEXIST'
          ? 'Choose a path that does not exist yet: the file is never overwritten.'
          : 'Check the directory exists and is writable.',
    });
  }
  let written = false;
  return {
    path,
    write(content) {
      if (fd === undefined) throw new InputError(`${path} was already closed.`);
      writeSync(fd, content);
      fsyncSync(fd);
      closeSync(fd);
      fd = undefined;
      written = true;
    },
    abandon() {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
      if (!written) rmSync(path, { force: true });
    },
  };
}

/** The person types the cluster name, or --confirm carries it; anything else changes nothing. */
export async function confirmCluster(
  prompter: Prompter,
  clusterName: string,
  confirmFlag: string | undefined,
  what: string,
): Promise<void> {
  if (confirmFlag !== undefined) {
    if (confirmFlag !== clusterName)
      throw new InputError(`--confirm ${confirmFlag} does not name this cluster (${clusterName}): nothing was done.`, {
        hint: `Pass --confirm ${clusterName}.`,
      });
    return;
  }
  await prompter.confirm({
    message: `${what} Type the cluster name (${clusterName}) to go on`,
    expected: clusterName,
    source: `--confirm ${clusterName}`,
  });
}
