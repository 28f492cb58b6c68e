/**
 * Progress of long byte transfers (snapshots, restores, downloads, uploads, staging) on stderr.
 * On a terminal: one line rewritten in place (bytes, total, rate, time left), at most every 200 ms.
 * Without one (cron, CI, a pipe) or with TERM=dumb: a plain line every ~10 s, so a 30-minute backup
 * shows it is alive and a 3-second one prints nothing extra. `quiet` prints nothing at all.
 * NO_COLOR (https://no-color.org) turns off the dim colour of the live line.
 */
export interface ProgressOptions {
  /** What is moving, e.g. "snapshot of prod-eu". */
  label: string;
  /** Bytes expected, when known: then a percentage and the time left are shown. */
  total?: number | undefined;
  quiet?: boolean | undefined;
  stream?: ProgressStream | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  /** Milliseconds since some fixed point; tests pass a fake clock. */
  now?: (() => number) | undefined;
  /** Between two plain lines (no terminal); default 10 s. */
  plainIntervalMs?: number | undefined;
}

export interface ProgressStream {
  isTTY?: boolean | undefined;
  columns?: number | undefined;
  write(text: string): unknown;
}

export interface Progress {
  /** Bytes done so far (a running total, not a delta). */
  update(bytes: number): void;
  /** Adds to the running total. */
  add(bytes: number): void;
  /** Clears the live line so another line can be printed; the next update draws it again. */
  clear(): void;
  /** Ends the progress: clears the live line (the caller prints the result). */
  done(): void;
}

const LIVE_EVERY_MS = 200;
/** The rate is measured over the last few seconds, so a stall shows up and the time left follows it. */
const RATE_WINDOW_MS = 5_000;

export function createProgress(o: ProgressOptions): Progress {
  if (o.quiet) return { update: () => undefined, add: () => undefined, clear: () => undefined, done: () => undefined };
  const stream = o.stream ?? process.stderr;
  const env = o.env ?? process.env;
  const now = o.now ?? (() => performance.now());
  const live = stream.isTTY === true && env['TERM'] !== 'dumb';
  const colour = live && (env['NO_COLOR'] === undefined || env['NO_COLOR'] === '');
  const plainEvery = o.plainIntervalMs ?? 10_000;
  const started = now();
  const samples: { at: number; bytes: number }[] = [{ at: started, bytes: 0 }];
  let bytes = 0;
  let lastDraw = -Infinity;
  let lastPlain = started;
  let drawn = false;
  let finished = false;

  const rate = (t: number): number | undefined => {
    while (samples.length > 2 && t - samples[1]!.at >= RATE_WINDOW_MS) samples.shift();
    const first = samples[0]!;
    const span = t - first.at;
    return span >= 500 ? ((bytes - first.bytes) * 1000) / span : undefined;
  };

  const describe = (t: number): string => {
    const r = rate(t);
    const parts = [
      o.total
        ? `${formatBytes(bytes)} of ${formatBytes(o.total)} (${Math.min(100, Math.floor((bytes * 100) / o.total))}%)`
        : formatBytes(bytes),
    ];
    if (r !== undefined) parts.push(`${formatBytes(r)}/s`);
    if (r !== undefined && r > 0 && o.total && o.total > bytes)
      parts.push(`${formatDuration(((o.total - bytes) * 1000) / r)} left`);
    else if (!o.total || o.total <= bytes) parts.push(`${formatDuration(t - started)} elapsed`);
    return `${o.label}: ${parts.join(', ')}`;
  };

  const update = (value: number) => {
    if (finished) return;
    bytes = value;
    const t = now();
    const last = samples[samples.length - 1]!;
    if (t - last.at >= 250) samples.push({ at: t, bytes });
    if (live) {
      if (t - lastDraw < LIVE_EVERY_MS) return;
      lastDraw = t;
      // A pseudo-terminal without a size reports 0 columns.
      const width = Math.max(20, (stream.columns || 100) - 1);
      const text = describe(t).slice(0, width);
      stream.write(`\r\x1b[2K${colour ? `\x1b[2m${text}\x1b[22m` : text}`);
      drawn = true;
    } else if (t - lastPlain >= plainEvery) {
      lastPlain = t;
      stream.write(`${new Date().toISOString()} ${describe(t)}\n`);
    }
  };

  const clear = () => {
    if (!drawn) return;
    drawn = false;
    lastDraw = -Infinity;
    stream.write('\r\x1b[2K');
  };
  return {
    update,
    add: (n: number) => update(bytes + n),
    clear,
    done() {
      if (finished) return;
      finished = true;
      clear();
    },
  };
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  // 1023.7 KiB would print as "1024 KiB": move up a unit instead.
  while (u < UNITS.length - 1 && (v >= 1024 || (u > 0 && Math.round(v) >= 1024))) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(v)} B` : `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${UNITS[u]}`;
}

/** 75_000 -> "1m15s"; 5_400_000 -> "1h30m". */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
