import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CliRunner } from '../helpers/cli.js';

/**
 * `vaultops plan` changes nothing and runs nothing: the inventory's cmd: token reference is what
 * `run` would run, so the plan says so instead of running it. No server is needed: the plan of a
 * cluster that cannot be reached is still made (every node unreachable).
 */
const dir = mkdtempSync(join(tmpdir(), 'vaultops-unit-plan-cmd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('plan with a cmd: token reference in the inventory', () => {
  it('does not run the command, and says that run would', async () => {
    const marker = join(dir, 'token-command-ran');
    const inventory = join(dir, 'inv.yml');
    writeFileSync(
      inventory,
      [
        'clusters:',
        '  c1:',
        '    flavor: openbao',
        `    token: "cmd:touch ${marker}; echo hvs.not-a-real-token"`,
        '    nodes:',
        '      - name: n1',
        '        api_addr: http://127.0.0.1:1',
        '',
      ].join('\n'),
    );
    const cli = new CliRunner({ env: { ...process.env, VAULTOPS_STATE_DIR: dir } });
    const r = await cli.run(['plan', 'playbooks/health-check.yml', '-i', inventory]);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(marker)).toBe(false);
    expect(r.stdout).toMatch(/run.*would run the inventory's token command/);
  });
});
