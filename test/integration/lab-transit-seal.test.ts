import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectCluster } from '../../src/cli/cluster-from-inventory.js';
import { ExitCode } from '../../src/core/exit-codes.js';
import { labDir, readLab } from '../../src/lab/lab.js';
import { VaultClient } from '../../src/vault/client.js';
import type { ClusterStatus } from '../../src/vault/cluster.js';
import { CliRunner, labSecrets, processesUnder } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, transitSealToken, type TestLab } from '../helpers/lab.js';

const short = { openbao: 'bao', vault: 'vault' } as const;

describe.each(flavorsUnderTest())(
  '`lab up --seal transit`: a $flavor $version lab auto-unsealed by another lab',
  ({ flavor, version }) => {
    const name = `g-tlab-${short[flavor]}`;
    const providerName = `g-tprov-${short[flavor]}`;
    let provider: TestLab;
    let cli: CliRunner;
    let inventory: string;
    const secrets: string[] = [];
    const sealTokens: string[] = [];

    /** The provider's answer for a token (lookup-self with that token): whether it is still valid. */
    async function tokenValid(token: string): Promise<boolean> {
      const c = new VaultClient({
        address: provider.lab.nodes[0]!.apiAddr,
        tls: { caCert: provider.lab.caCert },
        token,
      });
      try {
        await c.lookupSelf();
        return true;
      } catch {
        return false;
      } finally {
        c.transport.close();
      }
    }

    async function expectHealthyTransitLab(): Promise<void> {
      const { client } = await connectCluster(inventory, undefined);
      let st: ClusterStatus;
      try {
        st = await client.status();
        for (const n of readLab(name, provider.env)!.nodes) {
          const seal = await client.client(n.name).sealStatus();
          expect({ node: n.name, type: seal.type, sealed: seal.sealed, recovery_seal: seal.recovery_seal }).toEqual({
            node: n.name,
            type: 'transit',
            sealed: false,
            recovery_seal: true,
          });
        }
      } finally {
        client.close();
      }
      expect(st.problems).toEqual([]);
      expect(st.autopilot).toEqual({ healthy: true, failureTolerance: 1, voters: 3 });
      expect(st.nodes.every((n) => n.voter && !n.sealed)).toBe(true);
    }

    beforeAll(async () => {
      provider = await startTestLab({ name: providerName, flavor, version, nodes: 1 });
      secrets.push(...labSecrets(provider.lab.initFile));
      cli = new CliRunner({ env: provider.env, cwd: provider.stateDir });
      inventory = join(provider.stateDir, `${name}.yml`);
    });
    afterAll(async () => {
      try {
        if (cli?.log.length) cli.expectNoSecrets([...secrets, ...sealTokens]);
      } finally {
        if (cli) await cli.run(['lab', 'destroy', '--name', name]);
        await provider?.destroy();
      }
    });

    it('comes up healthy: 3 voters, failure tolerance 1, seal type transit, recovery keys in init.json, the token only in 0600 configs', async () => {
      const r = await cli.run([
        'lab',
        'up',
        '--name',
        name,
        '--flavor',
        flavor,
        '--version',
        version,
        '--seal',
        'transit',
        '--seal-provider',
        providerName,
        '--inventory',
        inventory,
      ]);
      expect(r.code, r.stderr).toBe(ExitCode.ok);
      expect(r.stdout).toContain(`auto-unseal by lab ${providerName}'s transit engine): created and started`);
      const lab = readLab(name, provider.env)!;
      const init = JSON.parse(readFileSync(lab.initFile, 'utf8')) as Record<string, unknown> & {
        recovery_keys_b64: string[];
        recovery_keys_hex: string[];
        root_token: string;
      };
      secrets.push(...labSecrets(lab.initFile), ...init.recovery_keys_b64, ...init.recovery_keys_hex);
      sealTokens.push(transitSealToken(lab));
      expect(init).toMatchObject({
        unseal_keys_b64: [],
        unseal_keys_hex: [],
        recovery_keys_shares: 5,
        recovery_keys_threshold: 3,
      });
      expect(init.recovery_keys_b64).toHaveLength(5);
      expect(init.recovery_keys_hex).toHaveLength(5);

      await expectHealthyTransitLab();

      // Every node has the seal stanza with the same token; nothing else the lab writes holds it.
      for (const n of lab.nodes) {
        expect(statSync(n.config).mode & 0o777).toBe(0o600);
        expect(transitSealToken(lab, lab.nodes.indexOf(n))).toBe(sealTokens[0]);
      }
      for (const f of [join(lab.dir, 'lab.json'), inventory, ...lab.nodes.map((n) => n.log)])
        expect(readFileSync(f, 'utf8'), f).not.toContain(sealTokens[0]);
      const inv = readFileSync(inventory, 'utf8');
      expect(inv).toContain(`key_set: "${name}-recovery"`);
      expect(inv).toContain(`keys: "file:${lab.initFile}#recovery_keys_b64"`);
      expect(lab.seal).toMatchObject({
        type: 'transit',
        provider: providerName,
        keyName: `vaultops-lab-${name}`,
        mountPath: 'transit/',
      });

      // The token can encrypt and decrypt with its own key, and nothing else.
      const c = new VaultClient({
        address: provider.lab.nodes[0]!.apiAddr,
        tls: { caCert: provider.lab.caCert },
        token: sealTokens[0],
      });
      try {
        const enc = await c.write<{ data: { ciphertext: string } }>(`transit/encrypt/vaultops-lab-${name}`, {
          plaintext: Buffer.from('canary').toString('base64'),
        });
        expect(enc.data.ciphertext).toMatch(/^[a-z]+:v1:/);
        await expect(c.read('sys/mounts')).rejects.toMatchObject({ status: 403 });
        await expect(c.write('transit/keys/other', {})).rejects.toMatchObject({ status: 403 });
      } finally {
        c.transport.close();
      }

      const st = await cli.run(['lab', 'status', '--name', name, '--json']);
      expect(st.code).toBe(ExitCode.ok);
      expect((JSON.parse(st.stdout) as Array<{ state: string; seal: unknown }>)[0]).toMatchObject({
        state: 'running',
        seal: { type: 'transit', provider: providerName, key_name: `vaultops-lab-${name}` },
      });
      const table = await cli.run(['lab', 'status']);
      expect(table.stdout).toMatch(new RegExp(`^${name} .* running +transit \\(lab ${providerName}\\)`, 'm'));
    });

    it('survives `lab down` + `lab up`: the nodes auto-unseal again with a fresh seal token, the old one revoked', async () => {
      const lab = readLab(name, provider.env)!;
      const down = await cli.run(['lab', 'down', '--name', name]);
      expect(down.code, down.stderr).toBe(ExitCode.ok);
      expect(processesUnder(lab.dir)).toEqual([]);
      const up = await cli.run(['lab', 'up', '--name', name]);
      expect(up.code, up.stderr).toBe(ExitCode.ok);
      expect(up.stdout).toMatch(new RegExp(`Lab ${name} .*transit engine\\): started in [\\d.]+ s\\.`));
      sealTokens.push(transitSealToken(readLab(name, provider.env)!));
      expect(sealTokens[1]).not.toBe(sealTokens[0]);
      await expectHealthyTransitLab();
      expect(await tokenValid(sealTokens[1]!)).toBe(true);
      expect(await tokenValid(sealTokens[0]!)).toBe(false);
    });

    it('`lab up --seal transit --seal-provider nope` exits 2 with what to do, and leaves nothing behind', async () => {
      const other = `g-tnope-${short[flavor]}`;
      const r = await cli.run([
        'lab',
        'up',
        '--name',
        other,
        '--flavor',
        flavor,
        '--version',
        version,
        '--seal',
        'transit',
        '--seal-provider',
        'nope',
      ]);
      expect(r.code).toBe(ExitCode.badInput);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain(
        `error: Lab ${other} is sealed by the transit engine of lab nope, which does not exist`,
      );
      expect(r.stderr).toContain('`vaultops lab up --name nope`');
      expect(r.stderr).not.toMatch(/^\s+at /m);
      const dir = labDir(other, provider.env);
      expect(existsSync(dir)).toBe(false);
      expect(processesUnder(dir)).toEqual([]);
      const st = await cli.run(['lab', 'status', '--json']);
      expect(
        (JSON.parse(st.stdout) as Array<{ name: string; state: string }>).map((l) => [l.name, l.state]).sort(),
      ).toEqual(
        [
          [name, 'running'],
          [providerName, 'running'],
        ].sort(),
      );
    });
  },
);
