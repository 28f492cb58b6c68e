import { lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { withFileLock } from '../../src/lab/file-lock.js';
import * as registry from '../../src/lab/slot-registry.js';

const dir = mkdtempSync(join(tmpdir(), 'vaultops-unit-slots-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the lab slot lock and registry', () => {
  it('a lock file that names pid 1 (alive forever) without its start time is stale, not a holder to wait for', async () => {
    const lock = join(dir, 'pid1.lock');
    writeFileSync(lock, '1');
    const waits: string[] = [];
    const got = await Promise.race([
      withFileLock(
        lock,
        (m) => waits.push(m),
        async () => 'acquired',
      ),
      new Promise((r) => setTimeout(() => r('still waiting after 5 s'), 5000)),
    ]);
    expect(got).toBe('acquired');
  });

  it('a lock whose pid is alive but was started at another time (a reused pid) is stale', async () => {
    const lock = join(dir, 'reused.lock');
    writeFileSync(lock, `${process.pid} 1 not-this-boot`);
    const got = await Promise.race([
      withFileLock(
        lock,
        () => undefined,
        async () => 'acquired',
      ),
      new Promise((r) => setTimeout(() => r('still waiting'), 5000)),
    ]);
    expect(got).toBe('acquired');
  });

  it('lives in a private directory (ours, 0700, not a symlink), not at fixed names in the world-writable /tmp', () => {
    const files = (registry as { slotFilesDir?: () => string }).slotFilesDir;
    expect(typeof files).toBe('function');
    const d = files!();
    const st = lstatSync(d);
    expect(st.isDirectory() && !st.isSymbolicLink()).toBe(true);
    expect(st.mode & 0o077).toBe(0);
    expect(st.uid).toBe(process.getuid!());
    expect(registry.slotLockPath().startsWith(`${d}/`)).toBe(true);
  });

  it("a symlink planted at the registry's temp name does not clobber the file it points at", () => {
    const own = join(dir, 'registry');
    const victim = join(dir, 'victim.txt');
    writeFileSync(victim, 'precious\n');
    mkdirSync(own, { mode: 0o700 });
    for (const name of ['vaultops-lab-slots.json.tmp', 'slots.json.tmp']) symlinkSync(victim, join(own, name), 'file');
    registry.recordSlot(7, join(dir, 'some-lab'), own);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
  });
});
