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

export function planRetention<T extends RetentionCandidate>(entries: readonly T[], rule: RetentionRule, now: Date): RetentionDecision<T> {
  const sorted = [...entries].sort((a, b) => b.finishedAt.getTime() - a.finishedAt.getTime() || b.name.localeCompare(a.name));
  const keep: RetentionDecision<T>['keep'] = [];
  const remove: RetentionDecision<T>['remove'] = [];
  sorted.forEach((entry, i) => {
    const age = now.getTime() - entry.finishedAt.getTime();
    if (i === 0) keep.push({ entry, why: 'newest verified backup (never deleted)' });
    else if (!hasRetentionRule(rule)) keep.push({ entry, why: 'no retention rule' });
    else if (rule.keepLast !== undefined && i < rule.keepLast) keep.push({ entry, why: `one of the last ${rule.keepLast}` });
    else if (rule.keepWithinMs !== undefined && age < rule.keepWithinMs) keep.push({ entry, why: `younger than ${formatDuration(rule.keepWithinMs)}` });
    else {
      const parts: string[] = [];
      if (rule.keepLast !== undefined) parts.push(`not one of the last ${rule.keepLast}`);
      if (rule.keepWithinMs !== undefined) parts.push(`older than ${formatDuration(rule.keepWithinMs)}`);
      remove.push({ entry, why: parts.join(' and ') });
    }
  });
  return { keep, remove };
}
