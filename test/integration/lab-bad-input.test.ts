import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FLAVORS } from '../../src/lab/binaries.js';
import { ExitCode } from '../../src/core/exit-codes.js';
import { CliRunner } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';

// No cluster is started here: every command must fail before anything runs. The directories are
// made in beforeAll, not while the file is collected: with every test filtered out (-t), no hook
// runs, and nothing may be left behind.
let stateDir = '';
let cwd = '';
let cli: CliRunner;

beforeAll(() => {
  stateDir = mkdtempSync(join(tmpdir(), 'vaultops-test-a-badinput-'));
  cwd = mkdtempSync(join(tmpdir(), 'vaultops-test-a-badinput-cwd-'));
  cli = new CliRunner({ env: { ...process.env, VAULTOPS_STATE_DIR: stateDir }, cwd });
});

afterAll(() => {
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  if (cwd) rmSync(cwd, { recursive: true, force: true });
});

function expectBadInput(
  r: { code: number | null; stdout: string; stderr: string },
  message: string | RegExp,
  hint: string | RegExp,
): void {
  expect(r.code).toBe(ExitCode.badInput);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(
    typeof message === 'string'
      ? new RegExp(`^error: ${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm')
      : message,
  );
  expect(r.stderr).toMatch(
    typeof hint === 'string' ? new RegExp(`^hint: .*${hint.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm') : hint,
  );
  expect(r.stderr).not.toMatch(/^\s+at /m);
}

describe('`lab up` and `lab fetch` refuse what they cannot run, with a hint, before starting anything', () => {
  it('an unknown flavour exits 2 and names the flavours', async () => {
    expectBadInput(
      await cli.run(['lab', 'up', '--name', 'a-badinput', '--flavor', 'consul']),
      'Unknown flavour "consul".',
      '--flavor openbao (default) or --flavor vault',
    );
    expectBadInput(
      await cli.run(['lab', 'fetch', '--flavor', 'consul']),
      'Unknown flavour "consul".',
      '--flavor vault',
    );
  });

  it.each(flavorsUnderTest())(
    'an unknown $flavor version exits 2 and lists the versions that work',
    async ({ flavor }) => {
      const info = FLAVORS[flavor];
      expectBadInput(
        await cli.run(['lab', 'up', '--name', 'a-badinput', '--flavor', flavor, '--version', '9.9.9']),
        `${info.product} 9.9.9 is not one this machine can fetch.`,
        `--version ${info.versions.join(' | ')}`,
      );
      expectBadInput(
        await cli.run(['lab', 'fetch', '--flavor', flavor, '--version', '9.9.9']),
        `${info.product} 9.9.9 is not one this machine can fetch.`,
        info.versions.join(' | '),
      );
      expectBadInput(
        await cli.run(['lab', 'up', '--name', 'a-badinput', '--flavor', flavor, '--version', 'latest-ish']),
        '"latest-ish" is not a version.',
        info.versions.join(', '),
      );
    },
  );

  it('a bad lab name exits 2', async () => {
    expectBadInput(
      await cli.run(['lab', 'up', '--name', 'Not A Name']),
      '"Not A Name" is not a lab name.',
      'lower-case letters',
    );
  });

  it('nothing was created or started', async () => {
    const labs = join(stateDir, 'labs');
    expect(existsSync(labs) ? readdirSync(labs) : []).toEqual([]);
    expect(readdirSync(cwd)).toEqual([]);
    const r = await cli.run(['lab', 'status', '--json']);
    expect(r.code).toBe(ExitCode.ok);
    expect(JSON.parse(r.stdout)).toEqual([]);
  });
});
