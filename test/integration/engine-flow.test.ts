import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { CliRunner } from '../helpers/cli.js';
import { ExitCode } from '../../src/core/exit-codes.js';

/** Engine semantics a runbook author relies on; one flavour is enough (the server only answers health). */
const flavour = flavorsUnderTest()[0]!;

function playbook(dir: string, name: string, rescueThat: string): string {
  const file = join(dir, `${name}.yml`);
  writeFileSync(
    file,
    `name: ${name}
vars:
  n: {type: number, default: 2}
steps:
  - name: read autopilot
    action: vault.autopilot_health
    register: ap
    retries: 20
    delay: 500ms
    until: result.healthy
    with: {min_failure_tolerance: 0}
  - block:
      - name: registered value is visible
        action: flow.assert
        with: {that: "ap.healthy == true and ap.failure_tolerance >= 0"}
      - name: fails on purpose
        action: flow.assert
        with: {that: "vars.n > 5", message: "n is too small"}
      - name: never runs
        action: flow.wait
        with: {seconds: 0}
    rescue:
      - name: rescue
        action: flow.assert
        with: {that: "${rescueThat}"}
    always:
      - name: clean-up
        action: flow.wait
        with: {seconds: 0}
  - name: after the block
    action: flow.wait
    when: vars.n == 2
    with: {seconds: 0}
`,
  );
  return file;
}

describe(`block / rescue / always, register and until (${flavour.flavor})`, () => {
  let lab: TestLab;
  let cli: CliRunner;
  beforeAll(async () => {
    lab = await startTestLab({ name: 'e-flow', flavor: flavour.flavor, version: flavour.version });
    cli = new CliRunner({ env: lab.env, cwd: lab.stateDir });
  });
  afterAll(async () => {
    try {
      cli?.expectNoSecrets(lab.secrets);
    } finally {
      await lab?.destroy();
    }
  });

  it('a failure in a block runs rescue, then always, and the run goes on when rescue succeeds', async () => {
    const r = await cli.run([
      'run',
      playbook(lab.stateDir, 'rescued', 'vars.n == 2'),
      '-i',
      lab.inventory,
      '--non-interactive',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/registered value is visible: ok/);
    expect(r.stdout).toMatch(/fails on purpose: failed: n is too small/);
    expect(r.stdout).not.toMatch(/never runs/);
    expect(r.stdout).toMatch(/rescue: ok/);
    expect(r.stdout).toMatch(/clean-up: ok/);
    expect(r.stdout).toMatch(/after the block: ok/);
  });

  it('when rescue fails too, always still runs, the run fails and later steps do not run; the journal says where', async () => {
    const r = await cli.run([
      'run',
      playbook(lab.stateDir, 'unrescued', 'vars.n == 3'),
      '-i',
      lab.inventory,
      '--non-interactive',
    ]);
    expect(r.code).toBe(ExitCode.failed);
    expect(r.stdout).toMatch(/clean-up: ok/);
    expect(r.stdout).not.toMatch(/after the block/);
    const runId = /run (\S+):/.exec(r.stdout)![1]!;
    const journal = readFileSync(join(lab.stateDir, 'runs', runId, 'journal.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(journal.at(-1)).toMatchObject({ type: 'end', status: 'failed' });
    const ends = journal.filter((j) => j.type === 'step-end').map((j) => `${j.key}:${j.status}`);
    expect(ends).toEqual(['1:ok', '2.block.1:ok', '2.block.2:failed', '2.rescue.1:failed', '2.always.1:ok']);
  });
});
