const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/**
 * Durations as VAULT_CLIENT_TIMEOUT takes them (Vault's parseutil.ParseDurationSecond): bare
 * seconds ("60") or a Go duration ("60s", "2m", "500ms", "1m30s").
 */
export function parseDuration(v: string): number | undefined {
  const t = v.trim();
  if (/^\d+(?:\.\d+)?$/.test(t)) return Math.round(Number(t) * 1000);
  if (!/^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/.test(t)) return undefined;
  let total = 0;
  for (const m of t.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g))
    total += Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  return Math.round(total);
}

/** Go durations as Vault prints them: "10s", "1m30s", "500ms", "1h0m0s". */
export function parseGoDuration(text: string | undefined): number | undefined {
  if (!text) return undefined;
  let total = 0;
  let matched = '';
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)/g)) {
    const n = Number(m[1]);
    total +=
      n *
      ({ h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, µs: 0.001, ns: 0.000001 } as Record<string, number>)[
        m[2]!
      ]!;
    matched += m[0];
  }
  return matched === text.trim() && matched ? Math.round(total) : undefined;
}

/** "30m", "48h", "7d", "2w" -> milliseconds. */
export function parseRetentionDuration(text: string): number | undefined {
  const m = /^(\d+)(m|h|d|w)$/.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[m[2] as 'm' | 'h' | 'd' | 'w'];
}

export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['w', 604_800_000],
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
  ] as const) {
    if (ms % size === 0 && ms >= size) return `${ms / size}${unit}`;
  }
  return `${Math.round(ms / 1000)}s`;
}
