import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';
import { ExitCode } from '../../src/core/exit-codes.js';
import { CLI, NODE, REPO, runProcess } from '../helpers/cli.js';

/** Shell completion, loaded into a real bash the way a user loads it, then asked as bash asks on Tab. */
describe('bash completion from `vaultops completion bash`', () => {
  let tmp: string;
  let env: NodeJS.ProcessEnv;
  let inventory: string;

  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'vaultops-completion-'));
    // `vaultops` on PATH, as an installed package puts it.
    const bin = join(tmp, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'vaultops'), `#!/bin/sh\nexec '${NODE}' '${CLI}' "$@"\n`);
    chmodSync(join(bin, 'vaultops'), 0o755);
    env = { PATH: `${bin}:/usr/bin:/bin`, HOME: tmp };
    inventory = join(tmp, 'fleet.yml');
    writeFileSync(
      inventory,
      'clusters:\n  prod-eu:\n    nodes: [{ name: a, api_addr: "https://10.0.0.1:8200" }]\n  "stage-us":\n    nodes: [{ name: b, api_addr: "https://10.0.0.2:8200" }]\n',
    );
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  /** What bash offers for the command line `line` (the cursor at its end). */
  async function tab(line: string): Promise<string[]> {
    const script = [
      'source <(vaultops completion bash)',
      // The words as bash splits them for completion; a trailing space means a new, empty word.
      'read -r -a COMP_WORDS <<<"$LINE"',
      '[[ "$LINE" == *" " ]] && COMP_WORDS+=("")',
      'COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))',
      '_vaultops_complete',
      'printf "%s\\n" "${COMPREPLY[@]}"',
    ].join('\n');
    const r = await runProcess('bash', ['-c', script], { ...env, LINE: line });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return r.stdout.split('\n').filter(Boolean);
  }

  it('registers the function for vaultops, falling back to file names', async () => {
    const r = await runProcess('bash', ['-c', 'source <(vaultops completion bash) && complete -p vaultops'], env);
    expect(r.stdout.trim()).toBe('complete -o default -F _vaultops_complete vaultops');
  });

  it('offers every visible command of the command tree at the top level, and nothing hidden', async () => {
    const program = buildProgram();
    const visible = program
      .createHelp()
      .visibleCommands(program)
      .map((c) => c.name());
    expect(visible).toContain('completion');
    expect(await tab('vaultops ')).toEqual(visible);
    expect(await tab('vaultops ba')).toEqual(['backup', 'backups']);
    expect(await tab('vaultops __')).toEqual([]);
  });

  it('descends into sub-commands and offers their options', async () => {
    expect(await tab('vaultops backups ')).toEqual(expect.arrayContaining(['list', 'verify', 'inspect', 'prune']));
    expect(await tab('vaultops lab up --fl')).toEqual(['--flavor']);
    expect(await tab('vaultops lab up --flavor ')).toEqual(['openbao', 'vault']);
    expect(await tab('vaultops backup --no-')).toEqual(['--no-prune']);
  });

  it('completes cluster names from the inventory given with -i', async () => {
    expect(await tab(`vaultops status -i ${inventory} --cluster `)).toEqual(['prod-eu', 'stage-us']);
    expect(await tab(`vaultops backup --inventory ${inventory} --cluster st`)).toEqual(['stage-us']);
    // No inventory on the line, or one that does not exist: nothing to offer, nothing printed.
    expect(await tab('vaultops status --cluster ')).toEqual([]);
    expect(await tab(`vaultops status -i ${join(tmp, 'missing.yml')} --cluster `)).toEqual([]);
  });

  it('completes built-in playbook names for plan and run', async () => {
    const builtIn = readdirSync(join(REPO, 'playbooks'))
      .filter((f) => f.endsWith('.yml'))
      .map((f) => f.replace(/\.yml$/, ''))
      .sort();
    expect(builtIn).toContain('health-check');
    expect(await tab('vaultops run ')).toEqual(builtIn);
    expect(await tab('vaultops plan he')).toEqual(['health-check']);
    expect(await tab('vaultops run -i x.yml up')).toEqual(['upgrade-immutable', 'upgrade-rolling']);
  });

  it('leaves a file argument to the shell (no candidates: bash completes file names)', async () => {
    expect(await tab('vaultops backup --to ')).toEqual([]);
    expect(await tab('vaultops status -i ')).toEqual([]);
  });
});

describe('`vaultops completion` for the other shells', () => {
  it.each([
    ['zsh', 'compdef _vaultops vaultops'],
    ['fish', "complete -c vaultops -a '(__vaultops_complete)'"],
  ])('%s: a script that asks the CLI for its words', async (shell, line) => {
    const r = await runProcess(NODE, [CLI, 'completion', shell], process.env);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(line);
    expect(r.stdout).toContain('__complete --');
  });

  it('an unknown shell is bad input with the list', async () => {
    const r = await runProcess(NODE, [CLI, 'completion', 'ksh'], process.env);
    expect(r.code).toBe(ExitCode.badInput);
    expect(r.stderr).toContain('No completion for shell "ksh".');
    expect(r.stderr).toContain('bash, zsh, fish');
  });
});
