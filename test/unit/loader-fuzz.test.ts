import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { loadActions } from '../../src/actions/registry.js';
import { parsePlaybook } from '../../src/playbook/load.js';
import { parseInventory } from '../../src/inventory/load.js';
import { ProblemsError } from '../../src/core/problems-error.js';

/**
 * Loaders face whatever a person types. Mutate valid documents 10,000+ times (deterministic
 * seed) and require each to load or fail with positioned problems, never anything else.
 */
const actions = await loadActions();

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const TOKENS = [
  ':',
  '- ',
  '  ',
  '\t',
  '[',
  ']',
  '{',
  '}',
  '"',
  "'",
  '#',
  '&a',
  '*a',
  '!!binary',
  '|',
  '>',
  '---',
  '...',
  '\n',
  '?',
  ',',
  '%',
  '@',
  '`',
  '{{',
  '}}',
  'null',
  '~',
  '1e999',
  '-1',
  'true',
  'vault.unseal',
  'target: all',
  'with:',
  'action:',
];

function mutate(text: string, r: () => number): string {
  let t = text;
  const n = 1 + Math.floor(r() * 4);
  for (let k = 0; k < n; k++) {
    const pos = Math.floor(r() * (t.length + 1));
    const op = Math.floor(r() * 6);
    if (op === 0)
      t = t.slice(0, pos) + t.slice(pos + 1 + Math.floor(r() * 8)); // delete a run
    else if (op === 1)
      t = t.slice(0, pos) + TOKENS[Math.floor(r() * TOKENS.length)] + t.slice(pos); // insert a token
    else if (op === 2) {
      const lines = t.split('\n');
      const i = Math.floor(r() * lines.length);
      const j = Math.floor(r() * lines.length);
      [lines[i], lines[j]] = [lines[j]!, lines[i]!]; // swap lines
      t = lines.join('\n');
    } else if (op === 3) {
      const lines = t.split('\n');
      const i = Math.floor(r() * lines.length);
      lines[i] = ' '.repeat(Math.floor(r() * 6)) + lines[i]!.trimStart(); // re-indent
      t = lines.join('\n');
    } else if (op === 4)
      t = t.slice(0, pos); // truncate
    else t = t.replace(/\d+/, String(Math.floor(r() * 1e6) - 5e5)); // change a number
  }
  return t;
}

function expectControlled(load: () => unknown): 'loaded' | 'problems' {
  try {
    load();
    return 'loaded';
  } catch (e) {
    if (!(e instanceof ProblemsError))
      throw new Error(`loader threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`, { cause: e });
    for (const d of e.details) expect(d).toMatch(/^[^:]+:\d+:\d+ /);
    return 'problems';
  }
}

describe('the loaders never throw anything but positioned problems on broken input', () => {
  it('10,000 mutated playbooks', () => {
    const seeds = ['health-check', 'unseal'].map((f) => readFileSync(`playbooks/${f}.yml`, 'utf8'));
    const r = rng(20261125);
    const counts = { loaded: 0, problems: 0 };
    for (let i = 0; i < 10_000; i++) {
      const doc = mutate(seeds[i % seeds.length]!, r);
      counts[expectControlled(() => parsePlaybook('fuzz.yml', doc, actions))]++;
    }
    // The mutations must mostly break the documents, or the fuzzer tests nothing.
    expect(counts.problems).toBeGreaterThan(5000);
  });

  it('5,000 mutated inventories', () => {
    const seed = readFileSync('inventories/example.yml', 'utf8');
    const r = rng(42);
    let problems = 0;
    for (let i = 0; i < 5_000; i++) {
      const doc = mutate(seed, r);
      if (expectControlled(() => parseInventory('fuzz.yml', doc)) === 'problems') problems++;
    }
    expect(problems).toBeGreaterThan(2000);
  });
});
