import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectCluster } from '../../src/cli/cluster-from-inventory.js';
import { RootGeneration, WrongShareError } from '../../src/ceremony/generate-root.js';
import { CeremonySession } from '../../src/ceremony/session.js';
import { ExitCode } from '../../src/core/exit-codes.js';
import { labSecrets } from '../helpers/cli.js';
import { CeremonyCli, decryptArmored, makePgpKey, type TestPgpKey } from '../helpers/ceremony.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { startTransitSealedNode, type TransitNode } from '../helpers/transit-node.js';

const short = { openbao: 'bao', vault: 'vault' } as const;

describe.each(flavorsUnderTest())('recovery-key rekey on a $flavor $version server sealed by another lab\'s transit engine', ({ flavor, version }) => {
  let provider: TestLab;
  let node: TransitNode;
  let cli: CeremonyCli;
  const secrets: string[] = [];

  beforeAll(async () => {
    provider = await startTestLab({ name: `d-transit-${short[flavor]}`, flavor, version });
    secrets.push(...labSecrets(provider.lab.initFile));
    node = await startTransitSealedNode(provider, { dir: provider.stateDir, name: `d-tsealed-${short[flavor]}` });
    secrets.push(...node.secrets);
    cli = new CeremonyCli(provider.env, provider.stateDir);
  });
  afterAll(async () => {
    try {
      if (cli?.log.length) {
        cli.expectNoSecrets(secrets);
        expect(secrets.filter((s) => node.cmdline.includes(s)), 'secrets in the server\'s argv').toEqual([]);
      }
    } finally {
      await node?.stop();
      await provider?.destroy();
    }
  });

  it('rekeys the recovery keys 5/3 -> 3/2 with PGP per holder and verification; the new keys authorise generate-root, the old ones no longer do', async () => {
    const holders: TestPgpKey[] = [];
    const work = join(provider.stateDir, 'recovery-work');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(work, { recursive: true });
    for (let i = 1; i <= 3; i++) holders.push(await makePgpKey(work, `r${i}`));
    const outDir = join(work, 'shares');
    const start = await cli.run([
      'rekey', 'start', '-i', node.inventory, '--recovery', '--shares', '3', '--threshold', '2', ...holders.flatMap((k) => ['--pgp-key', k.publicFile]),
      '--verify', '--out-dir', outDir, '--shares-from', `file:${node.initFile}#recovery_keys_b64`, '--non-interactive',
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
    const verify = await cli.run(['rekey', 'verify', '-i', node.inventory, '--recovery', '--nonce', vnonce!, '--shares-from', 'env:D_NEW', '--non-interactive'], { D_NEW: JSON.stringify(newKeys.slice(0, 2)) });
    expect(verify.code, verify.stderr).toBe(ExitCode.ok);
    expect(verify.stdout).toContain('Verification complete');

    // Old recovery keys: the threshold is now 2, and two old keys no longer combine.
    const { client } = await connectCluster(node.inventory, undefined);
    try {
      const attempt = await RootGeneration.start(await CeremonySession.open(client));
      expect(attempt.required).toBe(2);
      await attempt.submit(node.init.recovery_keys_b64[0]!);
      await expect(attempt.submit(node.init.recovery_keys_b64[1]!)).rejects.toBeInstanceOf(WrongShareError);
      await attempt.cancel();
    } finally {
      client.close();
    }
    // New recovery keys: a root token comes out, and is revoked.
    const tokenFile = join(work, 'root-token');
    const gen = await cli.run(['root', 'generate', '-i', node.inventory, '--shares-from', 'env:D_NEW', '--token-out', tokenFile, '--non-interactive'], { D_NEW: JSON.stringify(newKeys.slice(1, 3)) });
    expect(gen.code, gen.stderr).toBe(ExitCode.ok);
    secrets.push(readFileSync(tokenFile, 'utf8').trim());
    const rv = await cli.run(['root', 'revoke', '-i', node.inventory, '--token', `file:${tokenFile}`, '--confirm', `d-tsealed-${short[flavor]}`, '--non-interactive']);
    expect(rv.code, rv.stderr).toBe(ExitCode.ok);
  });
});
