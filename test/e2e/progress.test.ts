import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/core/exit-codes.js';
import { CLI, NODE, runProcess, type Ran } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';

/**
 * The live progress line of backup and restore on a real terminal (util-linux `script` gives the CLI
 * a pseudo-terminal). The 10-second plain lines of unattended runs are covered with a fake clock in
 * test/unit/progress.test.ts; here: the wiring, --quiet and NO_COLOR.
 */
describe('progress of backup and restore on a terminal', () => {
  const { flavor, version } = flavorsUnderTest()[0]!;
  let t: TestLab;
  let dir: string;
  const outputs: Ran[] = [];

  /** Runs the CLI on a pseudo-terminal; everything it wrote to the terminal comes back in stdout. */
  async function onTerminal(args: string[], extra: Record<string, string> = {}): Promise<Ran> {
    const command = [NODE, CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    // A person at a terminal: no CI variable (CI runs export CI=true, which asks for plain lines).
    const env: NodeJS.ProcessEnv = { ...t.env, TERM: 'xterm', ...extra };
    delete env['CI'];
    const r = await runProcess('script', ['-qec', command, '/dev/null'], env);
    outputs.push(r);
    return r;
  }

  beforeAll(async () => {
    t = await startTestLab({ name: 'progress', flavor, version });
    dir = mkdtempSync(join(tmpdir(), 'vaultops-progress-'));
    mkdirSync(join(dir, 'b'));
  });
  afterAll(async () => {
    await t?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('backup draws a dim live line with the bytes and rate of the snapshot, then clears it', async () => {
    const r = await onTerminal(['backup', '-i', t.inventory, '--to', join(dir, 'b')]);
    expect(r.code, r.stdout).toBe(ExitCode.ok);
    expect(r.stdout).toMatch(/\r\x1b\[2K\x1b\[2msnapshot of progress: \d+(\.\d)? (B|KiB|MiB)/);
    // The line is cleared before the result is printed on its own line.
    expect(r.stdout).toMatch(/\r\x1b\[2K• Verified and stored/);
  });

  it('--quiet draws nothing; NO_COLOR keeps the line without colour', async () => {
    const quiet = await onTerminal(['backup', '-i', t.inventory, '--to', join(dir, 'b'), '--quiet']);
    expect(quiet.code).toBe(ExitCode.ok);
    expect(quiet.stdout).not.toContain('snapshot of progress:');
    expect(quiet.stdout).not.toContain('\x1b[2K');
    const plain = await onTerminal(['backup', '-i', t.inventory, '--to', join(dir, 'b')], { NO_COLOR: '1' });
    expect(plain.code).toBe(ExitCode.ok);
    expect(plain.stdout).toMatch(/\r\x1b\[2Ksnapshot of progress: /);
    expect(plain.stdout).not.toContain('\x1b[2m');
  });

  it('restore shows the safety snapshot and the upload with its total', async () => {
    const file = join(
      dir,
      'b',
      readdirSync(join(dir, 'b'))
        .filter((f) => f.endsWith('.snap'))
        .sort()[0]!,
    );
    const r = await onTerminal([
      'restore',
      '-i',
      t.inventory,
      '--from',
      file,
      '--confirm',
      'progress',
      '--non-interactive',
      '--to',
      join(dir, 'b'),
    ]);
    expect(r.code, r.stdout).toBe(ExitCode.ok);
    expect(r.stdout).toMatch(/safety snapshot of progress: \d/);
    expect(r.stdout).toMatch(/upload to n\d: [\d.]+ (B|KiB|MiB) of [\d.]+ (B|KiB|MiB) \(\d+%\)/);
  });

  it('prints no secret anywhere', () => {
    expect(outputs.length).toBeGreaterThan(0);
    for (const s of t.secrets) expect(outputs.map((o) => o.stdout + o.stderr).join('\n')).not.toContain(s);
  });
});
