import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { CheckReport } from '../../src/check/run-check.js';
import type { CheckResult } from '../../src/check/check-result.js';
import { ExitCode } from '../../src/core/exit-codes.js';
import { ensureBinary } from '../../src/lab/binaries.js';
import { labDestroy, labDir, labUp, type LabRecord } from '../../src/lab/lab.js';
import { hardenLab, productionLikeConfig } from '../../src/lab/production-like.js';
import { LAB_SERVER_USER } from '../../src/lab/run-as.js';
import { CliRunner, labSecrets } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';

const short = { openbao: 'bao', vault: 'vault' } as const;

const byId = (r: CheckReport, id: string, target = 'cluster'): CheckResult => {
  const c = r.checks.find((x) => x.id === id && x.target === target);
  if (!c) throw new Error(`no check ${id} for ${target}`);
  return c;
};

/**
 * `vaultops check` on two real labs with real sshd hosts: the default lab started with --no-tls
 * (fails for the right reasons) and a production-like lab (passes what this machine allows).
 */
describe.each(flavorsUnderTest())('readiness check of $flavor $version labs', ({ flavor, version }) => {
  let plain: TestLab;
  let prod: { lab: LabRecord; inventory: string; env: NodeJS.ProcessEnv; stateDir: string };
  let cli: CliRunner;
  let prodCli: CliRunner;
  const secrets: string[] = [];
  const prodName = `f-chkp-${short[flavor]}`;

  beforeAll(async () => {
    plain = await startTestLab({ name: `f-chk-${short[flavor]}`, flavor, version, tls: false, ssh: true });
    const stateDir = mkdtempSync(join(tmpdir(), `vaultops-test-${prodName}-`));
    const env = { ...process.env, VAULTOPS_STATE_DIR: stateDir };
    const bin = await ensureBinary({ flavor, version, env });
    const inventory = join(stateDir, `${prodName}.yml`);
    const { lab } = await labUp({
      name: prodName,
      flavor,
      version,
      binary: bin.path,
      tls: true,
      ssh: true,
      inventory,
      env,
      extraConfig: productionLikeConfig(flavor, labDir(prodName, env)),
      runAs: LAB_SERVER_USER,
    });
    prod = { lab, inventory, env, stateDir };
    await hardenLab(lab, () => undefined);
    secrets.push(
      ...labSecrets(plain.lab.initFile),
      ...labSecrets(lab.initFile),
      (JSON.parse(readFileSync(lab.tokenFile!, 'utf8')) as { token: string }).token,
    );
    cli = new CliRunner({ env: plain.env, cwd: plain.stateDir });
    prodCli = new CliRunner({ env, cwd: stateDir });
  });

  afterAll(async () => {
    cli?.expectNoSecrets(secrets);
    prodCli?.expectNoSecrets(secrets);
    await plain?.destroy();
    if (prod) {
      await labDestroy(prodName, () => undefined, prod.env);
      rmSync(prod.stateDir, { recursive: true, force: true });
    }
  });

  it('fails the default lab for the right reasons: no TLS, no audit device, the init root token, autopilot, metrics, no backup', async () => {
    const md = join(plain.stateDir, 'check.md');
    const html = join(plain.stateDir, 'check.html');
    const r = await cli.run(['check', '-i', plain.inventory, '--json', '--markdown', md, '--html', html]);
    expect(r.code, r.stderr).toBe(ExitCode.failed);
    const report = JSON.parse(r.stdout) as CheckReport;
    expect(report.result).toBe('failed');
    for (const n of ['n1', 'n2', 'n3']) {
      expect(byId(report, 'tls.listener', n).status).toBe('fail');
      expect(byId(report, 'tls.certificate', n).status).toBe('skip');
    }
    expect(byId(report, 'audit.devices')).toMatchObject({ status: 'fail', severity: 'critical' });
    expect(byId(report, 'audit.devices').found).toMatch(/no audit device/);
    expect(byId(report, 'tokens.root').status).toBe('fail');
    expect(byId(report, 'tokens.root').found).toMatch(/1 root token/);
    expect(byId(report, 'autopilot.config').found).toMatch(/cleanup_dead_servers is off/);
    expect(byId(report, 'telemetry.metrics').status).toBe('fail');
    expect(byId(report, 'backup.age').status).toBe('fail');
    expect(byId(report, 'drill.age').status).toBe('fail');
    expect(byId(report, 'raft.voters').status).toBe('pass');
    expect(byId(report, 'raft.failure-tolerance').status).toBe('pass');
    expect(byId(report, 'ha.zones').status).toBe('pass');
    expect(byId(report, 'seal.config').status).toBe('pass');
    // Host facts over the lab's real sshd: the servers run as whoever started the lab.
    if (process.getuid?.() === 0) expect(byId(report, 'host.server-user', 'n1').status).toBe('fail');
    // Lab configs are written 0600 (a transit-sealed lab's config holds its seal token), so the
    // default lab passes the permission check; production-like labs keep them 0640.
    expect(byId(report, 'host.permissions', 'n1').status, byId(report, 'host.permissions', 'n1').found).toBe('pass');
    for (const c of report.checks) expect(c.fix.length, c.id).toBeGreaterThan(10);
    expect(readFileSync(md, 'utf8')).toContain('| FAIL | critical | `audit.devices`');
    expect(readFileSync(html, 'utf8')).toContain('<svg');
    const table = await cli.run(['check', '-i', plain.inventory]);
    expect(table.code).toBe(ExitCode.failed);
    expect(table.stdout).toMatch(/^FAIL\s+critical\s+audit\.devices/m);
    expect(table.stdout).toContain('How to fix:');
  });

  it('version.support judges by the upstream release list (a local server answering as upstream does); --offline by the bundled list', async () => {
    const fixtures = join(import.meta.dirname, '..', 'fixtures', 'releases');
    const server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(readFileSync(join(fixtures, req.url === '/vault' ? 'vault.json' : 'openbao.json')));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      const env = {
        ...plain.env,
        VAULTOPS_CACHE_DIR: mkdtempSync(join(plain.stateDir, 'cache-')),
        VAULTOPS_RELEASES_URL_VAULT: `${base}/vault`,
        VAULTOPS_RELEASES_URL_OPENBAO: `${base}/openbao`,
      };
      const upstream = new CliRunner({ env, cwd: plain.stateDir });
      const newest = { openbao: '2.7.4', vault: '1.21.4' }[flavor];
      const offline = await upstream.run(['check', '-i', plain.inventory, '--json', '--offline']);
      const o = byId(JSON.parse(offline.stdout) as CheckReport, 'version.support');
      expect(o.status, o.found).toBe('pass');
      expect(o.found).toContain('bundled with vaultops');
      const online = await upstream.run(['check', '-i', plain.inventory, '--json']);
      const v = byId(JSON.parse(online.stdout) as CheckReport, 'version.support');
      expect(v.status, v.found).toBe('fail');
      expect(v.found).toContain(`${newest} is the newest of its line`);
      expect(v.found).toContain('upstream release list');
      upstream.expectNoSecrets(secrets);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('passes the production-like lab on what the lab can fix: TLS chain, two audit devices, no root token, metrics, autopilot, permissions', async () => {
    const r = await prodCli.run(['check', '-i', prod.inventory, '--json']);
    const report = JSON.parse(r.stdout) as CheckReport;
    for (const n of ['n1', 'n2', 'n3']) {
      expect(byId(report, 'tls.listener', n).status).toBe('pass');
      expect(byId(report, 'tls.certificate', n).status).toBe('pass');
      expect(byId(report, 'host.permissions', n).status).toBe('pass');
      expect(byId(report, 'host.core-dumps', n).status).not.toBe('unknown');
      // The production-like lab runs its servers as an unprivileged account (run-as.ts), as the checklist asks.
      expect(byId(report, 'host.server-user', n).status, byId(report, 'host.server-user', n).found).toBe('pass');
    }
    for (const id of [
      'audit.devices',
      'tokens.root',
      'telemetry.metrics',
      'autopilot.config',
      'raft.voters',
      'raft.failure-tolerance',
      'seal.config',
      'ha.zones',
    ])
      expect(byId(report, id).status, `${id}: ${byId(report, id).found}`).toBe('pass');
    expect(byId(report, 'audit.devices').found).toMatch(/^2 enabled/);
  });

  it('passes backup.age and drill.age after a verified backup and a passed drill of the production-like lab (its inventory uses the lab-admin token)', async () => {
    // At most two labs at a time: the drill's scratch cluster is the second one.
    await plain.destroy();
    const inv = parse(readFileSync(prod.inventory, 'utf8')) as { clusters: Record<string, Record<string, unknown>> };
    inv.clusters[prodName]!['stores'] = { local: { type: 'dir', path: join(prod.stateDir, 'backups') } };
    const file = join(prod.stateDir, 'with-store.yml');
    writeFileSync(file, stringify(inv));
    const b = await prodCli.run(['backup', '-i', file]);
    expect(b.code, b.stderr).toBe(ExitCode.ok);
    const d = await prodCli.run(['drill', '-i', file, '--non-interactive'], { timeoutMs: 400_000 });
    expect(d.code, d.stderr).toBe(ExitCode.ok);
    expect(d.stdout).toMatch(/Drill of .*: PASSED\. RTO [\d.]+ s, RPO [\d.]+ s\./);
    const r = await prodCli.run(['check', '-i', file, '--json']);
    const report = JSON.parse(r.stdout) as CheckReport;
    expect(byId(report, 'backup.age').status, byId(report, 'backup.age').found).toBe('pass');
    expect(byId(report, 'drill.age').status, byId(report, 'drill.age').found).toBe('pass');
  });

  it('reports the checks of an unreachable host as unknown, never as passed', async () => {
    const inv = parse(readFileSync(prod.inventory, 'utf8')) as {
      clusters: Record<string, { nodes: { name: string; ssh?: { port?: number } }[] }>;
    };
    // Nothing listens on port 1 of the node's loopback address: the connection is refused.
    inv.clusters[prodName]!.nodes.find((n) => n.name === 'n2')!.ssh!.port = 1;
    const file = join(prod.stateDir, 'unreachable.yml');
    writeFileSync(file, stringify(inv));
    const r = await prodCli.run(['check', '-i', file, '--json', '--fail-on', 'warning']);
    expect(r.code).not.toBe(ExitCode.ok);
    const report = JSON.parse(r.stdout) as CheckReport;
    const n2 = report.checks.filter((c) => c.target === 'n2' && c.id.startsWith('host.'));
    expect(n2.length).toBeGreaterThanOrEqual(8);
    expect(n2.every((c) => c.status === 'unknown')).toBe(true);
    expect(n2[0]!.found).toMatch(/SSH to .*:1 failed/);
    expect(byId(report, 'host.permissions', 'n1').status).toBe('pass');
    expect(report.summary.unknown).toBeGreaterThanOrEqual(8);
  });
});
