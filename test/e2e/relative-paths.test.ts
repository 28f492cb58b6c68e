import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ExitCode } from '../../src/core/exit-codes.js';
import { CliRunner } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';

/**
 * An inventory written by hand next to its files, as the README shows (`token: file:init.json#root_token`),
 * used the way cron uses it: from another working directory (/), so nothing may resolve against the cwd.
 */
describe('relative paths in an inventory resolve against the inventory file, run from /', () => {
  const { flavor, version } = flavorsUnderTest()[0]!;
  let t: TestLab;
  let dir: string;
  let inventory: string;
  let cli: CliRunner;

  beforeAll(async () => {
    t = await startTestLab({ name: 'relpaths', flavor, version });
    dir = mkdtempSync(join(tmpdir(), 'vaultops-relpaths-'));
    copyFileSync(t.lab.initFile, join(dir, 'init.json'));
    chmodSync(join(dir, 'init.json'), 0o600);
    mkdirSync(join(dir, 'tls'));
    const lab = parse(readFileSync(t.inventory, 'utf8')) as { clusters: Record<string, Record<string, unknown>> };
    const [name, cluster] = Object.entries(lab.clusters)[0]!;
    copyFileSync((cluster['tls'] as { ca_cert: string }).ca_cert, join(dir, 'tls', 'ca.pem'));
    const own = {
      ...cluster,
      tls: { ca_cert: 'tls/ca.pem' },
      token: 'file:init.json#root_token',
      unseal: { ...(cluster['unseal'] as object), keys: 'file:init.json#unseal_keys_b64' },
      stores: { local: { type: 'dir', path: 'backups' } },
    };
    inventory = join(dir, 'cluster.yml');
    writeFileSync(inventory, stringify({ clusters: { [name]: own } }));
    cli = new CliRunner({ env: t.env, cwd: '/' });
  });
  afterAll(async () => {
    await t?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('`vaultops status` reads the token, the CA and the nodes and reports the cluster healthy', async () => {
    const r = await cli.run(['status', '-i', inventory]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(ExitCode.ok);
    expect(r.stdout).toMatch(/HEALTHY; leader n\d/);
  });

  it('`vaultops backup` writes into the store directory next to the inventory, and `backups list` finds it', async () => {
    const r = await cli.run(['backup', '-i', inventory, '--quiet']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(ExitCode.ok);
    expect(readdirSync(join(dir, 'backups')).filter((f) => f.endsWith('.snap'))).toHaveLength(1);
    const list = await cli.run(['backups', 'list', '-i', inventory, '--store', 'local', '--json']);
    expect(list.code).toBe(0);
    const listed = JSON.parse(list.stdout) as { store: string; backups: { name: string; verified: boolean }[] };
    expect(listed.store).toContain(join(dir, 'backups'));
    expect(listed.backups.map((b) => b.verified)).toEqual([true]);
  });

  it('`vaultops run backup` (the playbook action) puts its snapshot into the same store directory', async () => {
    const r = await cli.run(['run', 'backup', '-i', inventory, '--non-interactive', '--yes']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect(readdirSync(join(dir, 'backups')).filter((f) => f.endsWith('.snap'))).toHaveLength(2);
  });

  it('prints no secret anywhere', () => {
    cli.expectNoSecrets(t.secrets);
  });
});
