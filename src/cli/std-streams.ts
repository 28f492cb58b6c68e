import { fstatSync, writeSync } from 'node:fs';

/**
 * Standard output without the cost of creating it. `process.stdout` is made on first use, and making
 * it loads Node's stream and tty or pipe machinery: about 3 ms of a 40 ms `vaultops --help`, whose
 * text needs none of it. Help and version text go straight to file descriptor 1; every other
 * command's output uses the streams as usual.
 */

/**
 * `vaultops status | head`: a reader that went away is not an error of ours. The handler is attached
 * when a stream is first used, so this does not create the streams itself.
 */
export function quietOnBrokenPipe(): void {
  for (const name of ['stdout', 'stderr'] as const) {
    const d = Object.getOwnPropertyDescriptor(process, name);
    const get = d?.get?.bind(process);
    if (!d || !get || !d.configurable) {
      exitOnEpipe(process[name]);
      continue;
    }
    Object.defineProperty(process, name, {
      configurable: true,
      enumerable: d.enumerable ?? true,
      get() {
        const stream = get() as NodeJS.WriteStream;
        Object.defineProperty(process, name, {
          configurable: true,
          enumerable: d.enumerable ?? true,
          get: () => stream,
        });
        exitOnEpipe(stream);
        return stream;
      },
    });
  }
}

function exitOnEpipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
}

/** Writes text to file descriptor 1 synchronously; a closed reader ends the process quietly. */
export function writeStdoutSync(text: string): void {
  let rest = Buffer.from(text);
  try {
    while (rest.length) rest = rest.subarray(writeSync(1, rest));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EPIPE') process.exit(process.exitCode ?? 0);
    // A non-blocking descriptor that is full: the stream queues the rest.
    if (code === 'EAGAIN') process.stdout.write(rest);
    else throw e;
  }
}

/**
 * Whether standard output is a terminal, asked of the descriptor, not of process.stdout. Loading
 * node:tty loads net and all of Node's streams (about 4 ms), so the answers a stat can give come
 * first: a pipe or a file is no terminal, and neither is a Linux memory device (major 1: /dev/null,
 * where cron and scripts send what they do not read). Only a character device left over asks tty.
 */
export function stdoutIsTerminal(): boolean {
  let st;
  try {
    st = fstatSync(1);
  } catch {
    return false;
  }
  if (!st.isCharacterDevice()) return false;
  if (process.platform === 'linux' && Math.floor(st.rdev / 256) % 4096 === LINUX_MEM_MAJOR) return false;
  return process.getBuiltinModule('node:tty').isatty(1);
}

const LINUX_MEM_MAJOR = 1;
