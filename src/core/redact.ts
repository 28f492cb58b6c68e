/**
 * One redactor for the whole process: every reporter, the journal and every error message pass
 * through it. Secrets are registered the moment they are resolved (unseal keys, tokens, OTPs) and
 * masked wherever they would appear, including inside longer strings and JSON.
 *
 * What is masked, for every registered value:
 *  - the value itself, and its JSON-escaped form (once and twice escaped: JSON inside JSON), so a
 *    secret holding `"` or `\` is masked in `--json` output and the journal too;
 *  - its bytes re-encoded: base64, base64url, lower- and uppercase hex of the text; and when the
 *    value itself is base64, base64url or hex (unseal keys, which Vault prints both ways), the same
 *    encodings of the bytes it decodes to.
 * Values of 4 characters or more are masked wherever they appear; values of 1-3 characters only
 * where they stand alone (not next to a letter or digit), so that a short secret does not blank out
 * every word that happens to contain it. What cannot be masked: a secret split across two outputs,
 * compressed or encrypted, or base64-encoded inside a longer base64 text at an offset that is not a
 * multiple of 3 bytes.
 */
export const MASK = '[redacted]';

/** Values shorter than this are masked only where they stand alone (see above). */
const ANYWHERE_LENGTH = 4;

export class Redactor {
  /** Every form to mask (the values and their derived encodings). */
  readonly #forms = new Set<string>();
  readonly #values = new Set<string>();
  #pattern: RegExp | undefined;
  #longest = 0;

  add(...values: ReadonlyArray<string | undefined | null>): void {
    for (const value of values) {
      if (typeof value !== 'string' || value.length === 0 || this.#values.has(value)) continue;
      this.#values.add(value);
      for (const form of formsOf(value)) {
        if (form.length === 0 || this.#forms.has(form)) continue;
        this.#forms.add(form);
        this.#longest = Math.max(this.#longest, form.length);
      }
      this.#pattern = undefined;
    }
  }

  /** How many forms are masked (values and their encodings). */
  get size(): number {
    return this.#forms.size;
  }

  /** The longest masked form, in characters (how far back a cut can reach into a secret). */
  get longest(): number {
    return this.#longest;
  }

  redact(text: string): string {
    return this.#mask(text, 0);
  }

  /**
   * The last `maxChars` characters of `text`, redacted, for output cut to a tail: secrets are found
   * in the whole text first, and a secret the cut falls into is masked whole, so no part of it shows.
   */
  redactTail(text: string, maxChars: number): string {
    return this.#mask(text, Math.max(0, text.length - maxChars));
  }

  /** Redacts every string (and every number or key that holds a secret) inside a JSON-like value. */
  redactValue<T>(value: T): T {
    if (this.#forms.size === 0 || value === undefined) return value;
    const plain = JSON.parse(JSON.stringify(value) ?? 'null') as unknown;
    return this.#walk(plain) as T;
  }

  #walk(v: unknown): unknown {
    if (typeof v === 'string') return this.redact(v);
    if (typeof v === 'number') {
      const s = String(v);
      return this.redact(s) === s ? v : MASK;
    }
    if (Array.isArray(v)) return v.map((x) => this.#walk(x));
    if (v && typeof v === 'object') {
      return Object.fromEntries(
        Object.entries(v as Record<string, unknown>).map(([k, x]) => [this.redact(k), this.#walk(x)]),
      );
    }
    return v;
  }

  /** Masks every occurrence (overlapping ones merged) and drops what lies before `from`. */
  #mask(text: string, from: number): string {
    if (this.#forms.size === 0 || text.length === 0) return text.slice(from);
    this.#pattern ??= buildPattern(this.#forms);
    const re = this.#pattern;
    re.lastIndex = 0;
    // Longest match starting at each position (a lookahead, so overlapping secrets are all found).
    const spans: Array<[number, number]> = [];
    for (let m = re.exec(text); m; m = re.exec(text)) {
      const len = m[1]!.length;
      const last = spans[spans.length - 1];
      if (last && m.index <= last[1]) last[1] = Math.max(last[1], m.index + len);
      else spans.push([m.index, m.index + len]);
      re.lastIndex = m.index + 1;
    }
    if (spans.length === 0) return text.slice(from);
    let out = '';
    let pos = from;
    for (const [start, end] of spans) {
      if (end <= pos) continue;
      out += text.slice(pos, Math.max(pos, start)) + MASK;
      pos = end;
    }
    return out + text.slice(pos);
  }
}

function buildPattern(forms: Set<string>): RegExp {
  const alternatives = [...forms]
    .sort((a, b) => b.length - a.length)
    .map((f) => (f.length >= ANYWHERE_LENGTH ? escapeRegExp(f) : `(?<![A-Za-z0-9])${escapeRegExp(f)}(?![A-Za-z0-9])`));
  return new RegExp(`(?=(${alternatives.join('|')}))`, 'g');
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

/** The value, its escaped forms, and its encodings (see the comment at the top). */
function formsOf(value: string): string[] {
  const forms = [value, jsonEscaped(value), jsonEscaped(jsonEscaped(value))];
  const raw = Buffer.from(value, 'utf8');
  // Re-encodings of short values would be short themselves and match ordinary text.
  if (raw.length >= 3) forms.push(...encodings(raw));
  for (const bytes of decodings(value)) if (bytes.length >= 3) forms.push(...encodings(bytes));
  return [...new Set(forms)];
}

function jsonEscaped(s: string): string {
  return JSON.stringify(s).slice(1, -1);
}

function encodings(bytes: Buffer): string[] {
  const hex = bytes.toString('hex');
  const b64 = bytes.toString('base64');
  return [b64, b64.replace(/=+$/, ''), bytes.toString('base64url'), hex, hex.toUpperCase()];
}

/** The bytes a value stands for when it is hex, base64 or base64url (only exact round trips count). */
function decodings(value: string): Buffer[] {
  const out: Buffer[] = [];
  if (value.length >= 6 && value.length % 2 === 0 && /^[0-9a-fA-F]+$/.test(value)) out.push(Buffer.from(value, 'hex'));
  if (value.length >= 6 && /^[A-Za-z0-9+/]+={0,2}$/.test(value)) {
    const b = Buffer.from(value, 'base64');
    if (b.toString('base64').replace(/=+$/, '') === value.replace(/=+$/, '')) out.push(b);
  }
  if (value.length >= 6 && /^[A-Za-z0-9_-]+$/.test(value)) {
    const b = Buffer.from(value, 'base64url');
    if (b.toString('base64url') === value) out.push(b);
  }
  return out;
}

/** The process-wide redactor. Library code registers secrets here; the CLI redacts output with it. */
export const redactor = new Redactor();
