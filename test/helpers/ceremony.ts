import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { expect } from 'vitest';
import { CLI, NODE, REPO, waitFor, type CliResult } from './cli.js';
import { connectCluster } from '../../src/cli/cluster-from-inventory.js';

/**
 * The built CLI as a child process (no TTY), like CliRunner, plus the command line of every
 * child, read from /proc/PID/cmdline while it runs, so tests can prove no secret reached argv.
 */
export class CeremonyCli {
  readonly log: CliResult[] = [];
  readonly cmdlines: string[] = [];
  readonly #env: NodeJS.ProcessEnv;
  readonly #cwd: string;

  constructor(env: NodeJS.ProcessEnv, cwd: string) {
    const clean: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(env)) if (!/^(VAULT|BAO)_/.test(k)) clean[k] = v;
    this.#env = clean;
    this.#cwd = cwd;
  }

  run(args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(NODE, [CLI, ...args], {
        cwd: this.#cwd,
        env: { ...this.#env, ...extraEnv },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      if (child.pid !== undefined) {
        try {
          this.cmdlines.push(readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0').join(' '));
        } catch {
          /* exited already */
        }
      }
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
      const timer = setTimeout(() => child.kill('SIGKILL'), 170_000);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        const r = { args, code, stdout, stderr };
        this.log.push(r);
        resolve(r);
      });
    });
  }

  /** Fails if any secret is in anything printed or in any child's argv. */
  expectNoSecrets(secrets: readonly string[]): void {
    expect(this.log.length).toBeGreaterThan(0);
    expect(this.cmdlines.length).toBeGreaterThanOrEqual(this.log.length);
    const printed = this.log.map((r) => `${r.args.join(' ')}\n${r.stdout}${r.stderr}`).join('\n');
    const argv = this.cmdlines.join('\n');
    const real = secrets.filter((s) => s.length >= 6);
    expect(real.length).toBeGreaterThan(0);
    expect(
      real.filter((s) => printed.includes(s)),
      'secrets in CLI output',
    ).toEqual([]);
    expect(
      real.filter((s) => argv.includes(s)),
      "secrets in a child's argv",
    ).toEqual([]);
  }
}

export { REPO };

export interface TestPgpKey {
  publicFile: string;
  armoredPrivate: string;
  fingerprint: string;
}

/** A throwaway PGP key pair (curve25519: fast), its public half written to `dir`. */
export async function makePgpKey(dir: string, name: string): Promise<TestPgpKey> {
  const { privateKey, publicKey } = await openpgp.generateKey({
    type: 'curve25519',
    userIDs: [{ name, email: `${name}@example.invalid` }],
    format: 'armored',
  });
  const publicFile = join(dir, `${name}.asc`);
  writeFileSync(publicFile, publicKey);
  const key = await openpgp.readKey({ armoredKey: publicKey });
  return { publicFile, armoredPrivate: privateKey, fingerprint: key.getFingerprint().toUpperCase() };
}

/** Decrypts an armored PGP message (as written for a holder) with a private key. */
export async function decryptArmored(armored: string, armoredPrivate: string): Promise<string> {
  const message = await openpgp.readMessage({ armoredMessage: armored });
  const decryptionKeys = await openpgp.readPrivateKey({ armoredKey: armoredPrivate });
  const { data } = await openpgp.decrypt({ message, decryptionKeys });
  return String(data).trim();
}

export { sealActiveNode } from './lab.js';

/** Waits until every node serves again (a freshly unsealed node becomes a standby). */
export async function waitAllServing(inventory: string): Promise<void> {
  const { client } = await connectCluster(inventory, undefined);
  try {
    await waitFor(
      'every node unsealed, one active',
      async () => {
        const probes = await client.probeAll();
        const states = probes.map((p) => p.health?.state);
        return states.every((s) => s === 'active' || s === 'standby' || s === 'perf-standby') &&
          states.filter((s) => s === 'active').length === 1
          ? true
          : undefined;
      },
      90_000,
    );
  } finally {
    client.close();
  }
}

export interface TerminalStep {
  /** Waits until the output (since the previous step) matches this... */
  when: RegExp;
  /** ...then types this (computed from everything printed so far). */
  type: (output: string) => string;
}

/**
 * Runs the CLI in a real pseudo-terminal (util-linux `script`), answering prompts as a person
 * would, so the masked-prompt path is exercised for real. Output is kept in the runner's log and
 * the child's argv in its cmdlines, for the leak check.
 */
export function runAtTerminal(
  runner: CeremonyCli,
  args: string[],
  env: NodeJS.ProcessEnv,
  steps: readonly TerminalStep[],
  timeoutMs = 120_000,
): Promise<CliResult> {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const command = [NODE, CLI, ...args].map(quote).join(' ');
  return new Promise((resolve, reject) => {
    const clean: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(env)) if (!/^(VAULT|BAO)_/.test(k)) clean[k] = v;
    const child = spawn('script', ['-qfec', command, '/dev/null'], {
      env: { ...clean, TERM: 'dumb', COLUMNS: '200' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    if (child.pid !== undefined) {
      try {
        runner.cmdlines.push(readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0').join(' '));
      } catch {
        /* exited */
      }
    }
    let output = '';
    let consumed = 0;
    let next = 0;
    const advance = () => {
      while (next < steps.length) {
        const step = steps[next]!;
        const fresh = output.slice(consumed);
        const m = step.when.exec(fresh);
        if (!m) return;
        consumed += m.index + m[0].length;
        next++;
        // Type slowly enough for the prompt to have switched the terminal to raw mode.
        const text = step.type(output);
        setTimeout(() => child.stdin.write(`${text}\r`), 150);
      }
    };
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString('utf8');
      advance();
    });
    child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const r = { args, code, stdout: output, stderr: '' };
      runner.log.push(r);
      resolve(r);
    });
  });
}
