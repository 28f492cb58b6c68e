import { parseVersion } from '../core/version.js';

/**
 * Releases this vaultops knows of, per flavour and minor line (the versions its labs run). A line
 * that is not here is reported as unknown rather than guessed; update the table with each release.
 */
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
): { newestOfLine?: string | undefined; newerLines: number; known: boolean } {
  const v = versionTriple(version);
  const known = (KNOWN_RELEASES[flavor] ?? []).map((x) => [x, versionTriple(x)!] as const);
  if (!v) return { newerLines: 0, known: false };
  const line = known.filter(([, p]) => p[0] === v[0] && p[1] === v[1]);
  if (!line.length) return { newerLines: 0, known: false };
  const newest = line.reduce((a, b) => (b[1][2] > a[1][2] ? b : a));
  const newerLines = new Set(
    known.filter(([, p]) => p[0] > v[0] || (p[0] === v[0] && p[1] > v[1])).map(([, p]) => `${p[0]}.${p[1]}`),
  ).size;
  return { newestOfLine: newest[0], newerLines, known: true };
}
