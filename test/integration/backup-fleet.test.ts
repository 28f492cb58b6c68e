import { createServer, type Server } from 'node:http';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ExitCode } from '../../src/core/exit-codes.js';
import type { Manifest } from '../../src/backup/stores/manifest.js';
import { labDown } from '../../src/lab/lab.js';
import { CliRunner, labSecrets } from '../helpers/cli.js';
import { ensureKv, kvPut, withCluster } from '../helpers/backup-lab.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';

interface ClusterReport {
  cluster: string;
  inventory: string;
  result: 'success' | 'failure';
  exit_code: number;
  started_at: string;
  finished_at: string;
  file?: string;
  manifest?: Manifest;
  error?: string;
  hint?: string;
}
interface FleetReport {
  result: 'success' | 'failure';
  exit_code: number;
  concurrency: number;
  succeeded: string[];
  failed: string[];
  clusters: ClusterReport[];
}

/** Every sample of a textfile, by metric and cluster; and how often each HELP line appears. */
function readTextfile(file: string): {
  value: (metric: string, cluster: string) => string | undefined;
  helpCounts: Map<string, number>;
} {
  const text = readFileSync(file, 'utf8');
  const helpCounts = new Map<string, number>();
  for (const m of text.matchAll(/^# HELP (\S+) /gm)) helpCounts.set(m[1]!, (helpCounts.get(m[1]!) ?? 0) + 1);
  return {
    value: (metric, cluster) => new RegExp(`^${metric}\\{cluster="${cluster}"\\} (\\S+)$`, 'm').exec(text)?.[1],
    helpCounts,
  };
}

/**
 * Fleet backups: two one-node labs in one inventory (a 2-core machine; the fleet logic does not
 * depend on the number of nodes, and 3-node leader discovery is covered by backup-snapshot). One
 * flavour only: what is tested here is the orchestration around `takeBackup`, which is the same
 * code for both servers; backup-snapshot runs the snapshot itself against both.
 */
const { flavor, version } = flavorsUnderTest()[0]!;
const c1 = 'b-fleet-1';
const c2 = 'b-fleet-2';

describe(`fleet backups of two one-node ${flavor} ${version} labs in one inventory`, () => {
  let t1: TestLab | undefined;
  let t2: TestLab | undefined;
  let cli: CliRunner;
  let secrets: string[];
  let fleet: string;
  let dir: string;
  let prom: string;
  const snaps = (cluster?: string) =>
    existsSync(dir)
      ? readdirSync(dir).filter((f) => f.endsWith('.snap') && (cluster === undefined || f.startsWith(`${cluster}-`)))
      : [];

  beforeAll(async () => {
    [t1, t2] = await Promise.all([
      startTestLab({ name: c1, flavor, version, nodes: 1 }),
      startTestLab({ name: c2, flavor, version, nodes: 1 }),
    ]);
    secrets = [...labSecrets(t1.lab.initFile), ...labSecrets(t2.lab.initFile)];
    cli = new CliRunner({ env: t1.env, cwd: t1.stateDir });
    // One inventory with both clusters, as an operator keeps a fleet: the two lab inventories merged.
    const doc = parse(readFileSync(t1.inventory, 'utf8')) as { clusters: Record<string, unknown> };
    Object.assign(
      doc.clusters,
      (parse(readFileSync(t2.inventory, 'utf8')) as { clusters: Record<string, unknown> }).clusters,
    );
    fleet = join(t1.stateDir, 'fleet.yml');
    writeFileSync(fleet, stringify(doc));
    dir = join(t1.stateDir, 'backups');
    prom = join(t1.stateDir, 'vaultops.prom');
    for (const [t, value] of [
      [t1, 'one'],
      [t2, 'two'],
    ] as const) {
      await withCluster(t.inventory, async (c) => {
        await ensureKv(c);
        await kvPut(c, 'whoami', value);
      });
    }
  });
  afterAll(async () => {
    await Promise.all([t1?.destroy(), t2?.destroy()]);
  });

  it('--all-clusters backs up every cluster from its own leader, each snapshot verified with a manifest naming its cluster; one textfile holds both', async () => {
    const r = await cli.run(['backup', '-i', fleet, '--all-clusters', '--to', dir, '--textfile', prom, '--json']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const rep = JSON.parse(r.stdout) as FleetReport;
    expect(rep).toMatchObject({ result: 'success', exit_code: 0, concurrency: 4, succeeded: [c1, c2], failed: [] });
    expect(rep.clusters.map((c) => [c.cluster, c.result, c.exit_code, c.inventory])).toEqual([
      [c1, 'success', 0, fleet],
      [c2, 'success', 0, fleet],
    ]);
    for (const [c, t] of [
      [rep.clusters[0]!, t1!],
      [rep.clusters[1]!, t2!],
    ] as const) {
      expect(c.manifest!.cluster).toMatchObject({ name: c.cluster, cluster_name: c.cluster, flavor });
      // Each cluster's snapshot came from its own node, not from the other lab.
      expect(c.manifest!.leader.api_addr).toBe(t.lab.nodes[0]!.apiAddr);
      expect(JSON.parse(readFileSync(`${c.file!}.json`, 'utf8'))).toEqual(c.manifest);
      const v = await cli.run(['backups', 'verify', c.file!]);
      expect(v.code, v.stderr).toBe(ExitCode.ok);
      expect(v.stdout).toContain(`matches its manifest (cluster ${c.cluster})`);
    }
    expect(snaps(c1)).toHaveLength(1);
    expect(snaps(c2)).toHaveLength(1);
    expect(readdirSync(dir).filter((f) => f.endsWith('.partial'))).toEqual([]);

    const tf = readTextfile(prom);
    for (const c of rep.clusters) {
      expect(tf.value('vaultops_backup_last_result', c.cluster)).toBe('1');
      expect(tf.value('vaultops_backup_last_size_bytes', c.cluster)).toBe(String(c.manifest!.size));
      expect(tf.value('vaultops_backup_last_success_timestamp_seconds', c.cluster)).toBe(
        String(Date.parse(c.finished_at) / 1000),
      );
    }
    // node_exporter refuses a file that repeats a metric family's HELP/TYPE.
    expect([...tf.helpCounts.values()].every((n) => n === 1)).toBe(true);
    expect(tf.helpCounts.size).toBe(5);
    cli.expectNoSecrets(secrets);
  });

  it('--concurrency 1 backs the clusters up one after the other, --concurrency 2 side by side; without --json one line per cluster', async () => {
    const one = await cli.run([
      'backup',
      '-i',
      fleet,
      '--all-clusters',
      '--to',
      dir,
      '--concurrency',
      '1',
      '--json',
      '--quiet',
    ]);
    expect(one.code, one.stderr).toBe(ExitCode.ok);
    const r1 = JSON.parse(one.stdout) as FleetReport;
    expect(r1.concurrency).toBe(1);
    expect(r1.succeeded).toEqual([c1, c2]);
    expect(Date.parse(r1.clusters[1]!.started_at)).toBeGreaterThanOrEqual(Date.parse(r1.clusters[0]!.finished_at));

    const two = await cli.run([
      'backup',
      '-i',
      fleet,
      '--all-clusters',
      '--to',
      dir,
      '--concurrency',
      '2',
      '--json',
      '--quiet',
    ]);
    expect(two.code, two.stderr).toBe(ExitCode.ok);
    const r2 = JSON.parse(two.stdout) as FleetReport;
    expect(r2.succeeded).toEqual([c1, c2]);
    expect(Math.max(...r2.clusters.map((c) => Date.parse(c.started_at)))).toBeLessThan(
      Math.min(...r2.clusters.map((c) => Date.parse(c.finished_at))),
    );

    const human = await cli.run(['backup', '-i', fleet, '--all-clusters', '--to', dir, '--quiet']);
    expect(human.code, human.stderr).toBe(ExitCode.ok);
    const lines = human.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(
      new RegExp(`^ok\\s+${c1}\\s+${dir}/${c1}-\\d{8}T\\d{6}Z(-\\d+)?\\.snap\\s+[\\d.]+ MB in [\\d.]+ s$`),
    );
    expect(lines[1]).toMatch(new RegExp(`^ok\\s+${c2}\\s+${dir}/${c2}-\\S+\\.snap\\s`));
    expect(human.stderr).toBe('');
    expect(snaps(c1)).toHaveLength(4);
    expect(snaps(c2)).toHaveLength(4);
    cli.expectNoSecrets(secrets);
  });

  it('repeated --cluster and repeated -i pick the clusters in the order given; a single --cluster keeps the one-cluster output', async () => {
    const named = await cli.run([
      'backup',
      '-i',
      fleet,
      '--cluster',
      c2,
      '--cluster',
      c1,
      '--to',
      dir,
      '--json',
      '--quiet',
    ]);
    expect(named.code, named.stderr).toBe(ExitCode.ok);
    expect((JSON.parse(named.stdout) as FleetReport).clusters.map((c) => c.cluster)).toEqual([c2, c1]);

    const inventories = await cli.run([
      'backup',
      '-i',
      t1!.inventory,
      '-i',
      t2!.inventory,
      '--to',
      dir,
      '--json',
      '--quiet',
    ]);
    expect(inventories.code, inventories.stderr).toBe(ExitCode.ok);
    const ri = JSON.parse(inventories.stdout) as FleetReport;
    expect(ri.clusters.map((c) => [c.cluster, c.inventory])).toEqual([
      [c1, t1!.inventory],
      [c2, t2!.inventory],
    ]);

    const single = await cli.run(['backup', '-i', fleet, '--cluster', c1, '--to', dir, '--json', '--quiet']);
    expect(single.code, single.stderr).toBe(ExitCode.ok);
    const rs = JSON.parse(single.stdout) as Record<string, unknown>;
    expect(Object.keys(rs).sort()).toEqual(['cluster', 'exit_code', 'file', 'manifest', 'result']);
    expect(rs).toMatchObject({ result: 'success', exit_code: 0, cluster: c1 });
    const plain = await cli.run(['backup', '-i', fleet, '--cluster', c2, '--to', dir, '--quiet']);
    expect(plain.code, plain.stderr).toBe(ExitCode.ok);
    expect(plain.stdout).toMatch(new RegExp(`^${dir}/${c2}-\\S+\\.snap\\n$`));
    cli.expectNoSecrets(secrets);
  });

  it('bad input stops the whole run before any backup: an unknown cluster, a name in two inventories, --concurrency 0, --all-clusters with --cluster', async () => {
    const before = snaps().length;
    const cases: Array<[string[], RegExp]> = [
      [
        ['-i', fleet, '--cluster', c1, '--cluster', 'nope'],
        /No cluster "nope" in .*\n.*hint: Clusters: b-fleet-1, b-fleet-2\./,
      ],
      [['-i', fleet, '-i', t1!.inventory, '--all-clusters'], new RegExp(`Cluster ${c1} is in both`)],
      [['-i', fleet, '--all-clusters', '--concurrency', '0'], /--concurrency 0 is not a whole number >= 1/],
      [['-i', fleet, '--all-clusters', '--cluster', c1], /either --all-clusters or --cluster/],
    ];
    for (const [args, message] of cases) {
      const r = await cli.run(['backup', ...args, '--to', dir]);
      expect(r.code, r.stderr).toBe(ExitCode.badInput);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe('');
    }
    expect(snaps()).toHaveLength(before);
    cli.expectNoSecrets(secrets);
  });

  it('schedule backup --all-clusters prints one job for the whole inventory, keeping --all-clusters so clusters added later are backed up too', async () => {
    const r = await cli.run([
      'schedule',
      'backup',
      '-i',
      fleet,
      '--all-clusters',
      '--concurrency',
      '2',
      '--to',
      dir,
      '--format',
      'cron,systemd',
    ]);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const cron = r.stdout.split('\n').find((l) => /^\S+ \S+ \S+ \S+ \S+ \//.test(l))!;
    expect(cron).toContain(`backup -i ${fleet} --all-clusters --concurrency 2 --non-interactive --quiet --to ${dir}`);
    expect(cron).not.toContain('--cluster');
    expect(cron).toContain('>>/var/log/vaultops-backup-fleet-fleet.log');
    expect(r.stdout).toContain(`Description=vaultops: verified Raft snapshots of 2 clusters (${c1}, ${c2})`);
    cli.expectNoSecrets(secrets);
  });

  it('one cluster stopped: the other is still backed up, the run exits 3 naming the stopped cluster, each cluster gets its own webhook, the textfile keeps its last success', async () => {
    const got: Array<Record<string, unknown>> = [];
    const server: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        got.push(JSON.parse(body) as Record<string, unknown>);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const hookFile = join(t1!.stateDir, 'hook-url');
    writeFileSync(hookFile, `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`, { mode: 0o600 });
    try {
      const lastSuccess = readTextfile(prom).value('vaultops_backup_last_success_timestamp_seconds', c1);
      expect(lastSuccess).toBeDefined();
      await labDown(c1, () => undefined, t1!.env);
      const before1 = snaps(c1).length;
      const before2 = snaps(c2).length;

      const r = await cli.run([
        'backup',
        '-i',
        fleet,
        '--all-clusters',
        '--to',
        dir,
        '--textfile',
        prom,
        '--notify-url',
        `file:${hookFile}`,
        '--notify-on',
        'success,failure',
        '--json',
        '--quiet',
      ]);
      // The first failed cluster in inventory order sets the code: b-fleet-1, unreachable.
      expect(r.code, r.stderr).toBe(ExitCode.unreachable);
      const rep = JSON.parse(r.stdout) as FleetReport;
      expect(rep).toMatchObject({ result: 'failure', exit_code: ExitCode.unreachable, succeeded: [c2], failed: [c1] });
      expect(rep.clusters[0]).toMatchObject({ cluster: c1, result: 'failure', exit_code: ExitCode.unreachable });
      expect(rep.clusters[0]!.error).toContain(c1);
      expect(rep.clusters[0]!.file).toBeUndefined();
      expect(rep.clusters[1]).toMatchObject({ cluster: c2, result: 'success', exit_code: 0 });
      expect(r.stderr).toContain(`error: 1 of 2 clusters failed: ${c1} (exit 3).`);
      expect(snaps(c1)).toHaveLength(before1);
      expect(snaps(c2)).toHaveLength(before2 + 1);
      const v = await cli.run(['backups', 'verify', rep.clusters[1]!.file!]);
      expect(v.code, v.stderr).toBe(ExitCode.ok);
      expect(readdirSync(dir).filter((f) => f.endsWith('.partial'))).toEqual([]);

      const tf = readTextfile(prom);
      expect(tf.value('vaultops_backup_last_result', c1)).toBe('0');
      expect(tf.value('vaultops_backup_last_success_timestamp_seconds', c1)).toBe(lastSuccess);
      expect(tf.value('vaultops_backup_last_result', c2)).toBe('1');
      expect([...tf.helpCounts.values()].every((n) => n === 1)).toBe(true);

      expect(got.map((g) => [g['cluster'], g['result']]).sort()).toEqual([
        [c1, 'failure'],
        [c2, 'success'],
      ]);

      // The same run for a person: one line per cluster, the failure named on stdout and stderr.
      const human = await cli.run(['backup', '-i', fleet, '--cluster', c2, '--cluster', c1, '--to', dir, '--quiet']);
      expect(human.code).toBe(ExitCode.unreachable);
      const lines = human.stdout.trimEnd().split('\n');
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatch(new RegExp(`^ok\\s+${c2}\\s`));
      expect(lines[1]).toMatch(new RegExp(`^FAILED\\s+${c1}\\s+exit 3 after [\\d.]+ s: .*${c1}`));
      expect(human.stderr).toContain(`1 of 2 clusters failed: ${c1} (exit 3)`);
      expect(JSON.stringify(got)).not.toMatch(
        new RegExp(secrets.map((x) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')),
      );
    } finally {
      server.close();
    }
    cli.expectNoSecrets(secrets);
  });
});
