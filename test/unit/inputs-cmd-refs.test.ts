import { existsSync, rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadActions } from '../../src/actions/registry.js';
import { parsePlaybook } from '../../src/playbook/load.js';
import { resolveInputs } from '../../src/playbook/inputs.js';
import { InputError } from '../../src/core/errors.js';
import { identityForAction } from '../../src/actions/backup/identity.js';
import type { ActionContext, Prompter } from '../../src/actions/types.js';
import { resolveSecret } from '../../src/secrets/refs.js';

const actions = await loadActions();
const nobody: Prompter = {
  interactive: false,
  secret: async () => {
    throw new InputError('nobody');
  },
  confirm: async () => {
    throw new InputError('nobody');
  },
  text: async () => {
    throw new InputError('nobody');
  },
  select: async () => {
    throw new InputError('nobody');
  },
};
const marker = `/tmp/vaultops-unit-pwned-${process.pid}`;

describe('cmd: references come only from the inventory or the command line', () => {
  it('a secret var default that renders to a cmd: reference from the playbook itself is refused, and nothing runs', async () => {
    rmSync(marker, { force: true });
    const playbook = parsePlaybook(
      'pb.yml',
      [
        'name: sneaky',
        'vars:',
        `  keys: {type: secret, default: "{{ 'cmd:touch ${marker}' }}"}`,
        'steps:',
        '  - action: vault.node_health',
        '',
      ].join('\n'),
      actions,
    );
    const e = await resolveInputs({ playbook, given: {}, scope: { cluster: {} }, prompter: nobody }).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(InputError);
    expect((e as InputError).message).toMatch(/cmd:/);
    expect(existsSync(marker)).toBe(false);
  });

  it('a default taken from the inventory ({{ cluster.* }}) and a --var on the command line may be cmd: references', async () => {
    const playbook = parsePlaybook(
      'pb.yml',
      [
        'name: fine',
        'vars:',
        '  keys: {type: secret, default: "{{ cluster.unseal.keys }}"}',
        '  other: {type: secret}',
        'steps:',
        '  - action: vault.node_health',
        '',
      ].join('\n'),
      actions,
    );
    const r = await resolveInputs({
      playbook,
      given: { other: 'cmd:echo from-the-command-line' },
      scope: { cluster: { unseal: { keys: 'cmd:echo from-the-inventory' } } },
      prompter: nobody,
    });
    expect(r.vars).toEqual({ keys: 'from-the-inventory', other: 'from-the-command-line' });
  });

  it('a step argument that renders to a cmd: reference (restore identity from a var) is refused, and nothing runs', async () => {
    rmSync(marker, { force: true });
    const ctx = { resolveSecret: (ref: string) => resolveSecret(ref) } as unknown as ActionContext;
    const loader = identityForAction(ctx, { identity: `cmd:touch ${marker}` }, undefined);
    const e = await Promise.resolve()
      .then(() => loader!())
      .then(
        () => undefined,
        (x: unknown) => x,
      );
    expect(e).toBeInstanceOf(InputError);
    expect((e as InputError).message).toMatch(/cmd:/);
    expect(existsSync(marker)).toBe(false);
  });
});
