import { ExitCode } from '../core/exit-codes.js';

/**
 * Clusters backed up at once when `--concurrency` is not given. A snapshot is produced by each
 * cluster's leader, so backups of different clusters overlap well; but this process verifies every
 * stream (sha256, gunzip, tar) on one Node thread, so past a few streams the client is the limit
 * (bench/fleet.js). Four keeps a large fleet from opening dozens of streams and temp files at once.
 */
export const DEFAULT_FLEET_CONCURRENCY = 4;

/**
 * Runs `work` for every item, at most `concurrency` at a time, in the items' order, and returns
 * every outcome in that order. A rejected item never stops or delays the others: its rejection is
 * its outcome. Items not yet started when `signal` aborts are not started (outcome: the abort reason).
 */
export async function runLimited<T, R>(
  items: readonly T[],
  concurrency: number,
  work: (item: T, index: number) => Promise<R>,
  signal?: AbortSignal,
): Promise<PromiseSettledResult<R>[]> {
  const results = new Array<PromiseSettledResult<R>>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      if (signal?.aborted) {
        results[i] = { status: 'rejected', reason: signal.reason };
        continue;
      }
      try {
        results[i] = { status: 'fulfilled', value: await work(items[i]!, i) };
      } catch (e) {
        results[i] = { status: 'rejected', reason: e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
  return results;
}

/**
 * The exit code of a fleet run, for cron: 0 when every cluster succeeded; 130 when the run was
 * interrupted; otherwise the code of the first cluster, in the order they were named, that failed.
 * The order is the command line's (or the inventory's with --all-clusters), not the order backups
 * finished in, so the same failures give the same code whatever the concurrency.
 */
export function fleetExitCode(codes: readonly number[], interrupted = false): number {
  if (codes.every((c) => c === ExitCode.ok)) return ExitCode.ok;
  if (interrupted) return ExitCode.interrupted;
  return codes.find((c) => c !== ExitCode.ok)!;
}

/** `--concurrency N`: a whole number >= 1, else undefined (the caller says what is wrong). */
export function parseConcurrency(value: string | undefined): number | undefined {
  if (value === undefined) return DEFAULT_FLEET_CONCURRENCY;
  const n = Number(value);
  return Number.isInteger(n) && n >= 1 ? n : undefined;
}
