import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectCluster } from '../../src/cli/cluster-from-inventory.js';
import { ExitCode } from '../../src/core/exit-codes.js';
import { labSecrets } from '../helpers/cli.js';
import {
  CeremonyCli,
  decryptArmored,
  makePgpKey,
  REPO,
  sealActiveNode,
  waitAllServing,
  type TestPgpKey,
} from '../helpers/ceremony.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';

const short = { openbao: 'bao', vault: 'vault' } as const;

describe.each(flavorsUnderTest())('unseal-key rekey on a $flavor $version lab', ({ flavor, version }) => {
  let t: TestLab;
  let cli: CeremonyCli;
  let work: string;
  const secrets: string[] = [];

  beforeAll(async () => {
    t = await startTestLab({ name: `d-rekey-${short[flavor]}`, flavor, version });
    cli = new CeremonyCli(t.env, t.stateDir);
    work = mkdtempSync(join(t.stateDir, 'work-'));
    secrets.push(...labSecrets(t.lab.initFile));
  });
  afterAll(async () => {
    try {
      if (cli?.log.length) cli.expectNoSecrets(secrets);
    } finally {
      await t?.destroy();
    }
  });

  const oldShares = () => t.init.unseal_keys_b64;

  /** Submits shares to a sealed node; true when it unsealed. A wrong set is refused (or leaves it sealed). */
  async function unsealWith(nodeName: string, shares: readonly string[]): Promise<boolean> {
    const { client } = await connectCluster(t.inventory, undefined);
    try {
      const c = client.client(nodeName);
      for (const s of shares) {
        try {
          const st = await c.unseal(s);
          if (!st.sealed) return true;
        } catch {
          await c.unsealReset().catch(() => undefined);
          return false;
        }
      }
      const st = await c.sealStatus();
      if (st.sealed) await c.unsealReset().catch(() => undefined);
      return !st.sealed;
    } finally {
      client.close();
    }
  }

  async function keys(n: number, prefix: string): Promise<TestPgpKey[]> {
    const out: TestPgpKey[] = [];
    for (let i = 1; i <= n; i++) out.push(await makePgpKey(work, `${prefix}${i}`));
    return out;
  }

  it('the rekey playbook starts a verified rekey with one PGP key per holder and writes their files; cancelling it keeps the old keys', async () => {
    const holders = await keys(3, 'p');
    const outDir = join(work, 'playbook');
    const r = await cli.run([
      'run',
      join(REPO, 'playbooks', 'rekey.yml'),
      '-i',
      t.inventory,
      '--non-interactive',
      '-y',
      '--var',
      'shares=3',
      '--var',
      'threshold=2',
      '--var',
      `pgp_keys=${holders.map((k) => k.publicFile).join(',')}`,
      '--var',
      `out_dir=${outDir}`,
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(ExitCode.ok);
    expect(r.stdout + r.stderr).toMatch(
      /old keys stay valid until verified: vaultops rekey verify --nonce [0-9a-f-]{36}/,
    );
    expect(readdirSync(outDir)).toHaveLength(3);
    const st = JSON.parse(
      (await cli.run(['rekey', 'status', '-i', t.inventory, '--json', '--non-interactive'])).stdout,
    ) as { nonce: string; verification_required: boolean; new_shares: number };
    expect(st).toMatchObject({ verification_required: true, new_shares: 3 });
    const cancel = await cli.run(['rekey', 'cancel', '-i', t.inventory, '--nonce', st.nonce, '--non-interactive']);
    expect(cancel.code, cancel.stderr).toBe(ExitCode.ok);
  });

  it('the rotate-encryption-key playbook advances the key term', async () => {
    const r = await cli.run([
      'run',
      join(REPO, 'playbooks', 'rotate-encryption-key.yml'),
      '-i',
      t.inventory,
      '--non-interactive',
      '-y',
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(ExitCode.ok);
    const m = /key term (\d+) -> (\d+)/.exec(r.stdout + r.stderr);
    expect(m).not.toBeNull();
    expect(Number(m![2])).toBe(Number(m![1]) + 1);
  });

  it('a rekey cancelled half way (with its nonce) leaves the old keys working: a sealed node unseals with them', async () => {
    const holders = await keys(7, 'c');
    const outDir = join(work, 'cancelled');
    const start = await cli.run(
      [
        'rekey',
        'start',
        '-i',
        t.inventory,
        '--shares',
        '7',
        '--threshold',
        '4',
        ...holders.flatMap((k) => ['--pgp-key', k.publicFile]),
        '--verify',
        '--out-dir',
        outDir,
        '--shares-from',
        'env:D_OLD',
        '--non-interactive',
      ],
      { D_OLD: JSON.stringify(oldShares().slice(0, 1)) },
    );
    expect(start.code, start.stderr).toBe(ExitCode.ok);
    const nonce = /Nonce: ([0-9a-f-]{36})/.exec(start.stderr)?.[1];
    expect(nonce).toBeDefined();
    expect(start.stderr).toContain('Progress: 1 of 3');
    const status = await cli.run(['rekey', 'status', '-i', t.inventory, '--json', '--non-interactive']);
    expect(JSON.parse(status.stdout)).toMatchObject({
      started: true,
      nonce,
      progress: 1,
      required: 3,
      new_shares: 7,
      new_threshold: 4,
      verification_required: true,
    });

    const wrongNonce = await cli.run([
      'rekey',
      'cancel',
      '-i',
      t.inventory,
      '--nonce',
      '00000000-0000-0000-0000-000000000000',
      '--non-interactive',
    ]);
    expect(wrongNonce.code).toBe(ExitCode.badInput);
    const cancel = await cli.run(['rekey', 'cancel', '-i', t.inventory, '--nonce', nonce!, '--non-interactive']);
    expect(cancel.code, cancel.stderr).toBe(ExitCode.ok);
    const after = await cli.run(['rekey', 'status', '-i', t.inventory, '--json', '--non-interactive']);
    expect(JSON.parse(after.stdout)).toMatchObject({ started: false });

    const sealed = await sealActiveNode(t.inventory);
    expect(await unsealWith(sealed, oldShares().slice(0, 3))).toBe(true);
    await waitAllServing(t.inventory);
  });

  it('rekey 5/3 -> 7/4 with a PGP key per holder and verification: new shares unseal a sealed node, old ones no longer do', async () => {
    const holders = await keys(7, 'h');
    const outDir = join(work, 'shares');
    const start = await cli.run([
      'rekey',
      'start',
      '-i',
      t.inventory,
      '--shares',
      '7',
      '--threshold',
      '4',
      ...holders.flatMap((k) => ['--pgp-key', k.publicFile]),
      '--verify',
      '--out-dir',
      outDir,
      '--shares-from',
      `file:${t.lab.initFile}#unseal_keys_b64`,
      '--non-interactive',
    ]);
    expect(start.code, start.stderr).toBe(ExitCode.ok);
    expect(start.stderr).toContain('Progress: 2 of 3');
    const vnonce = /Verification nonce: ([0-9a-f-]{36})/.exec(start.stdout)?.[1];
    expect(vnonce, start.stdout).toBeDefined();

    // One file per holder, 0600, armored, named after the holder's key; each decrypts with that key only.
    const files = readdirSync(outDir).sort((a, b) => Number(a.split('-')[1]) - Number(b.split('-')[1]));
    expect(files).toHaveLength(7);
    const newShares: string[] = [];
    for (let i = 0; i < 7; i++) {
      expect(files[i]).toBe(`holder-${i + 1}-${holders[i]!.fingerprint.slice(-16)}.asc`);
      const path = join(outDir, files[i]!);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      const armored = readFileSync(path, 'utf8');
      expect(armored).toContain('-----BEGIN PGP MESSAGE-----');
      const share = await decryptArmored(armored, holders[i]!.armoredPrivate);
      newShares.push(share);
      secrets.push(share, Buffer.from(share, 'hex').toString('base64'));
    }
    expect(new Set(newShares).size).toBe(7);
    await expect(
      decryptArmored(readFileSync(join(outDir, files[0]!), 'utf8'), holders[1]!.armoredPrivate),
    ).rejects.toThrow();

    // Verification pending: the old keys are still the cluster's keys.
    const half = await cli.run(
      ['rekey', 'verify', '-i', t.inventory, '--nonce', vnonce!, '--shares-from', 'env:D_NEW', '--non-interactive'],
      { D_NEW: JSON.stringify(newShares.slice(0, 2)) },
    );
    expect(half.code, half.stderr).toBe(ExitCode.ok);
    expect(half.stderr).toContain('Verification progress: 2 of 4');
    const stale = await cli.run(
      [
        'rekey',
        'verify',
        '-i',
        t.inventory,
        '--nonce',
        '00000000-0000-0000-0000-000000000000',
        '--shares-from',
        'env:D_NEW',
        '--non-interactive',
      ],
      { D_NEW: JSON.stringify(newShares.slice(2, 3)) },
    );
    expect(stale.code).toBe(ExitCode.badInput);
    expect(stale.stderr).toContain('your share was not sent');
    const done = await cli.run(
      ['rekey', 'verify', '-i', t.inventory, '--nonce', vnonce!, '--shares-from', 'env:D_NEW', '--non-interactive'],
      { D_NEW: JSON.stringify(newShares.slice(2, 4)) },
    );
    expect(done.code, done.stderr).toBe(ExitCode.ok);
    expect(done.stdout).toContain('Verification complete');

    const sealed = await sealActiveNode(t.inventory);
    // Four old shares reach the new threshold and are refused: they no longer make the key.
    expect(await unsealWith(sealed, oldShares().slice(0, 4))).toBe(false);
    const { client } = await connectCluster(t.inventory, undefined);
    try {
      expect((await client.client(sealed).sealStatus()).t).toBe(4);
    } finally {
      client.close();
    }
    expect(await unsealWith(sealed, newShares.slice(3, 7))).toBe(true);
    await waitAllServing(t.inventory);
  });

  it('rotate advances the key term by one and shows it before and after', async () => {
    const r = await cli.run(['rotate', '-i', t.inventory, '--json']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const j = JSON.parse(r.stdout) as { term_before: number; term_after: number };
    expect(j.term_after).toBe(j.term_before + 1);
    const text = await cli.run(['rotate', '-i', t.inventory]);
    expect(text.stdout).toContain(`term ${j.term_after} -> ${j.term_after + 1}`);
  });
});
