/**
 * A small, safe expression language for `when:`, `until:` and `{{ }}` templates. No eval: a
 * tokenizer and a recursive-descent parser over a fixed grammar.
 *
 *   expr   := or
 *   or     := and ('||' and)*          also the word `or`
 *   and    := not ('&&' not)*          also the word `and`
 *   not    := ('!' | 'not') not | cmp
 *   cmp    := primary (('=='|'!='|'<'|'<='|'>'|'>='|'in') primary)?
 *   primary:= number | string | true | false | null | path | '(' expr ')' | '[' list ']'
 *   path   := ident ('.' ident | '[' (number|string) ']')*
 */
export class ExprError extends Error {}

type Token = { kind: 'num' | 'str' | 'ident' | 'op' | 'punct'; value: string; pos: number };

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (/[0-9]/.test(c)) {
      const m = /^\d+(\.\d+)?/.exec(src.slice(i))!;
      out.push({ kind: 'num', value: m[0], pos: i });
      i += m[0].length;
      continue;
    }
    if (c === '"' || c === "'") {
      let j = i + 1;
      let s = '';
      while (j < src.length && src[j] !== c) {
        if (src[j] === '\\' && j + 1 < src.length) j++;
        s += src[j];
        j++;
      }
      if (j >= src.length) throw new ExprError(`unterminated string at column ${i + 1}`);
      out.push({ kind: 'str', value: s, pos: i });
      i = j + 1;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_-]*/.exec(src.slice(i))!;
      out.push({ kind: 'ident', value: m[0], pos: i });
      i += m[0].length;
      continue;
    }
    const two = src.slice(i, i + 2);
    if (['==', '!=', '<=', '>=', '&&', '||'].includes(two)) {
      out.push({ kind: 'op', value: two, pos: i });
      i += 2;
      continue;
    }
    if ('<>!'.includes(c)) {
      out.push({ kind: 'op', value: c, pos: i });
      i++;
      continue;
    }
    if ('.()[],'.includes(c)) {
      out.push({ kind: 'punct', value: c, pos: i });
      i++;
      continue;
    }
    throw new ExprError(`unexpected "${c}" at column ${i + 1}`);
  }
  return out;
}

export type Node =
  | { t: 'lit'; v: unknown }
  | { t: 'path'; root: string; parts: Array<string | number> }
  | { t: 'not'; e: Node }
  | { t: 'bin'; op: string; l: Node; r: Node }
  | { t: 'list'; items: Node[] };

export function parseExpr(src: string): Node {
  const toks = tokenize(src);
  let p = 0;
  const peek = () => toks[p];
  const eat = (value?: string): Token => {
    const t = toks[p];
    if (!t || (value !== undefined && t.value !== value))
      throw new ExprError(`expected ${value ?? 'more'} ${t ? `at column ${t.pos + 1}` : 'at the end'}`);
    p++;
    return t;
  };
  const isWord = (w: string) => peek()?.kind === 'ident' && peek()?.value === w;
  const or = (): Node => {
    let l = and();
    while (peek()?.value === '||' || isWord('or')) {
      p++;
      l = { t: 'bin', op: '||', l, r: and() };
    }
    return l;
  };
  const and = (): Node => {
    let l = not();
    while (peek()?.value === '&&' || isWord('and')) {
      p++;
      l = { t: 'bin', op: '&&', l, r: not() };
    }
    return l;
  };
  const not = (): Node => {
    if (peek()?.value === '!' || isWord('not')) {
      p++;
      return { t: 'not', e: not() };
    }
    return cmp();
  };
  const cmp = (): Node => {
    const l = primary();
    const t = peek();
    if (
      t &&
      ((t.kind === 'op' && ['==', '!=', '<', '<=', '>', '>='].includes(t.value)) ||
        (t.kind === 'ident' && t.value === 'in'))
    ) {
      p++;
      return { t: 'bin', op: t.value, l, r: primary() };
    }
    return l;
  };
  const primary = (): Node => {
    const t = eat();
    if (t.kind === 'num') return { t: 'lit', v: Number(t.value) };
    if (t.kind === 'str') return { t: 'lit', v: t.value };
    if (t.value === '(') {
      const e = or();
      eat(')');
      return e;
    }
    if (t.value === '[') {
      const items: Node[] = [];
      if (peek()?.value !== ']') {
        items.push(or());
        while (peek()?.value === ',') {
          p++;
          items.push(or());
        }
      }
      eat(']');
      return { t: 'list', items };
    }
    if (t.kind === 'ident') {
      if (t.value === 'true') return { t: 'lit', v: true };
      if (t.value === 'false') return { t: 'lit', v: false };
      if (t.value === 'null') return { t: 'lit', v: null };
      const parts: Array<string | number> = [];
      for (;;) {
        if (peek()?.value === '.') {
          p++;
          parts.push(eat().value);
        } else if (peek()?.value === '[') {
          p++;
          const k = eat();
          parts.push(k.kind === 'num' ? Number(k.value) : k.value);
          eat(']');
        } else break;
      }
      return { t: 'path', root: t.value, parts };
    }
    throw new ExprError(`unexpected "${t.value}" at column ${t.pos + 1}`);
  };
  const node = or();
  if (p < toks.length) throw new ExprError(`unexpected "${toks[p]!.value}" at column ${toks[p]!.pos + 1}`);
  return node;
}

