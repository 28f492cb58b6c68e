import { readFileSync, statSync } from 'node:fs';
import { InputError } from '../core/errors.js';
import { redactor } from '../core/redact.js';

/** Asks a person for a secret (masked). The CLI supplies one; unattended runs supply one that refuses. */
export interface SecretPrompter {
  askSecret(label: string): Promise<string>;
}

export type SecretValue = string | string[];

/**
 * Resolves a secret reference to its value and registers the value with the redactor at once.
 *   env:NAME             the environment variable (a JSON list is parsed into shares)
 *   file:PATH[#field]    the file (refused unless mode 0600/0400); #field picks a JSON field
 *   prompt:LABEL         asked once at the terminal, masked
 *   cmd:COMMAND          the command's stdout (a password manager), run by /bin/sh with a minimal
 *                        environment (commandEnv); a cmd: reference may come only from the inventory
 *                        or the command line, never from a playbook (the playbook loader, the var
 *                        resolver and the actions refuse one there)
 * Errors name the reference, never the value.
 */
export async function resolveSecret(ref: string, prompter?: SecretPrompter): Promise<SecretValue> {
  const colon = ref.indexOf(':');
  const kind = ref.slice(0, colon);
  const arg = ref.slice(colon + 1);
  let value: SecretValue;
  switch (kind) {
    case 'env': {
      envSecretNames.add(arg);
      const v = process.env[arg];
      if (v === undefined || v === '')
        throw new InputError(`Secret reference ${ref}: the environment variable ${arg} is not set.`, {
          hint: `export ${arg}=... before running, or change the reference in the inventory.`,
        });
      value = parseMaybeList(v);
      break;
    }
    case 'file': {
      const hash = arg.lastIndexOf('#');
      const path = hash > 0 ? arg.slice(0, hash) : arg;
      const field = hash > 0 ? arg.slice(hash + 1) : undefined;
      value = readSecretFile(ref, path, field);
      break;
    }
    case 'prompt': {
      if (!prompter)
        throw new InputError(`Secret reference ${ref} needs a person to type it, and nobody can be asked here.`, {
          hint: 'Run at a terminal without --non-interactive, or use an env: or file: reference.',
        });
      value = parseMaybeList(await prompter.askSecret(arg || 'secret'));
      break;
    }
    case 'cmd': {
      value = parseMaybeList(await runSecretCommand(ref, arg));
      break;
    }
    default:
      throw new InputError(`Unknown secret reference "${kind}:".`, {
        hint: 'Use env:NAME, file:PATH[#field], prompt:LABEL or cmd:COMMAND.',
      });
  }
  for (const v of Array.isArray(value) ? value : [value]) redactor.add(v);
  return value;
}

export async function resolveSecretString(ref: string, prompter?: SecretPrompter): Promise<string> {
  const v = await resolveSecret(ref, prompter);
  if (Array.isArray(v))
    throw new InputError(`Secret reference ${ref} gives a list where one value is needed.`, {
      hint: 'Point the reference at a single value (file:PATH#field).',
    });
  return v;
}

export async function resolveSecretList(ref: string, prompter?: SecretPrompter): Promise<string[]> {
  const v = await resolveSecret(ref, prompter);
  return Array.isArray(v) ? v : v.split(/[\s,]+/).filter(Boolean);
}

function readSecretFile(ref: string, path: string, field: string | undefined): SecretValue {
  let mode: number;
  try {
    mode = statSync(path).mode & 0o777;
  } catch (e) {
    throw new InputError(
      `Secret reference ${ref}: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'}).`,
      { hint: 'Check the path in the inventory.' },
    );
  }
  if ((mode & 0o077) !== 0) {
    throw new InputError(
      `Secret reference ${ref}: ${path} is readable by others (mode ${mode.toString(8).padStart(4, '0')}).`,
      { hint: `chmod 600 ${path}` },
    );
  }
  const text = readFileSync(path, 'utf8');
  if (field === undefined) return parseMaybeList(text.trim());
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new InputError(`Secret reference ${ref}: ${path} is not JSON, so #${field} cannot be picked from it.`, {
      hint: 'Drop the #field part, or point at a JSON file.',
    });
  }
  let cur: unknown = doc;
  for (const part of field.split('.')) cur = (cur as Record<string, unknown> | undefined)?.[part];
  if (typeof cur === 'string') return cur;
  if (Array.isArray(cur) && cur.every((x) => typeof x === 'string')) return cur as string[];
  throw new InputError(`Secret reference ${ref}: ${path} has no string or list of strings at "${field}".`, {
    hint: 'Check the field name after #.',
  });
}

function parseMaybeList(v: string): SecretValue {
  const t = v.trim();
  if (t.startsWith('[')) {
    try {
      const parsed = JSON.parse(t) as unknown;
      if (Array.isArray(parsed) && parsed.every((x) => typeof x === 'string')) return parsed as string[];
    } catch {
      /* not a list */
    }
  }
  return t;
}

/** Names of environment variables that env: references read: never passed on to a cmd: child. */
const envSecretNames = new Set<string>();

/**
 * What a cmd: child may see of our environment: enough to find programs and the user's password
 * manager (PATH, HOME, USER, locale, TMPDIR; the gpg/pass locations), nothing else. VAULT_*, BAO_*,
 * AWS_* and the variables env: references point at hold the very secrets a command has no business
 * with, and a command from a compromised inventory would otherwise read them all.
 */
const COMMAND_ENV =
  /^(PATH|HOME|USER|LOGNAME|SHELL|LANG|LANGUAGE|LC_[A-Z]+|TMPDIR|TZ|TERM|XDG_RUNTIME_DIR|GNUPGHOME|GPG_TTY|PASSWORD_STORE_DIR)$/;

export function commandEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env))
    if (v !== undefined && COMMAND_ENV.test(k) && !envSecretNames.has(k)) out[k] = v;
  return out;
}

function runSecretCommand(ref: string, command: string): Promise<string> {
  // Fetched here, not imported: node:child_process (with dgram and the socket list) is loaded only by
  // the commands that run a cmd: reference, not by every command that reads an inventory.
  const { execFile } = process.getBuiltinModule('node:child_process');
  return new Promise((resolvePromise, reject) => {
    execFile('/bin/sh', ['-c', command], { timeout: 60_000, maxBuffer: 1 << 20, env: commandEnv() }, (err, stdout) => {
      // Never echo stdout or stderr: both may hold the secret.
      if (err)
        reject(
          new InputError(
            `Secret reference ${ref}: the command failed (exit ${String((err as { code?: unknown }).code ?? '?')}).`,
            { hint: 'Run the command by hand to see why.' },
          ),
        );
      else resolvePromise(stdout.replace(/\r?\n$/, ''));
    });
  });
}
