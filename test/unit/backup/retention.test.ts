import { describe, expect, it } from 'vitest';
import { planRetention } from '../../../src/backup/stores/retention.js';
import { parseRetentionDuration } from '../../../src/core/duration.js';
import { parseEvery } from '../../../src/cli/schedule.js';

const now = new Date('2026-11-25T12:00:00Z');
const hoursAgo = (h: number) => ({ name: `b-${h}h`, finishedAt: new Date(now.getTime() - h * 3_600_000) });
const entries = [0, 1, 2, 5, 30, 200].map(hoursAgo);

describe('retention keeps what its rule says and never the newest verified backup', () => {
  it('keep_last 3 removes the rest, oldest included', () => {
    const d = planRetention(entries, { keepLast: 3 }, now);
    expect(d.keep.map((k) => k.entry.name)).toEqual(['b-0h', 'b-1h', 'b-2h']);
    expect(d.remove.map((k) => k.entry.name)).toEqual(['b-5h', 'b-30h', 'b-200h']);
  });

  it('keep_within 24h keeps everything younger', () => {
    const d = planRetention(entries, { keepWithinMs: parseRetentionDuration('24h') }, now);
    expect(d.remove.map((k) => k.entry.name)).toEqual(['b-30h', 'b-200h']);
  });

  it('both rules: a backup is kept if either keeps it', () => {
    const d = planRetention(entries, { keepLast: 1, keepWithinMs: parseRetentionDuration('3h') }, now);
    expect(d.keep.map((k) => k.entry.name)).toEqual(['b-0h', 'b-1h', 'b-2h']);
  });

  it('the newest is kept even when every rule would drop it', () => {
    const d = planRetention([hoursAgo(500), hoursAgo(900)], { keepWithinMs: parseRetentionDuration('1d') }, now);
    expect(d.keep.map((k) => k.entry.name)).toEqual(['b-500h']);
    expect(d.keep[0]!.why).toMatch(/newest/);
  });

  it('no rule keeps everything', () => {
    expect(planRetention(entries, {}, now).remove).toEqual([]);
  });

  it('input order does not matter', () => {
    expect(planRetention([...entries].reverse(), { keepLast: 2 }, now).keep.map((k) => k.entry.name)).toEqual([
      'b-0h',
      'b-1h',
    ]);
  });
});

describe('schedule intervals become cron and systemd calendar expressions', () => {
  it('hourly at a minute derived from the cluster name, the same every time', () => {
    const a = parseEvery('1h', 'prod');
    expect(a).toEqual(parseEvery('1h', 'prod'));
    expect(a.cron).toMatch(/^\d{1,2} \* \* \* \*$/);
    expect(a.onCalendar).toMatch(/^\*-\*-\* \*:\d\d:00$/);
  });

  it('every 15 minutes, every 6 hours, daily', () => {
    expect(parseEvery('15m', 'x').cron).toMatch(/^\d+-59\/15 \* \* \* \*$/);
    expect(parseEvery('6h', 'x').cron).toMatch(/^\d+ \d+-23\/6 \* \* \*$/);
    expect(parseEvery('1d', 'x').onCalendar).toMatch(/^\*-\*-\* \d\d:\d\d:00$/);
  });

  it('refuses intervals cron cannot express evenly', () => {
    expect(() => parseEvery('7m', 'x')).toThrow(/divide 60/);
    expect(() => parseEvery('5h', 'x')).toThrow(/divide 24/);
    expect(() => parseEvery('soon', 'x')).toThrow(/not an interval/);
  });
});
