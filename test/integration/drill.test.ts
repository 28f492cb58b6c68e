import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ExitCode } from '../../src/core/exit-codes.js';
import type { DrillReport } from '../../src/drill/run-drill.js';
import { CliRunner, labSecrets, processesUnder } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { ensureKv, kvPut, withCluster } from '../helpers/backup-lab.js';

const short = { openbao: 'bao', vault: 'vault' } as const;

/**
 * `vaultops drill` against a real lab with a real backup: the scratch cluster is another real lab of
 * the backup's flavour and version, started and torn down by the drill itself.
 */
describe.each(flavorsUnderTest())('DR drill of a $flavor $version lab', ({ flavor, version }) => {
  let t: TestLab;
  let cli: CliRunner;
  let secrets: string[];
  let inventory: string;
  let wrongCanary: string;
  let reportDir: string;
  const canaryValue = `canary-${randomBytes(12).toString('hex')}`;
  const hooks: unknown[] = [];
  let hook: Server;

  beforeAll(async () => {
    t = await startTestLab({ name: `f-drill-${short[flavor]}`, flavor, version });
    hook = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        hooks.push(JSON.parse(body));
        res.end('ok');
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const port = (hook.address() as { port: number }).port;
    cli = new CliRunner({ env: { ...t.env, DRILL_HOOK: `http://127.0.0.1:${port}/hook` }, cwd: t.stateDir });
    secrets = [...labSecrets(t.lab.initFile), canaryValue];
    await withCluster(t.inventory, async (c) => {
      await ensureKv(c);
      await kvPut(c, 'canary', canaryValue);
      await kvPut(c, 'other', 'second canary');
    });
    const inv = parse(readFileSync(t.inventory, 'utf8')) as { clusters: Record<string, Record<string, unknown>> };
    const cluster = inv.clusters[t.lab.name]!;
    cluster['stores'] = { local: { type: 'dir', path: join(t.stateDir, 'backups') } };
    cluster['canaries'] = [
      { path: 'kv/canary', field: 'value', expect_sha256: createHash('sha256').update(canaryValue).digest('hex') },
      // No expected hash: compared with the live cluster's value.
      { path: 'kv/other', field: 'value' },
    ];
    inventory = join(t.stateDir, 'drill.yml');
    writeFileSync(inventory, stringify(inv));
    (cluster['canaries'] as { expect_sha256?: string }[])[0]!.expect_sha256 = createHash('sha256')
      .update('something else')
      .digest('hex');
    wrongCanary = join(t.stateDir, 'wrong-canary.yml');
    writeFileSync(wrongCanary, stringify(inv));
    reportDir = join(t.stateDir, 'reports');
    const r = await cli.run(['backup', '-i', inventory, '--json']);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
  });

  afterAll(async () => {
    hook?.close();
    cli?.expectNoSecrets(secrets);
    await t?.destroy();
  });

  it('restores the newest backup into a scratch cluster, checks canaries and the Raft index, writes three reports with RTO and RPO, and leaves nothing running', async () => {
    const r = await cli.run(['drill', '-i', inventory, '--report-dir', reportDir, '--non-interactive', '--json'], {
      timeoutMs: 400_000,
    });
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const report = JSON.parse(r.stdout) as DrillReport & { reports: { json: string; markdown: string; html: string } };
    expect(report.result).toBe('passed');
    expect(report.phases.map((p) => p.name)).toEqual([
      'verify',
      'provision',
      'restore',
      'unseal',
      'canaries',
      'raft-index',
      'teardown',
    ]);
    expect(report.phases.every((p) => p.result === 'ok')).toBe(true);
    expect(report.rto_basis).toBe('first-canary-read');
    expect(report.rto_ms).toBeGreaterThan(0);
    expect(report.rpo_ms).toBeGreaterThanOrEqual(0);
    expect(report.canaries.map((c) => [c.path, c.result, c.expected_from])).toEqual([
      ['kv/canary', 'match', 'inventory'],
      ['kv/other', 'match', 'live-cluster'],
    ]);
    expect(report.raft?.ok).toBe(true);
    expect(report.raft!.restored_index!).toBeGreaterThanOrEqual(report.raft!.manifest_index);
    expect(report.backup?.key_set).toBe(`${t.lab.name}-init`);
    expect(report.scratch).toMatchObject({ flavor, version, torn_down: true, processes_left: 0 });
    expect(processesUnder(report.scratch!.dir)).toEqual([]);
    expect(existsSync(report.scratch!.dir)).toBe(false);
    for (const f of Object.values(report.reports)) expect(existsSync(f)).toBe(true);
    const html = readFileSync(report.reports.html, 'utf8');
    expect(html).toContain('<svg');
    expect(html).toContain('RTO');
    expect(html).not.toMatch(/<(script|link)\b|src="http/);
    const md = readFileSync(report.reports.markdown, 'utf8');
    expect(md).toContain('RPO');
    expect(md).toContain('| Restore snapshot | ok |');
    for (const f of Object.values(report.reports))
      for (const s of secrets) expect(readFileSync(f, 'utf8')).not.toContain(s);
  });

  it('fails naming the canary path (never its value) when a canary differs after the restore, tears down and sends the webhook', async () => {
    hooks.length = 0;
    const r = await cli.run(
      ['drill', '-i', wrongCanary, '--report-dir', reportDir, '--notify-url', 'env:DRILL_HOOK', '--non-interactive'],
      { timeoutMs: 400_000 },
    );
    expect(r.code).toBe(ExitCode.failed);
    expect(r.stderr).toContain('kv/canary');
    expect(r.stderr).not.toContain('kv/other ');
    expect(`${r.stdout}${r.stderr}`).not.toContain(canaryValue);
    const json = readdirSync(reportDir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => JSON.parse(readFileSync(join(reportDir, f), 'utf8')) as DrillReport);
    const failed = json.find((x) => x.result === 'failed')!;
    expect(failed.failed_phase).toBe('canaries');
    expect(failed.canaries.find((c) => c.path === 'kv/canary')?.result).toBe('mismatch');
    expect(failed.scratch?.torn_down).toBe(true);
    expect(processesUnder(failed.scratch!.dir)).toEqual([]);
    expect(hooks).toHaveLength(1);
    expect(hooks[0]).toMatchObject({ event: 'vaultops.drill', result: 'failure', failed_phase: 'canaries' });
    expect(JSON.stringify(hooks)).not.toContain(canaryValue);
  });

  it("runs as a playbook through the engine (playbooks/dr-drill.yml), unattended, reports in the run's report dir", async () => {
    const dir = join(t.stateDir, 'playbook-reports');
    const r = await cli.run(['run', 'dr-drill', '-i', inventory, '--non-interactive', '--var', `report_dir=${dir}`], {
      timeoutMs: 400_000,
    });
    expect(r.code, `${r.stdout}${r.stderr}`).toBe(ExitCode.ok);
    expect(`${r.stdout}${r.stderr}`).toMatch(/drill passed: RTO/);
    const reports = readdirSync(dir);
    expect(reports.filter((f) => /\.(json|md|html)$/.test(f))).toHaveLength(3);
    const report = JSON.parse(
      readFileSync(
        join(
          dir,
          reports.find((f) => f.endsWith('.json'))!,
        ),
        'utf8',
      ),
    ) as DrillReport;
    expect(report.result).toBe('passed');
    expect(processesUnder(report.scratch!.dir)).toEqual([]);
  });

  it('tears the scratch cluster down and says where it stopped when it does not come up', async () => {
    // A fake, and the only one here: a server binary that answers `version` but exits at once on
    // `server` stands for a scratch cluster that cannot start (a real binary cannot be told to fail).
    const fake = join(t.stateDir, 'broken-server');
    writeFileSync(
      fake,
      `#!/bin/sh\nif [ "$1" = version ]; then exec ${t.lab.binary} version; fi\necho "refusing to start" >&2\nexit 1\n`,
    );
    chmodSync(fake, 0o755);
    const broken = new CliRunner({ env: { ...t.env, VAULTOPS_VAULT_BINARY: fake }, cwd: t.stateDir });
    const r = await broken.run(['drill', '-i', inventory, '--report-dir', reportDir, '--non-interactive', '--json']);
    cli.log.push(...broken.log);
    expect(r.code).toBe(ExitCode.failed);
    const report = JSON.parse(r.stdout) as DrillReport;
    expect(report.failed_phase).toBe('provision');
    expect(report.phases.map((p) => [p.name, p.result])).toEqual([
      ['verify', 'ok'],
      ['provision', 'failed'],
      ['teardown', 'ok'],
    ]);
    expect(report.error).toMatch(/exited right after it was started/);
    expect(report.scratch?.torn_down).toBe(true);
    expect(processesUnder(report.scratch!.dir)).toEqual([]);
  });

  it('schedule drill prints a weekly cron line, a systemd service and timer, and a Kubernetes CronJob running `vaultops drill` unattended', async () => {
    const r = await cli.run([
      'schedule',
      'drill',
      '-i',
      inventory,
      '--notify-url',
      'env:DRILL_HOOK',
      '--image',
      'registry.example.org/vaultops:0.1.0',
    ]);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect(r.stdout).toMatch(
      /^\d+ \d+ \* \* [0-6] .* drill -i .* --non-interactive --quiet --notify-url env:DRILL_HOOK/m,
    );
    expect(r.stdout).toMatch(/OnCalendar=(Sun|Mon|Tue|Wed|Thu|Fri|Sat) \*-\*-\* \d\d:\d\d:00/);
    expect(r.stdout).toContain('kind: CronJob');
    const refused = await cli.run([
      'schedule',
      'drill',
      '-i',
      inventory,
      '--notify-url',
      'https://hooks.example/T0KEN',
    ]);
    expect(refused.code).toBe(ExitCode.badInput);
  });

  it('fails at verification when the newest snapshot in the store is corrupt, with nothing started', async () => {
    const store = join(t.stateDir, 'backups');
    const newest = readdirSync(store)
      .filter((f) => f.endsWith('.snap'))
      .sort()
      .pop()!;
    const bad = join(t.stateDir, 'corrupt-store');
    mkdirSync(bad, { recursive: true });
    for (const ext of ['', '.json', '.sha256']) copyFileSync(join(store, newest + ext), join(bad, newest + ext));
    const bytes = readFileSync(join(bad, newest));
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    writeFileSync(join(bad, newest), bytes);
    const scratchRoot = join(t.stateDir, 'drills', '.scratch');
    const before = existsSync(scratchRoot) ? readdirSync(scratchRoot) : [];
    const r = await cli.run([
      'drill',
      '-i',
      inventory,
      '--from',
      bad,
      '--report-dir',
      reportDir,
      '--non-interactive',
      '--json',
    ]);
    expect(r.code).not.toBe(ExitCode.ok);
    const report = JSON.parse(r.stdout) as DrillReport;
    expect(report.failed_phase).toBe('verify');
    expect(report.phases.map((p) => p.name)).toEqual(['verify']);
    expect(report.scratch).toBeUndefined();
    expect(report.rto_basis).toBe('not-reached');
    expect(r.stderr).toMatch(/fails verification/);
    expect(existsSync(scratchRoot) ? readdirSync(scratchRoot) : []).toEqual(before);
  });
});
