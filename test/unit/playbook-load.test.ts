import { describe, expect, it } from 'vitest';
import { loadActions } from '../../src/actions/registry.js';
import { parsePlaybook } from '../../src/playbook/load.js';
import { ProblemsError } from '../../src/core/problems-error.js';
import { ExitCode } from '../../src/core/exit-codes.js';

const actions = await loadActions();

function problems(text: string): string[] {
  try {
    parsePlaybook('pb.yml', text, actions);
  } catch (e) {
    if (e instanceof ProblemsError) return e.details as string[];
    throw e;
  }
  return [];
}

describe('a broken playbook gets every problem at once, each at file:line:col', () => {
  it('reports unknown action with the nearest name, wrong argument type, unknown var and a bad expression together', () => {
    const text = [
      'name: broken',
      'vars:',
      '  min_failure_tolerance: {type: number, default: 1}',
      'steps:',
      '  - action: vault.unsael',
      '    target: all',
      '  - action: vault.autopilot_health',
      '    with:',
      '      min_failure_tolerance: "one"',
      '  - action: vault.node_health',
      '    target: all',
      '    when: vars.min_failure_tolerence > 0',
      '  - action: flow.wait',
      '    with: {seconds: 1}',
      '    when: "vars.x =="',
      '',
    ].join('\n');
    const p = problems(text);
    expect(
      p.some((l) => /^pb\.yml:5:\d+ unknown action "vault\.unsael" \(did you mean "vault\.unseal"\?\)/.test(l)),
    ).toBe(true);
    expect(p.some((l) => /^pb\.yml:9:\d+ vault\.autopilot_health argument min_failure_tolerance/.test(l))).toBe(true);
    expect(
      p.some((l) =>
        /^pb\.yml:12:\d+ unknown var "min_failure_tolerence" \(did you mean "min_failure_tolerance"\?\)/.test(l),
      ),
    ).toBe(true);
    expect(p.some((l) => /^pb\.yml:15:\d+ bad expression/.test(l))).toBe(true);
    expect(p.length).toBe(4);
  });

  it('an unknown argument names the allowed ones; an unknown step key suggests the right one', () => {
    const p = problems(
      ['name: x', 'steps:', '  - action: vault.unseal', '    targte: all', '    with:', '      keyz: ["a"]', ''].join(
        '\n',
      ),
    );
    expect(p.some((l) => /^pb\.yml:4:5 unknown key "targte".*did you mean "target"/.test(l))).toBe(true);
    expect(p.some((l) => /pb\.yml:6:7 vault\.unseal has no argument "keyz" \(did you mean "keys"\?\)/.test(l))).toBe(
      true,
    );
  });

  it('YAML syntax errors are positioned and the error carries the bad-input exit code', () => {
    try {
      parsePlaybook('pb.yml', 'name: x\nsteps:\n  - action: [unclosed\n', actions);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ProblemsError);
      expect((e as ProblemsError).exitCode).toBe(ExitCode.badInput);
      expect((e as ProblemsError).details[0]).toMatch(/^pb\.yml:\d+:\d+ /);
    }
  });

  it('the built-in playbooks load', async () => {
    const { loadPlaybook } = await import('../../src/playbook/load.js');
    for (const f of ['health-check', 'unseal'])
      expect(loadPlaybook(`playbooks/${f}.yml`, actions).steps.length).toBeGreaterThan(0);
  });
});

describe("a playbook cannot carry cmd: references (they run a shell on the operator's machine)", () => {
  it('a secret var whose default is a cmd: reference is refused at its line and column', () => {
    const text = [
      'name: sneaky',
      'vars:',
      '  keys:',
      '    type: secret_list',
      '    default: "cmd:touch /tmp/vaultops-pwned-by-playbook"',
      'steps:',
      '  - action: vault.node_health',
      '',
    ].join('\n');
    const p = problems(text);
    expect(
      p.some((l) => /^pb\.yml:5:\d+ .*cmd: reference/.test(l)),
      p.join('\n'),
    ).toBe(true);
  });

  it("a step argument that is a cmd: reference is refused (the restore action's identity)", () => {
    const text = [
      'name: sneaky',
      'steps:',
      '  - action: backup.restore',
      '    with:',
      '      from: /tmp/x.snap',
      '      identity: "cmd:touch /tmp/vaultops-pwned-by-playbook"',
      '',
    ].join('\n');
    const p = problems(text);
    expect(
      p.some((l) => /^pb\.yml:6:\d+ .*cmd: reference/.test(l)),
      p.join('\n'),
    ).toBe(true);
  });

  it('inventory references in defaults stay allowed', () => {
    const text = [
      'name: fine',
      'vars:',
      '  keys: {type: secret_list, default: "{{ cluster.unseal.keys }}"}',
      'steps:',
      '  - action: vault.node_health',
      '',
    ].join('\n');
    expect(problems(text)).toEqual([]);
  });
});

describe('a playbook cannot turn trust-on-first-use on', () => {
  it("with: trust_on_first_use: true is refused at its line, naming the operator's flag", () => {
    const text = [
      'name: tofu',
      'steps:',
      '  - action: upgrade.preflight',
      '    with:',
      '      binary: /tmp/bao',
      `      sha256: "${'a'.repeat(64)}"`,
      '      trust_on_first_use: true',
      '',
    ].join('\n');
    const p = problems(text);
    expect(
      p.some((l) => /^pb\.yml:7:\d+ .*trust-on-first-use.*--trust-on-first-use/.test(l)),
      p.join('\n'),
    ).toBe(true);
  });
});
