import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ExitCode } from '../../src/core/exit-codes.js';
import type { ClusterClient } from '../../src/vault/cluster.js';
import { CliRunner, labSecrets, waitFor } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { ensureKv, kvGet, kvPut, officialCli, unsealWith, withCluster } from '../helpers/backup-lab.js';

const short = { openbao: 'bao', vault: 'vault' } as const;

/**
 * Two real labs: a source and a target with their own keys. A snapshot of one restored into the other
 * replaces the target's data, tokens and keyring; with Shamir seals the target's nodes seal and only
 * the source's keys open them again, while the Raft membership stays the target's (seen with
 * OpenBao 2.7.2 and the official CLI).
 */
describe.each(flavorsUnderTest())("restoring another $flavor $version cluster's snapshot", ({ flavor, version }) => {
  const src = `b-src-${short[flavor]}`;
  const tgt = `b-tgt-${short[flavor]}`;
  let s: TestLab;
  let t: TestLab;
  let cli: CliRunner;
  let secrets: string[];
  /** The target's inventory plus the source cluster (for its key set and token). */
  let merged: string;
  let sourceBackup: string;
  let targetOfficial: string;

  const target = <T>(fn: (c: ClusterClient) => Promise<T>, token?: string) =>
    withCluster(
      merged,
      async (c) => {
        if (token) c.setToken(token);
        return fn(c);
      },
      tgt,
    );
  const raftAddresses = (token: string) =>
    target(
      async (c) =>
        (await (await c.findLeader()).client.raftConfiguration()).config.servers.map((x) => x.address).sort(),
      token,
    );
  const allSealed = () =>
    target(async (c) => ((await c.probeAll()).some((p) => p.health?.state === 'sealed') ? true : undefined));

  beforeAll(async () => {
    s = await startTestLab({ name: src, flavor, version });
    t = await startTestLab({ name: tgt, flavor, version });
    cli = new CliRunner({ env: t.env, cwd: t.stateDir });
    secrets = [...labSecrets(s.lab.initFile), ...labSecrets(t.lab.initFile)];
    const a = parse(readFileSync(t.inventory, 'utf8')) as { clusters: Record<string, unknown> };
    const b = parse(readFileSync(s.inventory, 'utf8')) as { clusters: Record<string, unknown> };
    merged = join(t.stateDir, 'merged.yml');
    writeFileSync(merged, stringify({ clusters: { ...a.clusters, ...b.clusters } }));
    await withCluster(s.inventory, async (c) => {
      await ensureKv(c);
      await kvPut(c, 'whoami', 'source');
    });
    await withCluster(t.inventory, async (c) => {
      await ensureKv(c);
      await kvPut(c, 'whoami', 'target');
    });
    const r = await cli.run(['backup', '-i', s.inventory, '--to', join(s.stateDir, 'backups'), '--json']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    sourceBackup = (JSON.parse(r.stdout) as { file: string }).file;
    targetOfficial = join(t.stateDir, 'target-official.snap');
    const save = await officialCli(t, ['operator', 'raft', 'snapshot', 'save', targetOfficial]);
    expect(save.code, save.stderr).toBe(0);
  });
  afterAll(async () => {
    await t?.destroy();
    await s?.destroy();
  });

  it('is refused without --force-other-cluster, with an explanation, and the target is untouched', async () => {
    const r = await cli.run([
      'restore',
      '-i',
      merged,
      '--cluster',
      tgt,
      '--from',
      sourceBackup,
      '--confirm',
      tgt,
      '--non-interactive',
    ]);
    expect(r.code).toBe(ExitCode.gateRefused);
    expect(r.stderr).toContain(`was taken on cluster ${src}`);
    expect(r.stderr).toContain(`key set ${src}-init`);
    expect(r.stderr).toContain('--force-other-cluster');
    expect(r.stderr).toContain('The cluster was not touched');
    expect(await target((c) => kvGet(c, 'whoami'))).toBe('target');
    expect((await target((c) => c.status())).health).toBe('healthy');
  });

  it("a manifest without cluster ids does not let another cluster's snapshot pass: refused by name, or as unknown, before any safety snapshot", async () => {
    /** A copy of the source backup (file, sidecar, manifest) in its own directory, its manifest edited. */
    const copyWith = (tag: string, edit: (m: { cluster: Record<string, unknown> }) => void) => {
      const d = join(t.stateDir, `stripped-${tag}`);
      mkdirSync(d, { recursive: true });
      const f = join(d, basename(sourceBackup));
      copyFileSync(sourceBackup, f);
      copyFileSync(`${sourceBackup}.sha256`, `${f}.sha256`);
      const m = JSON.parse(readFileSync(`${sourceBackup}.json`, 'utf8')) as { cluster: Record<string, unknown> };
      edit(m);
      writeFileSync(`${f}.json`, JSON.stringify(m));
      return { d, f };
    };
    const noId = copyWith('id', (m) => delete m.cluster['cluster_id']);
    const r = await cli.run([
      'restore',
      '-i',
      merged,
      '--cluster',
      tgt,
      '--from',
      noId.f,
      '--confirm',
      tgt,
      '--non-interactive',
    ]);
    expect(r.code, r.stderr).toBe(ExitCode.gateRefused);
    expect(r.stderr).toContain(`was taken on cluster ${src}`);
    expect(r.stderr).toContain('The cluster was not touched');
    expect(readdirSync(noId.d).filter((f) => f.includes('pre-restore'))).toEqual([]);
    // Nothing left to compare but an inventory name made to match: identity cannot be established.
    const nothing = copyWith('all', (m) => {
      delete m.cluster['cluster_id'];
      delete m.cluster['cluster_name'];
      m.cluster['name'] = tgt;
    });
    const u = await cli.run([
      'restore',
      '-i',
      merged,
      '--cluster',
      tgt,
      '--from',
      nothing.f,
      '--confirm',
      tgt,
      '--non-interactive',
    ]);
    expect(u.code, u.stderr).toBe(ExitCode.gateRefused);
    expect(u.stderr).toMatch(/Cannot tell whether .* was taken on/);
    expect(u.stderr).toContain('--force-other-cluster');
    expect(readdirSync(nothing.d).filter((f) => f.includes('pre-restore'))).toEqual([]);
    expect(await target((c) => kvGet(c, 'whoami'))).toBe('target');
  });

  it("the official CLI restores a vaultops backup into the other lab; the source's keys unseal it", async () => {
    const r = await officialCli(t, ['operator', 'raft', 'snapshot', 'restore', '-force', sourceBackup]);
    expect(r.code, r.stderr).toBe(0);
    await waitFor('the target to seal itself after the restore', allSealed, 120_000, 500);
    await target((c) => unsealWith(c, s.init.unseal_keys_b64));
    expect(await target((c) => kvGet(c, 'whoami'), s.init.root_token)).toBe('source');
    expect(await raftAddresses(s.init.root_token)).toEqual(
      t.lab.nodes.map((n) => n.clusterAddr.replace('https://', '')).sort(),
    );
    // Put the target back as it was, with the official CLI and the target's own keys.
    const back = await officialCli(
      t,
      ['operator', 'raft', 'snapshot', 'restore', '-force', targetOfficial],
      s.init.root_token,
    );
    expect(back.code, back.stderr).toBe(0);
    await waitFor('the target to seal itself after the restore', allSealed, 120_000, 500);
    await target((c) => unsealWith(c, t.init.unseal_keys_b64));
    await waitFor(
      "the target's own data",
      () => target(async (c) => ((await kvGet(c, 'whoami')) === 'target' ? true : undefined)),
      60_000,
      500,
    );
  });

  it("with --force-other-cluster the target comes back unsealed with the source's key set, holding the source's data and keeping its own membership", async () => {
    const r = await cli.run(
      [
        'restore',
        '-i',
        merged,
        '--cluster',
        tgt,
        '--from',
        sourceBackup,
        '--confirm',
        tgt,
        '--force-other-cluster',
        '--non-interactive',
        '--json',
      ],
      { timeoutMs: 300_000 },
    );
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const res = JSON.parse(r.stdout) as {
      forced: boolean;
      unsealed_with: string;
      status: { health: string; nodes: Array<{ sealed: boolean; voter: boolean }> };
    };
    expect(res.forced).toBe(true);
    expect(res.unsealed_with).toBe(`${src}-init`);
    expect(res.status.health).toBe('healthy');
    expect(res.status.nodes.every((n) => !n.sealed && n.voter)).toBe(true);
    expect(r.stderr).toMatch(/unsealing with key set/);
    expect(await target((c) => kvGet(c, 'whoami'), s.init.root_token)).toBe('source');
    expect(await raftAddresses(s.init.root_token)).toEqual(
      t.lab.nodes.map((n) => n.clusterAddr.replace('https://', '')).sort(),
    );
  });

  it('unseal keys that do not open the restored data: a clear error that names the key set', async () => {
    // The target now holds the source's data; restore the target's own (official-CLI) snapshot with an
    // inventory whose key set for the target is in fact the source's keys.
    const doc = parse(readFileSync(merged, 'utf8')) as {
      clusters: Record<string, { token: string; unseal: { key_set: string; keys: string } }>;
    };
    const wrong = join(t.stateDir, 'wrong-keys.yml');
    doc.clusters[tgt]!.unseal = {
      ...doc.clusters[tgt]!.unseal,
      key_set: `${tgt}-wrong`,
      keys: doc.clusters[src]!.unseal.keys,
    };
    doc.clusters[tgt]!.token = doc.clusters[src]!.token;
    writeFileSync(wrong, stringify(doc));
    const r = await cli.run(
      [
        'restore',
        '-i',
        wrong,
        '--cluster',
        tgt,
        '--from',
        targetOfficial,
        '--confirm',
        tgt,
        '--force-other-cluster',
        '--non-interactive',
      ],
      { timeoutMs: 300_000 },
    );
    expect(r.code).toBe(ExitCode.failed);
    expect(r.stderr).toMatch(new RegExp(`refused the unseal keys of key set ${tgt}-wrong after the restore`));
  });

  it('no output of this file holds an unseal key or root token of either lab', () => {
    cli.expectNoSecrets(secrets);
  });
});
