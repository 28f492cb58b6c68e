import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/core/exit-codes.js';
import { CLI, NODE, runProcess, type Ran } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';

/**
 * The conventions of the official CLIs, without an inventory: VAULT_ADDR / BAO_ADDR, VAULT_CACERT,
 * VAULT_TOKEN / BAO_TOKEN, else the token `vault login` saved in ~/.vault-token. The nodes come from
 * the cluster's Raft configuration.
 */
describe.each(flavorsUnderTest())(
  'single-cluster commands against VAULT_ADDR on $flavor $version',
  ({ flavor, version }) => {
    let t: TestLab;
    let home: string;
    const outputs: Ran[] = [];

    /** The built CLI with only the given environment (plus PATH, HOME and the lab's state dir). */
    async function vaultops(args: string[], vars: Record<string, string>): Promise<Ran> {
      const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'], HOME: home, VAULTOPS_STATE_DIR: t.stateDir, ...vars };
      const r = await runProcess(NODE, [CLI, ...args], env);
      outputs.push(r);
      return r;
    }

    beforeAll(async () => {
      t = await startTestLab({ name: `venv-${flavor === 'vault' ? 'v' : 'b'}`, flavor, version });
      home = mkdtempSync(join(tmpdir(), 'vaultops-home-'));
    });
    afterAll(async () => {
      await t?.destroy();
      if (home) rmSync(home, { recursive: true, force: true });
    });

    it('`vaultops status` with VAULT_ADDR, VAULT_CACERT and VAULT_TOKEN shows every Raft node with its API address', async () => {
      const r = await vaultops(['status', '--json'], {
        VAULT_ADDR: t.lab.nodes[0]!.apiAddr,
        VAULT_CACERT: t.lab.caCert!,
        VAULT_TOKEN: t.init.root_token,
      });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(ExitCode.ok);
      const st = JSON.parse(r.stdout) as {
        health: string;
        nodes: { name: string; address: string; sealed: boolean }[];
      };
      expect(st.health).toBe('healthy');
      expect(st.nodes.map((n) => [n.name, n.address]).sort()).toEqual(
        t.lab.nodes.map((n) => [n.name, n.apiAddr]).sort(),
      );
    });

    it('BAO_ADDR / BAO_CACERT and the token in ~/.vault-token (no token variable) work the same, from any node', async () => {
      writeFileSync(join(home, '.vault-token'), `${t.init.root_token}\n`, { mode: 0o600 });
      const r = await vaultops(['status'], { BAO_ADDR: t.lab.nodes[2]!.apiAddr, BAO_CACERT: t.lab.caCert! });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(ExitCode.ok);
      for (const n of t.lab.nodes) expect(r.stdout).toContain(n.apiAddr);
    });

    it('VAULT_TOKEN comes before ~/.vault-token, as in the CLIs', async () => {
      writeFileSync(join(home, '.vault-token'), `${t.init.root_token}\n`, { mode: 0o600 });
      const r = await vaultops(['status'], {
        VAULT_ADDR: t.lab.nodes[0]!.apiAddr,
        VAULT_CACERT: t.lab.caCert!,
        VAULT_TOKEN: 'hvs.not-a-real-token',
      });
      expect(r.code).toBe(ExitCode.badInput);
      expect(r.stderr).toContain('Cannot read the Raft configuration');
      rmSync(join(home, '.vault-token'));
      const none = await vaultops(['status'], { VAULT_ADDR: t.lab.nodes[0]!.apiAddr, VAULT_CACERT: t.lab.caCert! });
      expect(none.code).toBe(ExitCode.badInput);
      expect(none.stderr).toContain(`No token for ${t.lab.nodes[0]!.apiAddr}`);
      expect(none.stderr).toContain('~/.vault-token');
    });

    it('`vaultops backup --to DIR` takes a verified snapshot from the leader', async () => {
      const dir = join(home, 'backups');
      mkdirSync(dir);
      const r = await vaultops(['backup', '--to', dir, '--quiet'], {
        VAULT_ADDR: t.lab.nodes[1]!.apiAddr,
        VAULT_CACERT: t.lab.caCert!,
        VAULT_TOKEN: t.init.root_token,
      });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(ExitCode.ok);
      expect(readdirSync(dir).filter((f) => f.endsWith('.snap'))).toHaveLength(1);
      const verify = await vaultops(
        ['backups', 'verify', '--to', dir, readdirSync(dir).find((f) => f.endsWith('.snap'))!],
        {},
      );
      expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    });

    it('`vaultops check` checks every node of the Raft configuration', async () => {
      const r = await vaultops(['check', '--json'], {
        VAULT_ADDR: t.lab.nodes[0]!.apiAddr,
        VAULT_CACERT: t.lab.caCert!,
        VAULT_TOKEN: t.init.root_token,
      });
      expect([ExitCode.ok, ExitCode.failed]).toContain(r.code);
      const report = JSON.parse(r.stdout) as { checks: { target: string; status: string }[] };
      const targets = new Set(report.checks.map((c) => c.target));
      for (const n of t.lab.nodes)
        expect(
          [...targets].some((x) => x.includes(n.name)),
          `a check on ${n.name}`,
        ).toBe(true);
      expect(report.checks.filter((c) => c.status === 'pass').length).toBeGreaterThan(0);
    });

    it('without -i and without VAULT_ADDR the error says what to pass (exit 2)', async () => {
      const r = await vaultops(['status'], {});
      expect(r.code).toBe(ExitCode.badInput);
      expect(r.stderr).toContain('error: Say which cluster: -i INVENTORY, or VAULT_ADDR (BAO_ADDR) and a token.');
    });

    it('prints no secret anywhere', () => {
      expect(outputs.length).toBeGreaterThan(0);
      const all = outputs.map((o) => o.stdout + o.stderr).join('\n');
      for (const s of t.secrets) expect(all).not.toContain(s);
    });
  },
);
