import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { sealActiveNode, startTestLab, type TestLab } from '../helpers/lab.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { CliRunner, CLI, NODE, waitFor } from '../helpers/cli.js';
import { ExitCode } from '../../src/core/exit-codes.js';

/** The lab inventory with its unseal.keys reference replaced (or removed). */
function inventoryWithKeys(lab: TestLab, name: string, keysRef: string | undefined): string {
  const text = readFileSync(lab.inventory, 'utf8').replace(/^(\s+keys: ).*$/m, keysRef ? `$1"${keysRef}"` : '');
  const file = join(lab.stateDir, name);
  writeFileSync(file, text);
  return file;
}

describe.each(flavorsUnderTest())('runbooks on a real $flavor $version cluster', ({ flavor, version }) => {
  let lab: TestLab;
  let cli: CliRunner;
  const extraSecrets: string[] = [];

  beforeAll(async () => {
    lab = await startTestLab({ name: `e-run-${flavor === 'openbao' ? 'bao' : 'vault'}`, flavor, version });
    cli = new CliRunner({ env: lab.env, cwd: lab.stateDir });
  });

  afterAll(async () => {
    try {
      // Nothing any run printed, and no journal, holds a secret of this lab.
      if (cli) {
        cli.expectNoSecrets([...lab.secrets, ...extraSecrets]);
        const runs = join(lab.stateDir, 'runs');
        for (const id of existsSync(runs) ? readdirSync(runs) : []) {
          const journal = readFileSync(join(runs, id, 'journal.jsonl'), 'utf8');
          for (const s of lab.secrets) expect(journal.includes(s), `secret in journal of run ${id}`).toBe(false);
        }
      }
    } finally {
      await lab?.destroy();
    }
  });

  it('health-check: plan lists every node instance without changing anything; run executes it and prints a recap', async () => {
    const plan = await cli.run(['plan', 'health-check', '-i', lab.inventory]);
    expect(plan.code).toBe(0);
    for (const n of ['n1', 'n2', 'n3']) expect(plan.stdout).toContain(`vault.node_health on ${n}`);
    expect(plan.stdout).toContain('0 may change the cluster');
    const json = await cli.run(['plan', 'health-check', '-i', lab.inventory, '--json']);
    expect(JSON.parse(json.stdout).instances).toHaveLength(4);
    const run = await cli.run(['run', 'health-check', '-i', lab.inventory]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/RECAP/);
    expect(run.stdout).toMatch(/n1\s+:\s+ok=1\s+changed=0/);
    expect(run.stdout).toMatch(/run \S+ ok in/);
  });

  it('unseal: a sealed node is unsealed unattended with shares from an env reference, and the others are skipped', async () => {
    const sealed = await sealActiveNode(lab.inventory);
    const inv = inventoryWithKeys(lab, 'env-keys.yml', 'env:TEST_UNSEAL_KEYS');
    const withKeys = new CliRunner({
      env: { ...lab.env, TEST_UNSEAL_KEYS: JSON.stringify(lab.init.unseal_keys_b64.slice(0, 3)) },
      cwd: lab.stateDir,
    });
    const plan = await withKeys.run(['plan', 'unseal', '-i', inv]);
    expect(plan.stdout).toMatch(new RegExp(`CHANGE vault.unseal on ${sealed}`));
    const run = await withKeys.run(['run', 'unseal', '-i', inv, '--non-interactive']);
    cli.log.push(...withKeys.log);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`${sealed}\\s+:\\s+ok=1\\s+changed=1`));
    const status = await cli.run(['status', '-i', lab.inventory]);
    expect(status.code).toBe(ExitCode.ok);
  });

  it('unattended with no way to get the shares fails fast with the bad-input exit code and names what supplies them', async () => {
    const sealed = await sealActiveNode(lab.inventory);
    const inv = inventoryWithKeys(lab, 'no-keys.yml', undefined);
    const run = await cli.run(['run', 'unseal', '-i', inv, '--non-interactive'], { timeoutMs: 30_000 });
    expect(run.code).toBe(ExitCode.badInput);
    expect(run.stderr).toMatch(/--var unseal_keys=/);
    expect(run.stderr).not.toMatch(/at .*\.js:\d+/); // no stack trace
    // Nothing changed: the node is still sealed; put it back for the next tests.
    const st = await cli.run(['status', '-i', lab.inventory]);
    expect(st.code).toBe(ExitCode.degraded);
    expect(st.stdout).toMatch(new RegExp(`! ${sealed} is sealed`));
    const fix = await cli.run(['run', 'unseal', '-i', lab.inventory, '--non-interactive']);
    expect(fix.code).toBe(0);
  });

  it('a wrong share is refused with the key set named, and the node stays sealed', async () => {
    const sealed = await sealActiveNode(lab.inventory);
    // Well-formed shares that belong to no key set of this cluster.
    const wrong = Array.from({ length: 3 }, (_, i) => Buffer.alloc(33, i + 7).toString('base64'));
    extraSecrets.push(...wrong);
    const withWrong = new CliRunner({ env: { ...lab.env, TEST_UNSEAL_KEYS: wrong.join(',') }, cwd: lab.stateDir });
    const run = await withWrong.run([
      'run',
      'unseal',
      '-i',
      inventoryWithKeys(lab, 'wrong-keys.yml', 'env:TEST_UNSEAL_KEYS'),
      '--non-interactive',
    ]);
    cli.log.push(...withWrong.log);
    expect(run.code).toBe(ExitCode.failed);
    expect(run.stdout + run.stderr).toMatch(new RegExp(`${sealed} refused the key shares of e-run-\\w+-init`));
    const fix = await cli.run(['run', 'unseal', '-i', lab.inventory, '--non-interactive']);
    expect(fix.code).toBe(0);
  });

  it('a run killed with SIGKILL mid-run is continued by resume; a second run meanwhile is refused by the stale lock', async () => {
    const pb = join(lab.stateDir, 'slow.yml');
    writeFileSync(
      pb,
      [
        'name: slow',
        'steps:',
        '  - action: vault.node_health',
        '    target: all',
        '    gate: true',
        '  - name: wait',
        '    action: flow.wait',
        '    with: {seconds: 4}',
        '  - action: vault.autopilot_health',
        '    retries: 30',
        '    delay: 1s',
        '',
      ].join('\n'),
    );
    const child = spawn(NODE, [CLI, 'run', pb, '-i', lab.inventory, '--non-interactive'], {
      cwd: lab.stateDir,
      env: lab.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let printed = '';
    child.stdout.on('data', (c: Buffer) => (printed += c.toString()));
    child.stderr.on('data', (c: Buffer) => (printed += c.toString()));
    const runId = await waitFor(
      'the run to reach the wait step',
      () => (/\[4\/5\] wait\.\.\./.test(printed) ? /run (\S+):/.exec(printed)?.[1] : undefined),
      60_000,
      100,
    );
    child.kill('SIGKILL');
    await new Promise((r) => child.on('close', r));
    cli.log.push({ args: ['(killed run)'], code: null, stdout: printed, stderr: '' });

    const blocked = await cli.run(['run', 'health-check', '-i', lab.inventory, '--non-interactive']);
    expect(blocked.code).toBe(ExitCode.gateRefused);
    expect(blocked.stderr).toMatch(/stale/);
    expect(blocked.stderr).toContain(`vaultops resume ${runId}`);

    const shown = await cli.run(['runs', 'show', runId]);
    expect(shown.stdout).toMatch(/wait: started, not finished/);
    const resumed = await cli.run(['resume', runId, '--non-interactive']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/gates are checked again/);
    expect(resumed.stdout).toMatch(/\[5\/5\] vault.autopilot_health: ok/);
    const after = await cli.run(['runs', '--json']);
    expect(JSON.parse(after.stdout).find((r: { id: string }) => r.id === runId).status).toBe('ok');
  });
});

