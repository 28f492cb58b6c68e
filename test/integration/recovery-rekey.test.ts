import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectCluster } from '../../src/cli/cluster-from-inventory.js';
import { RootGeneration, WrongShareError } from '../../src/ceremony/generate-root.js';
import { CeremonySession } from '../../src/ceremony/session.js';
import { ExitCode } from '../../src/core/exit-codes.js';
import { labSecrets } from '../helpers/cli.js';
import { CeremonyCli, decryptArmored, makePgpKey, type TestPgpKey } from '../helpers/ceremony.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { runningPids } from '../../src/lab/lab.js';
import { startTestLab, transitSealToken, type TestLab } from '../helpers/lab.js';

const short = { openbao: 'bao', vault: 'vault' } as const;

/** The command lines of every server process of these labs, for the argv leak check. */
function serverCmdlines(...labs: TestLab[]): string {
  return labs
    .flatMap((t) => runningPids(t.lab).map((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ')))
    .join('\n');
}

describe.each(flavorsUnderTest())(
  "recovery-key rekey on a $flavor $version lab sealed by another lab's transit engine",
  ({ flavor, version }) => {
    const name = `g-tsealed-${short[flavor]}`;
    let provider: TestLab;
    let sealed: TestLab;
    let cli: CeremonyCli;
    const secrets: string[] = [];

    beforeAll(async () => {
      // The provider only serves transit: one node is enough. The sealed lab is a real 3-node lab.
      provider = await startTestLab({ name: `g-transit-${short[flavor]}`, flavor, version, nodes: 1 });
      secrets.push(...labSecrets(provider.lab.initFile));
      sealed = await startTestLab({ name, flavor, version, seal: 'transit', sealProvider: provider });
      secrets.push(...sealed.secrets, transitSealToken(sealed.lab));
      cli = new CeremonyCli(provider.env, provider.stateDir);
    });
    afterAll(async () => {
      try {
        if (cli?.log.length) {
          cli.expectNoSecrets(secrets);
          const argv = serverCmdlines(provider, sealed);
          expect(argv).toContain('server');
          expect(
            secrets.filter((s) => s.length >= 6 && argv.includes(s)),
            "secrets in the servers' argv",
          ).toEqual([]);
        }
      } finally {
        // The sealed lab first: destroying it revokes its seal token on the provider.
        await sealed?.destroy();
        await provider?.destroy();
      }
    });

    it('the lab came up auto-unsealed by the transit seal, with recovery keys and no unseal keys', async () => {
      expect(sealed.init.unseal_keys_b64).toEqual([]);
      expect(sealed.init.recovery_keys_b64).toHaveLength(5);
      const { client } = await connectCluster(sealed.inventory, undefined);
      try {
        for (const n of sealed.lab.nodes) {
          const st = await client.client(n.name).sealStatus();
          expect({ type: st.type, sealed: st.sealed, recovery_seal: st.recovery_seal, t: st.t, n: st.n }).toEqual({
            type: 'transit',
            sealed: false,
            recovery_seal: true,
            t: 3,
            n: 5,
          });
        }
      } finally {
        client.close();
      }
    });

    it('rekeys the recovery keys 5/3 -> 3/2 with PGP per holder and verification; the new keys authorise generate-root, the old ones no longer do', async () => {
      const holders: TestPgpKey[] = [];
      const work = join(provider.stateDir, 'recovery-work');
      mkdirSync(work, { recursive: true });
      for (let i = 1; i <= 3; i++) holders.push(await makePgpKey(work, `r${i}`));
      const outDir = join(work, 'shares');
      const start = await cli.run([
        'rekey',
        'start',
        '-i',
        sealed.inventory,
        '--recovery',
        '--shares',
        '3',
        '--threshold',
        '2',
        ...holders.flatMap((k) => ['--pgp-key', k.publicFile]),
        '--verify',
        '--out-dir',
        outDir,
        '--shares-from',
        `file:${sealed.lab.initFile}#recovery_keys_b64`,
        '--non-interactive',
      ]);
      expect(start.code, start.stderr).toBe(ExitCode.ok);
      expect(start.stderr).toContain('Progress: 2 of 3');
      const vnonce = /Verification nonce: ([0-9a-f-]{36})/.exec(start.stdout)?.[1];
      expect(vnonce, start.stdout).toBeDefined();
      const files = readdirSync(outDir).sort();
      expect(files).toHaveLength(3);
      const newKeys: string[] = [];
      for (let i = 0; i < 3; i++) {
        const k = await decryptArmored(readFileSync(join(outDir, files[i]!), 'utf8'), holders[i]!.armoredPrivate);
        newKeys.push(k);
        secrets.push(k, Buffer.from(k, 'hex').toString('base64'));
      }
      const verify = await cli.run(
        [
          'rekey',
          'verify',
          '-i',
          sealed.inventory,
          '--recovery',
          '--nonce',
          vnonce!,
          '--shares-from',
          'env:D_NEW',
          '--non-interactive',
        ],
        { D_NEW: JSON.stringify(newKeys.slice(0, 2)) },
      );
      expect(verify.code, verify.stderr).toBe(ExitCode.ok);
      expect(verify.stdout).toContain('Verification complete');

      // Old recovery keys: the threshold is now 2, and two old keys no longer combine.
      const { client } = await connectCluster(sealed.inventory, undefined);
      try {
        const attempt = await RootGeneration.start(await CeremonySession.open(client));
        expect(attempt.required).toBe(2);
        await attempt.submit(sealed.init.recovery_keys_b64[0]!);
        await expect(attempt.submit(sealed.init.recovery_keys_b64[1]!)).rejects.toBeInstanceOf(WrongShareError);
        await attempt.cancel();
      } finally {
        client.close();
      }
      // New recovery keys: a root token comes out, and is revoked.
      const tokenFile = join(work, 'root-token');
      const gen = await cli.run(
        [
          'root',
          'generate',
          '-i',
          sealed.inventory,
          '--shares-from',
          'env:D_NEW',
          '--token-out',
          tokenFile,
          '--non-interactive',
        ],
        { D_NEW: JSON.stringify(newKeys.slice(1, 3)) },
      );
      expect(gen.code, gen.stderr).toBe(ExitCode.ok);
      secrets.push(readFileSync(tokenFile, 'utf8').trim());
      const rv = await cli.run([
        'root',
        'revoke',
        '-i',
        sealed.inventory,
        '--token',
        `file:${tokenFile}`,
        '--confirm',
        name,
        '--non-interactive',
      ]);
      expect(rv.code, rv.stderr).toBe(ExitCode.ok);
    });
  },
);
