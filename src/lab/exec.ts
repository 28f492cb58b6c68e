import { spawn } from 'node:child_process';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  /** Called with each line of stdout/stderr as it comes (progress). */
  onLine?: ((line: string) => void) | undefined;
  /** Keep at most this many bytes of each stream (the tail). */
  maxBytes?: number | undefined;
  timeoutMs?: number | undefined;
}

/** Runs a local program without a shell. Output is kept bounded (the tail), never echoed. */
export function run(cmd: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const max = options.maxBytes ?? 256 * 1024;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    if (options.timeoutMs) timer = setTimeout(() => child.kill('SIGTERM'), options.timeoutMs);
    const collect = (which: 'out' | 'err') => {
      let partial = '';
      return (chunk: Buffer) => {
        const s = chunk.toString('utf8');
        if (which === 'out') stdout = (stdout + s).slice(-max);
        else stderr = (stderr + s).slice(-max);
        if (options.onLine) {
          partial += s;
          const lines = partial.split('\n');
          partial = lines.pop() ?? '';
          for (const l of lines) if (l.trim()) options.onLine(l);
        }
      };
    };
    child.stdout.on('data', collect('out'));
    child.stderr.on('data', collect('err'));
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export function lastLines(text: string, n: number): string[] {
  return text
    .split('\n')
    .map((l) => l.trimEnd())
    .filter(Boolean)
    .slice(-n);
}