describe.each(flavorsUnderTest().slice(0, 1))('Ctrl-C on a real $flavor cluster', ({ flavor, version }) => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab({ name: 'e-sigint', flavor, version });
  });
  afterAll(async () => {
    await lab?.destroy();
  });

  it('SIGINT stops at a safe point with exit 130 and the resume command; resume finishes the run', async () => {
    const cli = new CliRunner({ env: lab.env, cwd: lab.stateDir });
    const pb = join(lab.stateDir, 'slow.yml');
    writeFileSync(
      pb,
      [
        'name: slow',
        'steps:',
        '  - action: vault.node_health',
        '    target: all',
        '  - name: wait',
        '    action: flow.wait',
        '    with: {seconds: 8}',
        '  - action: vault.autopilot_health',
        '    retries: 30',
        '    delay: 1s',
        '',
      ].join('\n'),
    );
    const original = readFileSync(pb, 'utf8');
    const child = spawn(NODE, [CLI, 'run', pb, '-i', lab.inventory, '--non-interactive'], {
      cwd: lab.stateDir,
      env: lab.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let printed = '';
    child.stdout.on('data', (c: Buffer) => (printed += c.toString()));
    child.stderr.on('data', (c: Buffer) => (printed += c.toString()));
    const runId = await waitFor(
      'the wait step',
      () => (/\[4\/5\] wait\.\.\./.test(printed) ? /run (\S+):/.exec(printed)?.[1] : undefined),
      60_000,
      100,
    );
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(code).toBe(ExitCode.interrupted);
    expect(printed).toContain(`vaultops resume ${runId}`);
    expect(printed).not.toMatch(/vault\.autopilot_health: ok/); // nothing after the safe point ran
    const runs = await cli.run(['runs', '--json']);
    expect(JSON.parse(runs.stdout).find((r: { id: string }) => r.id === runId).status).toBe('interrupted');
    // The lock was released on the way out: another run can start at once.
    const other = await cli.run(['run', 'health-check', '-i', lab.inventory, '--non-interactive']);
    expect(other.code).toBe(0);
    // Resume continues the recorded plan, so it refuses a playbook that changed meanwhile.
    writeFileSync(pb, original.replace('seconds: 8', 'seconds: 1'));
    const refused = await cli.run(['resume', runId, '--non-interactive']);
    expect(refused.code).toBe(ExitCode.badInput);
    expect(refused.stderr).toMatch(/changed since the run started/);
    writeFileSync(pb, original);
    const resumed = await cli.run(['resume', runId, '--non-interactive']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/\[4\/5\] wait: ok/);
  });
});

describe('bad input', () => {
  it('a broken playbook gets file:line:col for every problem at once and the bad-input exit code', async () => {
    const lab = { stateDir: '/tmp' };
    const cli = new CliRunner({ env: process.env, cwd: lab.stateDir });
    const pb = join('/tmp', `broken-${process.pid}.yml`);
    writeFileSync(
      pb,
      'name: broken\nsteps:\n  - action: vault.unsael\n    target: all\n  - action: vault.autopilot_health\n    with: {min_failure_tolerance: many}\n',
    );
    const inv = join('/tmp', `inv-${process.pid}.yml`);
    writeFileSync(inv, 'clusters:\n  c:\n    nodes:\n      - name: n1\n        api_addr: https://127.0.0.250:8200\n');
    const r = await cli.run(['plan', pb, '-i', inv]);
    expect(r.code).toBe(ExitCode.badInput);
    expect(r.stderr).toMatch(
      new RegExp(`${pb}:3:\\d+ unknown action "vault.unsael" \\(did you mean "vault.unseal"\\?\\)`),
    );
    expect(r.stderr).toMatch(new RegExp(`${pb}:6:\\d+ vault.autopilot_health argument min_failure_tolerance`));
    expect(r.stderr).toMatch(/2 problems/);
  });
});
