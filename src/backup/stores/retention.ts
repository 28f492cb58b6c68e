import { formatDuration } from '../../core/duration.js';
/**
 * Retention: which verified backups a store keeps. Pure, so the plan `--dry-run` prints is exactly
 * what a real run deletes. Only backups with a manifest (made and verified by us) are candidates;
 * files we did not write are never touched.
 */
export interface RetentionRule {
  /** Keep the newest N verified backups. */
  keepLast?: number | undefined;
  /** Keep every verified backup younger than this many milliseconds. */
  keepWithinMs?: number | undefined;
}

export interface RetentionCandidate {
  name: string;
  /** When the snapshot was finished (manifest), used for ordering and age. */
  finishedAt: Date;
}

export interface RetentionDecision<T extends RetentionCandidate> {
  keep: Array<{ entry: T; why: string }>;
  remove: Array<{ entry: T; why: string }>;
}

export function hasRetentionRule(rule: RetentionRule): boolean {
  return rule.keepLast !== undefined || rule.keepWithinMs !== undefined;
}

export function planRetention<T extends RetentionCandidate>(
  entries: readonly T[],
  rule: RetentionRule,
  now: Date,
): RetentionDecision<T> {
  const sorted = [...entries].sort(
    (a, b) => b.finishedAt.getTime() - a.finishedAt.getTime() || b.name.localeCompare(a.name),
  );
  const keep: RetentionDecision<T>['keep'] = [];
  const remove: RetentionDecision<T>['remove'] = [];
  sorted.forEach((entry, i) => {
    const age = now.getTime() - entry.finishedAt.getTime();
    if (i === 0) keep.push({ entry, why: 'newest verified backup (never deleted)' });
    else if (!hasRetentionRule(rule)) keep.push({ entry, why: 'no retention rule' });
    else if (rule.keepLast !== undefined && i < rule.keepLast)
      keep.push({ entry, why: `one of the last ${rule.keepLast}` });
    else if (rule.keepWithinMs !== undefined && age < rule.keepWithinMs)
      keep.push({ entry, why: `younger than ${formatDuration(rule.keepWithinMs)}` });
    else {
      const parts: string[] = [];
      if (rule.keepLast !== undefined) parts.push(`not one of the last ${rule.keepLast}`);
      if (rule.keepWithinMs !== undefined) parts.push(`older than ${formatDuration(rule.keepWithinMs)}`);
      remove.push({ entry, why: parts.join(' and ') });
    }
  });
  return { keep, remove };
}

/**
 * Why an entry cannot count as a good backup, or undefined when it verified. `newest` asks for the
 * full check (the snapshot itself, not only its stored bytes): the backup that will be kept as the
 * newest must be one that restores.
 */
export type RetentionVerifier<T> = (entry: T, newest: boolean) => Promise<string | undefined>;

export interface VerifiedRetentionDecision<T extends RetentionCandidate> extends RetentionDecision<T> {
  /** Entries that did not verify: never counted as kept backups, never deleted, reported. */
  unverified: Array<{ entry: T; why: string }>;
}

/**
 * Retention that counts only verified backups. Walks newest first (the caller's order; `first`,
 * when given, is put ahead of all: the backup this run just took and verified); every entry that
 * would count towards what is kept is verified first, and one that does not verify is set aside
 * (kept, reported) and the next one counts in its place. So a file whose manifest lies about its
 * time or content can neither take a kept slot nor push a real backup out: deletions are decided
 * only by backups that verified. Entries past what is kept are removed without being read.
 */
export async function planVerifiedRetention<T extends RetentionCandidate>(
  entries: readonly T[],
  rule: RetentionRule,
  now: Date,
  verify: RetentionVerifier<T>,
  first?: string,
): Promise<VerifiedRetentionDecision<T>> {
  const sorted = [...entries].sort(
    (a, b) =>
      (a.name === first ? -1 : b.name === first ? 1 : 0) ||
      b.finishedAt.getTime() - a.finishedAt.getTime() ||
      b.name.localeCompare(a.name),
  );
  const keep: VerifiedRetentionDecision<T>['keep'] = [];
  const remove: VerifiedRetentionDecision<T>['remove'] = [];
  const unverified: VerifiedRetentionDecision<T>['unverified'] = [];
  // Nothing is deleted without a rule: nothing needs reading either.
  if (!hasRetentionRule(rule))
    return {
      keep: sorted.map((entry, i) => ({ entry, why: i === 0 ? 'newest backup (never deleted)' : 'no retention rule' })),
      remove,
      unverified,
    };
  let counted = 0;
  for (const entry of sorted) {
    const age = now.getTime() - entry.finishedAt.getTime();
    const needed = counted === 0 || (rule.keepLast !== undefined && counted < rule.keepLast);
    if (needed) {
      const problem = entry.name === first ? undefined : await verify(entry, counted === 0);
      if (problem !== undefined) {
        unverified.push({ entry, why: problem });
        continue;
      }
      keep.push({
        entry,
        why: counted === 0 ? 'newest verified backup (never deleted)' : `one of the last ${rule.keepLast} verified`,
      });
      counted++;
    } else if (rule.keepWithinMs !== undefined && age < rule.keepWithinMs) {
      keep.push({ entry, why: `younger than ${formatDuration(rule.keepWithinMs)}` });
    } else {
      const parts: string[] = [];
      if (rule.keepLast !== undefined) parts.push(`not one of the last ${rule.keepLast}`);
      if (rule.keepWithinMs !== undefined) parts.push(`older than ${formatDuration(rule.keepWithinMs)}`);
      remove.push({ entry, why: parts.join(' and ') });
    }
  }
  return { keep, remove, unverified };
}
