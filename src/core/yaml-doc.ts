import { LineCounter, parseDocument, isNode, type Document } from 'yaml';
import type { ZodType } from 'zod';
import { nearest, type Problem } from './positions.js';

export type PathKey = string | number;

/**
 * A parsed YAML document that remembers where every value came from, so later checks (schema,
 * semantic rules) can point at `file:line:col`.
 */
export class YamlSource {
  readonly file: string;
  readonly doc: Document;
  readonly #lines: LineCounter;
  readonly problems: Problem[] = [];

  constructor(file: string, text: string) {
    this.file = file;
    this.#lines = new LineCounter();
    this.doc = parseDocument(text, { lineCounter: this.#lines, prettyErrors: false, uniqueKeys: true, strict: true });
    for (const err of [...this.doc.errors]) {
      const pos = err.linePos?.[0] ?? this.#pos(err.pos[0]);
      this.problems.push({
        file,
        line: pos.line,
        col: pos.col,
        message: err.message.split('\n')[0] ?? 'YAML syntax error',
        hint: yamlHint(err.code),
      });
    }
  }

  /** The plain JS value of the document (undefined when the YAML did not parse). */
  toJS(): unknown {
    if (this.doc.errors.length > 0) return undefined;
    try {
      return this.doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      this.problems.push({ file: this.file, line: 1, col: 1, message: (e as Error).message });
      return undefined;
    }
  }

  /** The position of the value at `path`, or of its nearest existing parent. */
  position(path: readonly PathKey[]): { line: number; col: number } {
    for (let n = path.length; n >= 0; n--) {
      const node = this.doc.getIn(path.slice(0, n), true);
      if (isNode(node) && node.range) {
        // For a missing key, point at the mapping that should hold it.
        return this.#pos(node.range[0]);
      }
    }
    return { line: 1, col: 1 };
  }

  /** The position of the *key* at `path` (for unknown-key problems). */
  keyPosition(path: readonly PathKey[]): { line: number; col: number } {
    const parent = this.doc.getIn(path.slice(0, -1), true) as
      { items?: Array<{ key?: { value?: unknown; range?: [number, number, number] } }> } | undefined;
    const last = path[path.length - 1];
    const item = parent?.items?.find((i) => i.key?.value === last);
    if (item?.key?.range) return this.#pos(item.key.range[0]);
    return this.position(path);
  }

  add(path: readonly PathKey[], message: string, hint?: string, atKey = false): void {
    const pos = atKey ? this.keyPosition(path) : this.position(path);
    this.problems.push({ file: this.file, line: pos.line, col: pos.col, message, hint });
  }

  /** Validates with a zod schema, turning every issue into a positioned problem. */
  validate<T>(schema: ZodType<T>, value: unknown, basePath: readonly PathKey[] = []): T | undefined {
    const result = schema.safeParse(value);
    if (result.success) return result.data;
    for (const issue of result.error.issues) {
      const rel = issue.path.filter((k): k is PathKey => typeof k === 'string' || typeof k === 'number');
      const path = [...basePath, ...rel];
      const where = path.length ? path.join('.') : 'document';
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) {
          const parentShape = shapeKeys(schema, rel);
          const guess = parentShape ? nearest(key, parentShape) : undefined;
          this.add(
            [...path, key],
            `unknown key "${key}" in ${where}`,
            guess ? `did you mean "${guess}"?` : parentShape ? `allowed: ${parentShape.join(', ')}` : undefined,
            true,
          );
        }
        continue;
      }
      this.add(path, `${where}: ${issue.message}`);
    }
    return undefined;
  }

  #pos(offset: number): { line: number; col: number } {
    const p = this.#lines.linePos(offset);
    return { line: p.line, col: p.col };
  }
}

function yamlHint(code: string): string | undefined {
  switch (code) {
    case 'DUPLICATE_KEY':
      return 'each key may appear once in a mapping; remove or rename one';
    case 'BAD_INDENT':
    case 'MISSING_CHAR':
      return 'check the indentation: use spaces, two per level';
    case 'TAB_AS_INDENT':
      return 'YAML does not allow tabs for indentation; use spaces';
    default:
      return undefined;
  }
}

/** Keys allowed at `path` in an object schema, for "did you mean" hints (best effort). */
function shapeKeys(schema: ZodType, path: readonly PathKey[]): string[] | undefined {
  let s: unknown = schema;
  for (const key of path) {
    s = unwrap(s);
    const def = (
      s as { def?: { type?: string; shape?: Record<string, unknown>; element?: unknown; valueType?: unknown } }
    ).def;
    if (!def) return undefined;
    if (def.type === 'object' && typeof key === 'string') s = def.shape?.[key];
    else if (def.type === 'array' && typeof key === 'number') s = def.element;
    else if (def.type === 'record') s = def.valueType;
    else return undefined;
  }
  s = unwrap(s);
  const def = (s as { def?: { type?: string; shape?: Record<string, unknown> } }).def;
  return def?.type === 'object' && def.shape ? Object.keys(def.shape) : undefined;
}

function unwrap(s: unknown): unknown {
  let cur = s as { def?: { type?: string; innerType?: unknown; in?: unknown } } | undefined;
  for (let i = 0; i < 10 && cur?.def; i++) {
    const t = cur.def.type;
    if (
      t === 'optional' ||
      t === 'nullable' ||
      t === 'default' ||
      t === 'prefault' ||
      t === 'readonly' ||
      t === 'catch'
    )
      cur = cur.def.innerType as typeof cur;
    else if (t === 'pipe') cur = cur.def.in as typeof cur;
    else break;
  }
  return cur;
}
