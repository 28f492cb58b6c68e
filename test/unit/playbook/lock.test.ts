import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireLocks, clusterLockKeys, lockFile, readLock, type LockRequest } from '../../../src/playbook/lock.js';
import { GateError } from '../../../src/core/errors.js';
import { NODE, REPO } from '../../helpers/cli.js';

const request = (stateDir: string, over: Partial<LockRequest> = {}): LockRequest => ({
  stateDir,
  keys: ['addr-test'],
  owner: {
    runId: 'run-1',
    pid: process.pid,
    host: 'this-host',
    user: 'tester',
    startedAt: new Date().toISOString(),
    playbook: 'test',
  },
  mode: 'exclusive',
  breakLock: false,
  ...over,
});

/** A pid that is certainly not running: a child that already exited. */
async function deadPid(): Promise<number> {
  const child = spawn('/bin/true');
  await new Promise((r) => child.on('close', r));
  return child.pid!;
}

describe('the cluster lock', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vaultops-lock-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('identifies a cluster by its id and by its addresses, ignoring case, a trailing slash and the scheme', () => {
    const a = clusterLockKeys(['https://127.0.0.11:8200/', 'https://127.0.0.12:8200'], 'abc-123');
    const b = clusterLockKeys(['HTTPS://127.0.0.12:8200', 'https://127.0.0.11:8200'], 'abc-123');
    expect(a).toEqual(b);
    expect(a[0]).toBe('id-abc-123');
    // Sealed, so no id: still the same address key as the unsealed view.
    expect(clusterLockKeys(['https://127.0.0.11:8200', 'https://127.0.0.12:8200/'], undefined)).toEqual([a[1]]);
    expect(clusterLockKeys(['https://127.0.0.13:8200'], undefined)).not.toEqual([a[1]]);
  });

  it('refuses a second holder while the first lives, and frees the lock on release', () => {
    const release = acquireLocks(request(dir, { owner: { ...request(dir).owner, host: osHost() } }));
    expect(() =>
      acquireLocks(request(dir, { owner: { ...request(dir).owner, runId: 'run-2', host: osHost() } })),
    ).toThrow(/Another run holds the lock/);
    release();
    expect(existsSync(lockFile(dir, 'addr-test'))).toBe(false);
    acquireLocks(request(dir, { owner: { ...request(dir).owner, runId: 'run-3', host: osHost() } }))();
  });

  it('a lock from another host is refused with that host named, and only --break-lock passes it', () => {
    mkdirSync(join(dir, 'locks'), { recursive: true });
    writeFileSync(
      lockFile(dir, 'addr-test'),
      JSON.stringify({
        runId: 'far',
        pid: 1,
        host: 'admin-2.example',
        user: 'ops',
        startedAt: 'then',
        playbook: 'upgrade',
        nonce: 'n1',
      }),
    );
    const take = (breakLock: boolean) =>
      acquireLocks(request(dir, { breakLock, owner: { ...request(dir).owner, host: osHost() } }));
    expect(take).toThrow(/admin-2\.example/);
    try {
      take(false);
    } catch (e) {
      expect(e).toBeInstanceOf(GateError);
      expect((e as GateError).hint).toMatch(/--break-lock/);
    }
    const release = take(true);
    expect(readLock(lockFile(dir, 'addr-test'))?.host).toBe(osHost());
    release();
  });

  it('a stale lock (its process is gone) is taken over only with --break-lock or by the run it belongs to', async () => {
    mkdirSync(join(dir, 'locks'), { recursive: true });
    const pid = await deadPid();
    writeFileSync(
      lockFile(dir, 'addr-test'),
      JSON.stringify({
        runId: 'dead-run',
        pid,
        host: osHost(),
        user: 'ops',
        startedAt: 'then',
        playbook: 'x',
        nonce: 'n2',
      }),
    );
    const owner = { ...request(dir).owner, host: osHost() };
    expect(() => acquireLocks(request(dir, { owner }))).toThrow(/stale/);
    acquireLocks(request(dir, { owner, resumeOf: 'dead-run' }))();
  });

  it('a backup (shared) runs beside another backup but never during an exclusive run, and the other way round', () => {
    const owner = { ...request(dir).owner, host: osHost() };
    const r1 = acquireLocks(request(dir, { mode: 'shared', owner }));
    const r2 = acquireLocks(request(dir, { mode: 'shared', owner: { ...owner, runId: 'r2' } }));
    expect(() => acquireLocks(request(dir, { owner: { ...owner, runId: 'x' } }))).toThrow(
      /read-only operation is running/,
    );
    r1();
    r2();
    const ex = acquireLocks(request(dir, { owner: { ...owner, runId: 'x' } }));
    expect(() => acquireLocks(request(dir, { mode: 'shared', owner: { ...owner, runId: 'r3' } }))).toThrow(
      /Another run holds the lock/,
    );
    ex();
    // A refused reader leaves nothing behind.
    expect(readdirSync(join(dir, 'locks', 'addr-test.readers'))).toEqual([]);
  });

  // Two real processes race for one lock file in many rounds (a fresh state dir each round, both
  // released by a go-file at the same moment); exactly one may win each round.
  it.each([
    { stale: false, what: 'a free lock' },
    { stale: true, what: 'a stale lock' },
  ])(
    'two processes racing for $what: exactly one wins, every round',
    async ({ stale }) => {
      const rounds = 300;
      const script = join(dir, 'racer.mjs');
      writeFileSync(
        script,
        [
          `import { acquireLocks } from ${JSON.stringify(join(REPO, 'dist', 'internal', 'playbook', 'lock.js'))};`,
          `import { hostname } from 'node:os';`,
          `import { existsSync } from 'node:fs';`,
          `const [base, rounds] = process.argv.slice(2);`,
          `for (let r = 0; r < Number(rounds); r++) {`,
          `  while (!existsSync(base + '/go-' + r)) await new Promise((res) => setImmediate(res));`,
          `  try {`,
          `    acquireLocks({ stateDir: base + '/r' + r, keys: ['addr-race'], owner: { runId: String(process.pid), pid: process.pid, host: hostname(), user: 't', startedAt: '', playbook: 'race' }, mode: 'exclusive', breakLock: ${stale} });`,
          `    console.log(r + ' won');`,
          `  } catch (e) { console.log(r + ' lost ' + e.message.split('\\n')[0]); }`,
          `}`,
        ].join('\n'),
      );
      for (let r = 0; r < rounds; r++) {
        mkdirSync(join(dir, `r${r}`, 'locks'), { recursive: true });
        if (stale)
          writeFileSync(
            lockFile(join(dir, `r${r}`), 'addr-race'),
            JSON.stringify({
              runId: 'dead',
              pid: await deadPidCached(),
              host: hostname(),
              user: 'x',
              startedAt: '',
              playbook: 'x',
              nonce: 'stale',
            }),
          );
      }
      const lines: string[][] = [[], []];
      const racers = [0, 1].map(
        (i) =>
          new Promise<void>((resolve) => {
            const c = spawn(NODE, [script, dir, String(rounds)], { stdio: ['ignore', 'pipe', 'inherit'] });
            let buf = '';
            c.stdout.on('data', (d: Buffer) => {
              buf += d.toString();
              const parts = buf.split('\n');
              buf = parts.pop()!;
              lines[i]!.push(...parts);
            });
            c.on('close', () => resolve());
          }),
      );
      for (let r = 0; r < rounds; r++) {
        writeFileSync(join(dir, `go-${r}`), '');
        const deadline = Date.now() + 20_000;
        while (lines.some((l) => l.length <= r) && Date.now() < deadline)
          await new Promise((res) => setTimeout(res, 1));
      }
      await Promise.all(racers);
      const bad: string[] = [];
      for (let r = 0; r < rounds; r++) {
        const a = lines[0]![r] ?? `${r} (no answer)`;
        const b = lines[1]![r] ?? `${r} (no answer)`;
        const wins = [a, b].filter((x) => x === `${r} won`).length;
        if (wins !== 1) bad.push(`${a} | ${b}`);
        for (const x of [a, b])
          if (x !== `${r} won`) expect(x).toMatch(new RegExp(`^${r} lost Another run holds the lock`));
      }
      expect(bad, 'rounds without exactly one winner').toEqual([]);
    },
    300_000,
  );
});

let cachedDead: number | undefined;
async function deadPidCached(): Promise<number> {
  cachedDead ??= await deadPid();
  return cachedDead;
}

function osHost(): string {
  return hostname();
}
