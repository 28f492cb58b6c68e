import { describe, expect, it } from 'vitest';
import { evaluate, parseExpr, render, ExprError } from '../../src/core/expr.js';

const ev = (src: string, scope: Record<string, unknown> = {}) => evaluate(parseExpr(src), scope);

describe('expressions in when/until/templates are evaluated without eval', () => {
  it('compares, combines and reads nested paths', () => {
    const scope = { vars: { n: 3, name: 'lab' }, live: { nodes: { n1: { sealed: true } } }, list: ['a', 'b'] };
    expect(ev('vars.n >= 3 && vars.name == "lab"', scope)).toBe(true);
    expect(ev('live.nodes.n1.sealed and not (vars.n < 2)', scope)).toBe(true);
    expect(ev('"b" in list', scope)).toBe(true);
    expect(ev('vars.missing.deeper', scope)).toBeUndefined();
    expect(ev('live.nodes["n1"].sealed', scope)).toBe(true);
  });

  it('refuses what is not in the grammar, with the column', () => {
    expect(() => parseExpr('vars.x = 1')).toThrow(ExprError);
    expect(() => parseExpr('process.exit(1)')).toThrow(/column/);
    expect(() => parseExpr('"open')).toThrow(/unterminated/);
  });

  it('a whole-template string keeps the value type; mixed text interpolates', () => {
    const scope = { vars: { keys: ['k1', 'k2'], n: 2 } };
    expect(render('{{ vars.keys }}', scope)).toEqual(['k1', 'k2']);
    expect(render('{{ vars.n }}', scope)).toBe(2);
    expect(render('need {{ vars.n }} shares', scope)).toBe('need 2 shares');
    expect(render({ a: ['{{ vars.n }}'] }, scope)).toEqual({ a: [2] });
  });
});
