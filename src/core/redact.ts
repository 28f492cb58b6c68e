/**
 * One redactor for the whole process: every reporter, the journal and every error message pass
 * through it. Secrets are registered the moment they are resolved (unseal keys, tokens, OTPs) and
 * masked wherever they would appear, including inside longer strings and JSON.
 */
export const MASK = '[redacted]';

/** Shorter values are too likely to collide with ordinary text; none of Vault's secrets are this short. */
const MIN_SECRET_LENGTH = 6;

export class Redactor {
  readonly #secrets = new Set<string>();
  #pattern: RegExp | undefined;

  add(...values: ReadonlyArray<string | undefined | null>): void {
    for (const value of values) {
      if (typeof value !== 'string' || value.length < MIN_SECRET_LENGTH || this.#secrets.has(value)) continue;
      this.#secrets.add(value);
      // Unseal keys are shown both as base64 and hex by Vault; mask both forms when one is known.
      const hex = base64ToHex(value);
      if (hex !== undefined) this.#secrets.add(hex);
      this.#pattern = undefined;
    }
  }

  get size(): number {
    return this.#secrets.size;
  }

  redact(text: string): string {
    if (this.#secrets.size === 0 || text.length === 0) return text;
    this.#pattern ??= new RegExp(
      [...this.#secrets].sort((a, b) => b.length - a.length).map(escapeRegExp).join('|'),
      'g',
    );
    return text.replace(this.#pattern, MASK);
  }

  /** Redacts every string inside a JSON-like value (for journal records and --json events). */
  redactValue<T>(value: T): T {
    if (this.#secrets.size === 0) return value;
    return JSON.parse(this.redact(JSON.stringify(value))) as T;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function base64ToHex(value: string): string | undefined {
  if (!/^[A-Za-z0-9+/]{20,}={0,2}$/.test(value)) return undefined;
  const hex = Buffer.from(value, 'base64').toString('hex');
  return hex.length >= MIN_SECRET_LENGTH ? hex : undefined;
}

/** The process-wide redactor. Library code registers secrets here; the CLI redacts output with it. */
export const redactor = new Redactor();
