import { parseVersion } from '../core/version.js';

/**
 * The release list bundled with vaultops, per flavour (the versions its labs run): the fallback when
 * the upstream list (release-list.ts) cannot be read. A line that is in no list is reported as
 * unknown rather than guessed; update the table and its date with each vaultops release.
 */
export const BUNDLED_RELEASES_DATE = '2026-12-02';
export const KNOWN_RELEASES: Record<string, readonly string[]> = {
  openbao: ['2.6.1', '2.6.2', '2.7.0', '2.7.1', '2.7.2'],
  vault: ['1.19.0', '1.21.0'],
};

/** major.minor.patch of a version (core's parser: "v2.7.2", "1.19.0+ent", pre-releases). */
export function versionTriple(v: string): [number, number, number] | undefined {
  const p = parseVersion(v);
  return p ? [p.parts[0]!, p.parts[1]!, p.parts[2]!] : undefined;
}

/** How far a version is behind: the newest known patch of its line, and how many minor lines are newer. */
export function versionStanding(
  flavor: string,
  version: string,
  releases: readonly string[] = KNOWN_RELEASES[flavor] ?? [],
): { newestOfLine?: string | undefined; newerLines: number; known: boolean; olderThanList?: boolean } {
  const v = versionTriple(version);
  const known = releases.flatMap((x) => {
    const p = versionTriple(x);
    return p ? [[x, p] as const] : [];
  });
  if (!v) return { newerLines: 0, known: false };
  const line = known.filter(([, p]) => p[0] === v[0] && p[1] === v[1]);
  const lines = new Set(known.map(([, p]) => `${p[0]}.${p[1]}`));
  // A line older than every line of the list (which holds the recent releases) is out of support.
  if (!line.length && known.length && known.every(([, p]) => p[0] > v[0] || (p[0] === v[0] && p[1] > v[1])))
    return { newerLines: lines.size, known: true, olderThanList: true };
  if (!line.length) return { newerLines: 0, known: false };
  const newest = line.reduce((a, b) => (b[1][2] > a[1][2] ? b : a));
  const newerLines = new Set(
    known.filter(([, p]) => p[0] > v[0] || (p[0] === v[0] && p[1] > v[1])).map(([, p]) => `${p[0]}.${p[1]}`),
  ).size;
  return { newestOfLine: newest[0], newerLines, known: true };
}
