import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_FLEET_CONCURRENCY, fleetExitCode, parseConcurrency, runLimited } from '../../../src/backup/fleet.js';
import { writePromTextfile, type BackupReport } from '../../../src/notify/notify.js';

/** A promise with its resolve/reject outside, so a test decides when each cluster's "backup" ends. */
function gate<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
const tick = () => new Promise((r) => setImmediate(r));

describe('a fleet run backs up at most --concurrency clusters at once, and one failure never stops the others', () => {
  it('starts the next cluster only when one finishes, keeps the named order in the results, and goes on after a failure', async () => {
    const gates = [gate<string>(), gate<string>(), gate<string>(), gate<string>()];
    const started: number[] = [];
    let running = 0;
    let peak = 0;
    const run = runLimited(['a', 'b', 'c', 'd'], 2, async (_item, i) => {
      started.push(i);
      peak = Math.max(peak, ++running);
      try {
        return await gates[i]!.promise;
      } finally {
        running--;
      }
    });
    await tick();
    expect(started).toEqual([0, 1]);
    gates[1]!.reject(new Error('b is unreachable'));
    await tick();
    expect(started).toEqual([0, 1, 2]);
    gates[0]!.resolve('a ok');
    gates[2]!.resolve('c ok');
    await tick();
    gates[3]!.resolve('d ok');
    const results = await run;
    expect(peak).toBe(2);
    expect(
      results.map((r) => (r.status === 'fulfilled' ? r.value : `rejected: ${(r.reason as Error).message}`)),
    ).toEqual(['a ok', 'rejected: b is unreachable', 'c ok', 'd ok']);
  });

  it('an interrupt lets the running backups end and starts none of the waiting ones', async () => {
    const abort = new AbortController();
    const first = gate<string>();
    const started: string[] = [];
    const run = runLimited(
      ['a', 'b', 'c'],
      1,
      async (item) => {
        started.push(item);
        return first.promise;
      },
      abort.signal,
    );
    await tick();
    abort.abort(new Error('interrupted'));
    first.resolve('a ok');
    const results = await run;
    expect(started).toEqual(['a']);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected']);
  });
});

describe('the exit code of a fleet run', () => {
  it('is 0 when all succeeded, else the first failed cluster in the order named, and 130 when interrupted', () => {
    expect(fleetExitCode([0, 0, 0])).toBe(0);
    expect(fleetExitCode([0, 3, 1])).toBe(3);
    expect(fleetExitCode([1, 3])).toBe(1);
    expect(fleetExitCode([0, 3, 130], true)).toBe(130);
    expect(fleetExitCode([0, 0], true)).toBe(0);
  });

  it('--concurrency takes a whole number >= 1 and defaults to 4', () => {
    expect(parseConcurrency(undefined)).toBe(DEFAULT_FLEET_CONCURRENCY);
    expect(DEFAULT_FLEET_CONCURRENCY).toBe(4);
    expect(parseConcurrency('2')).toBe(2);
    for (const bad of ['0', '-1', '1.5', 'two', '']) expect(parseConcurrency(bad)).toBeUndefined();
  });
});

describe('the Prometheus textfile of a fleet run', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vaultops-unit-fleet-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const report = (cluster: string, ok: boolean, end: number, size?: number): BackupReport => ({
    cluster,
    result: ok ? 'success' : 'failure',
    startedAt: new Date(end - 2000),
    finishedAt: new Date(end),
    size,
    exitCode: ok ? 0 : 3,
  });

  it('holds every cluster of the run under one HELP/TYPE per metric, and a failed cluster keeps its last success', async () => {
    const file = join(dir, 'vaultops.prom');
    await writePromTextfile(file, [report('eu', true, 1_000_000, 10), report('us', true, 1_000_000, 20)]);
    await writePromTextfile(file, [report('eu', true, 2_000_000, 11), report('us', false, 2_000_000)]);
    const text = readFileSync(file, 'utf8');
    for (const m of [
      'last_run_timestamp_seconds',
      'last_result',
      'last_duration_seconds',
      'last_success_timestamp_seconds',
      'last_size_bytes',
    ]) {
      expect(text.match(new RegExp(`^# HELP vaultops_backup_${m} `, 'gm'))).toHaveLength(1);
      expect(text.match(new RegExp(`^# TYPE vaultops_backup_${m} gauge$`, 'gm'))).toHaveLength(1);
    }
    // Samples of one metric follow its HELP/TYPE without another family in between.
    expect(text).toContain(
      'vaultops_backup_last_result{cluster="eu"} 1\nvaultops_backup_last_result{cluster="us"} 0\n',
    );
    expect(text).toContain(
      'vaultops_backup_last_success_timestamp_seconds{cluster="eu"} 2000\nvaultops_backup_last_success_timestamp_seconds{cluster="us"} 1000\n',
    );
    expect(text).toContain(
      'vaultops_backup_last_size_bytes{cluster="eu"} 11\nvaultops_backup_last_size_bytes{cluster="us"} 20\n',
    );
  });
});
