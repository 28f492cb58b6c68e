import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { expect } from 'vitest';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** Node 24 from the npm `node` package: the runtime the CLI ships for, not the machine's Node. */
export const NODE = join(REPO, 'node_modules', '.bin', 'node');
export const CLI = join(REPO, 'bin', 'vaultops.js');

export interface CliResult {
  args: string[];
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the built CLI as a user would (a child process, no TTY) and keeps everything it printed in
 * `log`, so a test file can search all of it for secrets at the end.
 */
export class CliRunner {
  readonly log: CliResult[] = [];
  readonly #env: NodeJS.ProcessEnv;
  readonly #cwd: string;

  constructor(options: { env: NodeJS.ProcessEnv; cwd?: string }) {
    if (!existsSync(join(REPO, 'dist', 'cli', 'main.js')))
      throw new Error('dist/ is missing: run `npm run build` (npm test does it) before these tests.');
    this.#env = withoutVaultSecrets(options.env);
    this.#cwd = options.cwd ?? REPO;
  }

  run(args: string[], options: { timeoutMs?: number } = {}): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(NODE, [CLI, ...args], { cwd: this.#cwd, env: this.#env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
      const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 170_000);
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

  /** Everything every run printed, stdout and stderr. */
  allOutput(): string {
    return this.log.map((r) => `$ vaultops ${r.args.join(' ')}\n${r.stdout}${r.stderr}`).join('\n');
  }

  /** Fails if any secret appears in anything the CLI printed (and if nothing was captured at all). */
  expectNoSecrets(secrets: readonly string[]): void {
    expect(this.log.length).toBeGreaterThan(0);
    expect(secrets.length).toBeGreaterThan(0);
    const all = this.allOutput();
    expect(all.length).toBeGreaterThan(0);
    const leaked = secrets.filter((s) => s.length > 0 && all.includes(s));
    expect(leaked, 'secrets found in CLI output').toEqual([]);
  }
}

/** The parent's VAULT_TOKEN and friends must not leak into a child that is meant to use the inventory. */
function withoutVaultSecrets(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (!/^(VAULT|BAO)_/.test(k)) clean[k] = v;
  return clean;
}

/** Every secret of a lab's init.json: the shares in both forms and the root token. */
export function labSecrets(initFile: string): string[] {
  const init = JSON.parse(readFileSync(initFile, 'utf8')) as {
    unseal_keys_b64: string[];
    unseal_keys_hex?: string[];
    root_token: string;
  };
  return [...init.unseal_keys_b64, ...(init.unseal_keys_hex ?? []), init.root_token];
}

/** Processes whose command line mentions `dir` (a lab's directory): what is left of a lab. */
export function processesUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(dir)) pids.push(Number(entry));
    } catch {
      /* gone */
    }
  }
  return pids;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Polls `probe` until it returns a value other than undefined, or fails with what it waited for. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 60_000,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ''}`,
      );
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a program (no shell, no TTY) and keeps what it printed. `onLine` sees each complete stderr
 * line as it arrives (progress of a long run).
 */
export function runProcess(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  onLine?: (line: string) => void,
): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => {
      const before = stderr.length;
      stderr += c.toString();
      if (onLine)
        for (const line of stderr
          .slice(stderr.lastIndexOf('\n', before - 1) + 1)
          .split('\n')
          .slice(0, -1))
          onLine(line);
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
