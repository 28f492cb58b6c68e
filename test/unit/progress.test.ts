import { describe, expect, it } from 'vitest';
import { createProgress, formatBytes, formatDuration, type ProgressOptions } from '../../src/ui/progress.js';

const MiB = 1024 * 1024;

/** A stream that keeps what was written, and a clock the test moves. */
function harness(
  options: Partial<ProgressOptions> & { tty?: boolean; env?: NodeJS.ProcessEnv; columns?: number } = {},
) {
  const writes: string[] = [];
  let t = 0;
  const p = createProgress({
    label: 'snapshot of prod',
    stream: { isTTY: options.tty ?? false, columns: options.columns ?? 120, write: (s: string) => writes.push(s) },
    env: options.env ?? {},
    now: () => t,
    ...options,
  });
  /** `seconds` of transfer at `perSecond` bytes/s, updates every 100 ms. */
  const run = (seconds: number, perSecond: number, from = 0) => {
    let bytes = from;
    for (let i = 0; i < seconds * 10; i++) {
      t += 100;
      bytes += perSecond / 10;
      p.update(bytes);
    }
    return bytes;
  };
  return { p, writes, run };
}

describe('progress without a terminal (cron, CI, a pipe)', () => {
  it('prints a line every 10 s with bytes, total, rate and time left', () => {
    const { p, writes, run } = harness({ total: 1024 * MiB });
    run(25, 10 * MiB);
    p.done();
    expect(writes).toHaveLength(2);
    expect(writes[0]).toMatch(
      /^\d{4}-\d\d-\d\dT[\d:.]+Z snapshot of prod: 100 MiB of 1.0 GiB \(9%\), 10\.0 MiB\/s, 1m32s left\n$/,
    );
    expect(writes[1]).toMatch(/snapshot of prod: 200 MiB of 1.0 GiB \(19%\), 10\.0 MiB\/s, 1m22s left\n$/);
    expect(writes.join('')).not.toContain('\x1b');
    expect(writes.join('')).not.toContain('\r');
  });

  it('says nothing for work shorter than the interval', () => {
    const { p, writes, run } = harness({ total: 30 * MiB });
    run(3, 10 * MiB);
    p.done();
    expect(writes).toEqual([]);
  });

  it('without a known total: bytes, rate and time elapsed', () => {
    const { writes, run } = harness();
    run(11, 2 * MiB);
    expect(writes).toHaveLength(1);
    expect(writes[0]).toMatch(/snapshot of prod: 20\.0 MiB, 2\.0 MiB\/s, 10s elapsed\n$/);
  });

  it('the rate follows a stall (measured over the last seconds, not since the start)', () => {
    const { writes, run } = harness({ total: 1024 * MiB });
    const done = run(5, 10 * MiB);
    run(16, 0, done);
    expect(writes).toHaveLength(2);
    expect(writes[1]).toMatch(/snapshot of prod: 50\.0 MiB of 1\.0 GiB \(4%\), 0 B\/s\n$/);
  });
});

describe('progress on a terminal', () => {
  it('rewrites one dim line at most every 200 ms and clears it at the end', () => {
    const { p, writes, run } = harness({ tty: true, total: 100 * MiB });
    run(2, 10 * MiB);
    p.done();
    const draws = writes.slice(0, -1);
    expect(draws.length).toBeGreaterThanOrEqual(9);
    expect(draws.length).toBeLessThanOrEqual(11);
    for (const w of draws) expect(w).toMatch(/^\r\x1b\[2K\x1b\[2msnapshot of prod: .*\x1b\[22m$/);
    expect(draws[draws.length - 1]).toMatch(/1\d\.0 MiB of 100 MiB \(1\d%\), 10\.0 MiB\/s, 8s left/);
    expect(writes[writes.length - 1]).toBe('\r\x1b[2K');
  });

  it('a terminal that reports no size (0 columns) still gets the whole line, and a narrow one a cut line', () => {
    const unsized = harness({ tty: true, columns: 0, total: 100 * MiB });
    unsized.run(1, MiB);
    expect(unsized.writes[unsized.writes.length - 1]).toMatch(
      /snapshot of prod: [\d.]+ (KiB|MiB) of 100 MiB \(\d%\), [\d.]+ (KiB|MiB)\/s, \dm\d\ds left\x1b\[22m$/,
    );
    const narrow = harness({ tty: true, columns: 30, env: { NO_COLOR: '1' } });
    narrow.run(1, MiB);
    expect(narrow.writes[narrow.writes.length - 1]).toMatch(/^\r\x1b\[2Ksnapshot of prod: [\d.]+ KiB, /);
    expect(narrow.writes[narrow.writes.length - 1]!.length).toBe('\r\x1b[2K'.length + 29);
  });

  it('NO_COLOR keeps the live line but drops the colour', () => {
    const { writes, run } = harness({ tty: true, env: { NO_COLOR: '1' } });
    run(1, MiB);
    expect(writes.length).toBeGreaterThan(0);
    expect(writes.join('')).not.toContain('\x1b[2m');
    expect(writes[0]).toMatch(/^\r\x1b\[2Ksnapshot of prod: /);
  });

  it('TERM=dumb gets the plain lines instead of cursor movement', () => {
    const { writes, run } = harness({ tty: true, env: { TERM: 'dumb' } });
    run(12, MiB);
    expect(writes).toHaveLength(1);
    expect(writes[0]).not.toContain('\r');
    expect(writes[0]).toMatch(/snapshot of prod: 10\.0 MiB, 1\.0 MiB\/s, 10s elapsed\n$/);
  });
});

describe('--quiet', () => {
  it('prints nothing, on a terminal or not', () => {
    for (const tty of [true, false]) {
      const { p, writes, run } = harness({ tty, quiet: true, total: 100 * MiB });
      run(30, MiB);
      p.done();
      expect(writes).toEqual([]);
    }
  });
});

describe('formatting', () => {
  it('bytes and durations read as a person writes them', () => {
    expect([0, 1023, 1024, 1536 * 1024, 1023.7 * 1024, 5 * 1024 * MiB].map(formatBytes)).toEqual([
      '0 B',
      '1023 B',
      '1.0 KiB',
      '1.5 MiB',
      '1.0 MiB',
      '5.0 GiB',
    ]);
    expect([0, 59_400, 75_000, 5_400_000].map(formatDuration)).toEqual(['0s', '59s', '1m15s', '1h30m']);
  });
});