/** The roots an expression reads (for "unknown var" checks before anything runs). */
export function pathsOf(node: Node, out: Array<{ root: string; parts: Array<string | number> }> = []): typeof out {
  switch (node.t) {
    case 'path':
      out.push({ root: node.root, parts: node.parts });
      break;
    case 'not':
      pathsOf(node.e, out);
      break;
    case 'bin':
      pathsOf(node.l, out);
      pathsOf(node.r, out);
      break;
    case 'list':
      node.items.forEach((i) => pathsOf(i, out));
      break;
    default:
      break;
  }
  return out;
}

export function evaluate(node: Node, scope: Record<string, unknown>): unknown {
  switch (node.t) {
    case 'lit':
      return node.v;
    case 'list':
      return node.items.map((i) => evaluate(i, scope));
    case 'path': {
      let cur: unknown = scope[node.root];
      for (const part of node.parts) {
        if (cur === null || cur === undefined) return undefined;
        cur = (cur as Record<string | number, unknown>)[part];
      }
      return cur;
    }
    case 'not':
      return !truthy(evaluate(node.e, scope));
    case 'bin': {
      if (node.op === '&&') return truthy(evaluate(node.l, scope)) && truthy(evaluate(node.r, scope));
      if (node.op === '||') return truthy(evaluate(node.l, scope)) || truthy(evaluate(node.r, scope));
      const l = evaluate(node.l, scope);
      const r = evaluate(node.r, scope);
      switch (node.op) {
        case '==':
          return l === r;
        case '!=':
          return l !== r;
        case '<':
          return (l as number) < (r as number);
        case '<=':
          return (l as number) <= (r as number);
        case '>':
          return (l as number) > (r as number);
        case '>=':
          return (l as number) >= (r as number);
        case 'in':
          return Array.isArray(r)
            ? r.includes(l)
            : typeof r === 'string' && typeof l === 'string'
              ? r.includes(l)
              : r !== null && typeof r === 'object'
                ? Object.hasOwn(r, String(l))
                : false;
        default:
          throw new ExprError(`unknown operator ${node.op}`);
      }
    }
  }
}

export function truthy(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  return Boolean(v);
}

const TEMPLATE = /\{\{\s*(.*?)\s*\}\}/g;

/** Whether a string holds `{{ }}` templates. */
export function isTemplate(s: string): boolean {
  return /\{\{.*?\}\}/.test(s);
}

/** The expressions inside a template string. */
export function templateExprs(s: string): string[] {
  return [...s.matchAll(TEMPLATE)].map((m) => m[1]!);
}

/**
 * Renders templates inside any value. A string that is exactly one `{{ expr }}` becomes the
 * expression's value (a list stays a list); otherwise the pieces are interpolated as text.
 */
export function render(value: unknown, scope: Record<string, unknown>): unknown {
  if (typeof value === 'string') {
    const whole = /^\{\{\s*(.*?)\s*\}\}$/.exec(value);
    if (whole && !value.slice(2, -2).includes('{{')) return evaluate(parseExpr(whole[1]!), scope);
    if (!isTemplate(value)) return value;
    return value.replace(TEMPLATE, (_, e: string) => {
      const v = evaluate(parseExpr(e), scope);
      return v === undefined || v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
    });
  }
  if (Array.isArray(value)) return value.map((v) => render(v, scope));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, render(v, scope)]));
  }
  return value;
}

/** "{{ expr }}" -> "expr"; a bare expression is returned as it is. */
export function unwrapTemplate(s: string): string {
  const m = /^\s*\{\{\s*(.*?)\s*\}\}\s*$/.exec(s);
  return m ? m[1]! : s;
}
