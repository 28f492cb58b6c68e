import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { sealActiveNode, startTestLab, type TestLab } from '../helpers/lab.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { CliRunner, CLI, NODE, waitFor } from '../helpers/cli.js';
import { makePgpKey } from '../helpers/ceremony.js';
import { ExitCode } from '../../src/core/exit-codes.js';
import { connectCluster, type ConnectedCluster } from '../../src/cli/cluster-from-inventory.js';

/** A run of `vaultops` left running in the background, with everything it printed. */
interface Background {
  child: ChildProcess;
  printed: () => string;
  closed: Promise<number | null>;
}

function startBackground(args: string[], lab: TestLab): Background {
  const child = spawn(NODE, [CLI, ...args], { cwd: lab.stateDir, env: lab.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let printed = '';
  child.stdout!.on('data', (c: Buffer) => (printed += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (printed += c.toString()));
  const closed = new Promise<number | null>((r) => child.on('close', r));
  return { child, printed: () => printed, closed };
}

// One flavour: the doors and the locks are ours, not the server's; the cluster-wide lock uses
// KV v2 check-and-set, which both flavours implement alike.
describe.each(flavorsUnderTest().slice(0, 1))(
  'every door of a $flavor cluster keeps the same safety rules',
  ({ flavor, version }) => {
    let lab: TestLab;
    let cli: CliRunner;
    let conn: ConnectedCluster;
    let work: string;
    let backupFile: string;
    const background: string[] = [];

    const keyTerm = async () =>
      (await conn.client.client('n1').read<{ data?: { term: number }; term?: number }>('sys/key-status')).data?.term;
    const rootTokens = async () => {
      const r = await cli.run(['root', 'hunt', '-i', lab.inventory, '--json', '--non-interactive']);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { root_tokens: Array<{ accessor: string }> }).root_tokens.map((t) => t.accessor);
    };
    const lockRecord = async () => {
      const r = await conn.client
        .client('n1')
        .read<{ data: { data: Record<string, unknown> } }>(`vaultops/data/locks/${lab.lab.name}`);
      return r.data.data;
    };

    beforeAll(async () => {
      lab = await startTestLab({ name: 'door', flavor, version });
      cli = new CliRunner({ env: lab.env, cwd: lab.stateDir });
      conn = await connectCluster(lab.inventory, undefined);
      // The cluster-wide lock lives in a KV v2 mount the operator enables once; lab up does it.
      const mounts = await conn.client
        .client('n1')
        .read<{ data: Record<string, { type: string; options?: { version?: string } }> }>('sys/mounts');
      expect(mounts.data['vaultops/']).toMatchObject({ type: 'kv', options: { version: '2' } });
      work = join(lab.stateDir, 'work');
      mkdirSync(work, { recursive: true });
      const b = await cli.run(['backup', '-i', lab.inventory, '--to', join(work, 'backups'), '--json']);
      expect(b.code, b.stderr).toBe(0);
      backupFile = (JSON.parse(b.stdout) as { file: string }).file;
    });

    afterAll(async () => {
      try {
        if (cli) {
          cli.log.push(...background.map((p) => ({ args: ['(background run)'], code: null, stdout: p, stderr: '' })));
          cli.expectNoSecrets(lab.secrets);
          const runs = join(lab.stateDir, 'runs');
          for (const id of existsSync(runs) ? readdirSync(runs) : []) {
            const journal = readFileSync(join(runs, id, 'journal.jsonl'), 'utf8');
            for (const s of lab.secrets) expect(journal.includes(s), `secret in journal of run ${id}`).toBe(false);
          }
        }
      } finally {
        conn?.client.close();
        await lab?.destroy();
      }
    });

    it('while a run holds the lock, restore, root generate, rekey start, rotate, upgrade, backup and a second run are refused with exit 4 naming the holder; nothing changes', async () => {
      const pb = join(work, 'hold.yml');
      writeFileSync(
        pb,
        [
          'name: hold',
          'steps:',
          '  - action: vault.node_health',
          '    target: all',
          '  - name: wait',
          '    action: flow.wait',
          '    with: {seconds: 120}',
          '',
        ].join('\n'),
      );
      const holder = startBackground(['run', pb, '-i', lab.inventory, '--non-interactive'], lab);
      await waitFor(
        'the holder to reach its wait step',
        () => (/\] wait\.\.\./.test(holder.printed()) ? true : undefined),
        60_000,
        100,
      );
      const holderPid = holder.child.pid!;
      const termBefore = await keyTerm();
      const tokensBefore = await rootTokens();

      const key = await makePgpKey(work, 'holder1');
      const binary = join(work, 'not-a-release');
      writeFileSync(binary, 'x');
      const sum = createHash('sha256').update('x').digest('hex');
      // The same cluster under another name, with its addresses spelt differently.
      const other = join(work, 'other.yml');
      writeFileSync(
        other,
        readFileSync(lab.inventory, 'utf8')
          .replace(new RegExp(`^  ${lab.lab.name}:`, 'm'), '  same-cluster-other-name:')
          .replace(/(api_addr: "?https:\/\/[0-9.]+:8200)/g, '$1/'),
      );
      const tokenOut = join(work, 'root-token');
      const backupsBefore = readdirSync(join(work, 'backups')).sort();
      const doors: Array<[string, string[]]> = [
        [
          'restore',
          ['restore', '-i', lab.inventory, '--from', backupFile, '--confirm', lab.lab.name, '--non-interactive'],
        ],
        [
          'root generate',
          [
            'root',
            'generate',
            '-i',
            lab.inventory,
            '--shares-from',
            `file:${lab.lab.initFile}#unseal_keys_b64`,
            '--token-out',
            tokenOut,
            '--non-interactive',
          ],
        ],
        [
          'rekey start',
          [
            'rekey',
            'start',
            '-i',
            lab.inventory,
            '--shares',
            '1',
            '--threshold',
            '1',
            '--pgp-key',
            key.publicFile,
            '--verify',
            '--out-dir',
            join(work, 'shares'),
            '--shares-from',
            `file:${lab.lab.initFile}#unseal_keys_b64`,
            '--non-interactive',
          ],
        ],
        ['rotate', ['rotate', '-i', lab.inventory]],
        ['unseal', ['unseal', '-i', lab.inventory, '--non-interactive']],
        [
          'upgrade',
          [
            'upgrade',
            '-i',
            lab.inventory,
            '--binary',
            binary,
            '--sha256',
            sum,
            '--confirm',
            lab.lab.name,
            '--non-interactive',
          ],
        ],
        ['backup', ['backup', '-i', lab.inventory, '--to', join(work, 'backups')]],
        ['a second run', ['run', 'health-check', '-i', lab.inventory, '--non-interactive']],
        [
          'a run through another inventory of the same cluster',
          ['run', 'health-check', '-i', other, '--non-interactive'],
        ],
      ];
      for (const [what, args] of doors) {
        const r = await cli.run(args);
        expect(r.code, `${what}: ${r.stderr}`).toBe(ExitCode.gateRefused);
        expect(r.stderr, what).toContain(`pid ${holderPid}`);
        expect(r.stderr, what).toContain(`@${hostname()}`);
      }
      expect(await keyTerm()).toBe(termBefore);
      expect(await rootTokens()).toEqual(tokensBefore);
      expect(existsSync(tokenOut)).toBe(false);
      const rekeyStatus = await cli.run(['rekey', 'status', '-i', lab.inventory, '--json', '--non-interactive']);
      expect(JSON.parse(rekeyStatus.stdout).started).toBe(false);
      expect(readdirSync(join(work, 'backups')).sort()).toEqual(backupsBefore);

      // The holder's record in the cluster names it too, and is released when it stops.
      expect(await lockRecord()).toMatchObject({ operation: 'hold', pid: holderPid, host: hostname() });
      holder.child.kill('SIGINT');
      expect(await holder.closed).toBe(ExitCode.interrupted);
      background.push(holder.printed());
      expect(await lockRecord()).toMatchObject({ pid: holderPid, released: true });
      const after = await cli.run(['rotate', '-i', lab.inventory, '--json']);
      expect(after.code, after.stderr).toBe(0);
      expect(JSON.parse(after.stdout).term_after).toBe((termBefore ?? 0) + 1);
    });

    it('the cluster-wide lock held from another admin host refuses every door; only --break-lock passes it', async () => {
      const client = conn.client.client('n1');
      const meta = await client.read<{ data: { current_version: number } }>(`vaultops/metadata/locks/${lab.lab.name}`);
      const record = {
        run_id: 'far-run',
        operation: 'upgrade --strategy rolling',
        user: 'ops',
        host: 'admin-2.example',
        pid: 4242,
        started_at: new Date().toISOString(),
        expires_at: new Date(Date.now() + 600_000).toISOString(),
      };
      await client.write(`vaultops/data/locks/${lab.lab.name}`, {
        options: { cas: meta.data.current_version },
        data: record,
      });
      const termBefore = await keyTerm();
      const refused = await cli.run(['rotate', '-i', lab.inventory]);
      expect(refused.code, refused.stderr).toBe(ExitCode.gateRefused);
      expect(refused.stderr).toContain('ops@admin-2.example');
      expect(refused.stderr).toContain('--break-lock');
      expect(await keyTerm()).toBe(termBefore);
      const run = await cli.run(['run', 'health-check', '-i', lab.inventory, '--non-interactive']);
      expect(run.code).toBe(ExitCode.gateRefused);
      const broken = await cli.run(['rotate', '-i', lab.inventory, '--break-lock', '--json']);
      expect(broken.code, broken.stderr).toBe(0);
      expect(await keyTerm()).toBe((termBefore ?? 0) + 1);
      expect(await lockRecord()).toMatchObject({ operation: 'rotate', released: true });
    });

    it('a record left by a run of this host whose process is gone does not hold the door; a live one does', async () => {
      const client = conn.client.client('n1');
      const write = async (pid: number) => {
        const meta = await client.read<{ data: { current_version: number } }>(
          `vaultops/metadata/locks/${lab.lab.name}`,
        );
        await client.write(`vaultops/data/locks/${lab.lab.name}`, {
          options: { cas: meta.data.current_version },
          data: {
            run_id: 'gone-run',
            operation: 'upgrade --strategy rolling',
            user: 'root',
            host: hostname(),
            pid,
            started_at: new Date().toISOString(),
            expires_at: new Date(Date.now() + 600_000).toISOString(),
          },
        });
      };
      // Alive: this test's own process stands in for a run still going on this host.
      await write(process.pid);
      const refused = await cli.run(['rotate', '-i', lab.inventory]);
      expect(refused.code, refused.stderr).toBe(ExitCode.gateRefused);
      expect(refused.stderr).toContain(`pid ${process.pid}`);
      // Gone: a run that ended before its release reached the cluster (the release is best effort).
      const gone = spawnSync('true').pid!;
      await write(gone);
      const termBefore = await keyTerm();
      const passed = await cli.run(['rotate', '-i', lab.inventory, '--json']);
      expect(passed.code, passed.stderr).toBe(0);
      expect(await keyTerm()).toBe((termBefore ?? 0) + 1);
      expect(await lockRecord()).toMatchObject({ operation: 'rotate', released: true });
    });

    it('unseal is the unseal playbook through the same door: a sealed node is unsealed with shares from --keys', async () => {
      const sealed = await sealActiveNode(lab.inventory);
      const r = await cli.run([
        'unseal',
        '-i',
        lab.inventory,
        '--keys',
        `file:${lab.lab.initFile}#unseal_keys_b64`,
        '--non-interactive',
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`${sealed}\\s+:\\s+ok=\\d+\\s+changed=1`));
      const status = await cli.run(['status', '-i', lab.inventory, '--json']);
      expect(status.code, status.stdout).toBe(0);
    });

    it('restore and rekey start without verification, unattended and without --confirm, exit 2 and change nothing', async () => {
      const restore = await cli.run(['restore', '-i', lab.inventory, '--from', backupFile, '--non-interactive']);
      expect(restore.code, restore.stderr).toBe(ExitCode.badInput);
      expect(restore.stderr).toContain(`--confirm ${lab.lab.name}`);
      const key = await makePgpKey(work, 'holder2');
      const rekey = await cli.run([
        'rekey',
        'start',
        '-i',
        lab.inventory,
        '--shares',
        '1',
        '--threshold',
        '1',
        '--pgp-key',
        key.publicFile,
        '--out-dir',
        join(work, 'shares2'),
        '--shares-from',
        `file:${lab.lab.initFile}#unseal_keys_b64`,
        '--non-interactive',
      ]);
      expect(rekey.code, rekey.stderr).toBe(ExitCode.badInput);
      expect(rekey.stderr).toContain(`--confirm ${lab.lab.name}`);
      const status = await cli.run(['rekey', 'status', '-i', lab.inventory, '--json', '--non-interactive']);
      expect(JSON.parse(status.stdout).started).toBe(false);
      // The old shares still unseal: nothing was rekeyed. (The lab's own health says it is unsealed.)
      const upgrade = await cli.run([
        'upgrade',
        '-i',
        lab.inventory,
        '--binary',
        backupFile,
        '--sha256',
        '0'.repeat(64),
        '--non-interactive',
      ]);
      expect(upgrade.code, upgrade.stderr).toBe(ExitCode.badInput);
      expect(upgrade.stderr).toContain(`--confirm ${lab.lab.name}`);
      expect(upgrade.stderr).toMatch(/Plan: rolling upgrade of cluster/);
    });

    it('Ctrl-C during a root-token playbook still revokes the token in its always: block', async () => {
      const original = readFileSync(join(import.meta.dirname, '..', '..', 'playbooks', 'root-generate.yml'), 'utf8');
      const pb = join(work, 'root-slow.yml');
      // The work that needs root takes a while: the operator interrupts it.
      writeFileSync(
        pb,
        original.replace(
          '      # ---- steps that need root go here',
          '      - name: work\n        action: flow.wait\n        with: {seconds: 120}\n      # ---- steps that need root go here',
        ),
      );
      const before = await rootTokens();
      const run = startBackground(
        [
          'run',
          pb,
          '-i',
          lab.inventory,
          '--non-interactive',
          '--var',
          `unseal_keys=file:${lab.lab.initFile}#unseal_keys_b64`,
        ],
        lab,
      );
      const accessor = await waitFor(
        'the token to be minted and the work to start',
        () => {
          const m = /root token minted: accessor (\S+)/.exec(run.printed());
          return m && /\] work\.\.\./.test(run.printed()) ? m[1] : undefined;
        },
        90_000,
        100,
      );
      expect(await rootTokens()).toContain(accessor);
      run.child.kill('SIGINT');
      expect(await run.closed).toBe(ExitCode.interrupted);
      background.push(run.printed());
      expect(run.printed()).toMatch(/Revoke the root token.*changed/);
      expect(await rootTokens()).toEqual(before);
    });

    it('root generate refuses an existing --token-out before a token exists', async () => {
      const before = await rootTokens();
      const existing = join(work, 'exists');
      writeFileSync(existing, 'keep me');
      const r = await cli.run([
        'root',
        'generate',
        '-i',
        lab.inventory,
        '--shares-from',
        `file:${lab.lab.initFile}#unseal_keys_b64`,
        '--token-out',
        existing,
        '--non-interactive',
      ]);
      expect(r.code, r.stderr).toBe(ExitCode.badInput);
      expect(r.stderr).toMatch(/nothing was started/);
      expect(readFileSync(existing, 'utf8')).toBe('keep me');
      expect(await rootTokens()).toEqual(before);
      const status = await cli.run([
        'root',
        'generate',
        '-i',
        lab.inventory,
        '--status',
        '--json',
        '--non-interactive',
      ]);
      expect(JSON.parse(status.stdout).started).toBe(false);
    });
  },
);
