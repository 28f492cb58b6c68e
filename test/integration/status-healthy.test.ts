import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectCluster } from '../../src/cli/cluster-from-inventory.js';
import { ensureLabCa } from '../../src/lab/certs.js';
import { labUp, readLab } from '../../src/lab/lab.js';
import type { ClusterStatus } from '../../src/vault/cluster.js';
import { ExitCode } from '../../src/core/exit-codes.js';
import { CliRunner, labSecrets } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';

const short = { openbao: 'bao', vault: 'vault' } as const;

describe.each(flavorsUnderTest())('a healthy $flavor $version lab', ({ flavor, version }) => {
  const name = `a-health-${short[flavor]}`;
  let t: TestLab;
  let cli: CliRunner;
  let secrets: string[];

  beforeAll(async () => {
    t = await startTestLab({ name, flavor, version });
    cli = new CliRunner({ env: t.env, cwd: t.stateDir });
    secrets = labSecrets(t.lab.initFile);
  });
  afterAll(async () => {
    await t?.destroy();
  });

  it('ClusterClient.status() reports 3 unsealed voters, one leader, autopilot healthy with failure tolerance 1', async () => {
    const { client } = await connectCluster(t.inventory, undefined);
    let st: ClusterStatus;
    let leader: string;
    try {
      st = await client.status();
      leader = (await client.findLeader()).node.name;
    } finally {
      client.close();
    }
    expect(st.health).toBe('healthy');
    expect(st.problems).toEqual([]);
    expect(st.nodes.map((n) => n.name)).toEqual(['n1', 'n2', 'n3']);
    expect(st.nodes.map((n) => n.address)).toEqual(t.lab.nodes.map((n) => n.apiAddr));
    for (const n of st.nodes) {
      expect(n).toMatchObject({
        reachable: true,
        initialized: true,
        sealed: false,
        voter: true,
        healthy: true,
        version,
      });
      expect(['active', 'standby']).toContain(n.state);
    }
    expect(st.nodes.filter((n) => n.leader).map((n) => n.name)).toEqual([st.leader]);
    expect(st.nodes.filter((n) => n.state === 'active')).toHaveLength(1);
    expect(leader).toBe(st.leader);
    expect(st.autopilot).toEqual({ healthy: true, failureTolerance: 1, voters: 3 });
    expect(st.clusterName).toBe(name);
  });

  it('`vaultops status` exits 0, marks the leader and shows every node unsealed', async () => {
    const r = await cli.run(['status', '-i', t.inventory]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(ExitCode.ok);
    expect(r.stdout).toMatch(
      new RegExp(
        `Cluster ${name} \\(${name}\\): HEALTHY; leader n[123]; autopilot healthy, failure tolerance 1, 3 voters`,
      ),
    );
    const rows = r.stdout.split('\n').filter((l) => /^n[123]/.test(l));
    expect(rows).toHaveLength(3);
    expect(rows.filter((l) => /^n[123] \*/.test(l))).toHaveLength(1);
    for (const row of rows)
      expect(row).toMatch(new RegExp(`${version.replace(/\./g, '\\.')}\\s+unsealed\\s+(active|standby)\\s+yes`));
  });

  it('`vaultops status --json` gives the same picture as data', async () => {
    const r = await cli.run(['status', '-i', t.inventory, '--json']);
    expect(r.code).toBe(ExitCode.ok);
    const st = JSON.parse(r.stdout) as ClusterStatus;
    expect(st.health).toBe('healthy');
    expect(st.nodes.map((n) => [n.name, n.voter, n.sealed])).toEqual([
      ['n1', true, false],
      ['n2', true, false],
      ['n3', true, false],
    ]);
    expect(st.autopilot?.failureTolerance).toBe(1);
  });

  it('`lab up` on the running lab says so and changes nothing', async () => {
    const before = fingerprint(t);
    const r = await cli.run(['lab', 'up', '--name', name, '--flavor', flavor, '--version', version]);
    expect(r.code).toBe(ExitCode.ok);
    expect(r.stdout).toContain(`Lab ${name}`);
    expect(r.stdout).toContain('already running; nothing to do');
    expect(r.stderr).not.toMatch(/Starting|Initialising|Unsealing/);
    // The library call says the same.
    const again = await labUp({
      name,
      flavor,
      version,
      binary: t.lab.binary,
      tls: true,
      inventory: t.inventory,
      env: t.env,
    });
    expect(again).toMatchObject({ created: false, alreadyRunning: true });
    expect(fingerprint(t)).toEqual(before);
    // Asking for another flavour of a running lab is refused, not silently ignored.
    const other = flavor === 'openbao' ? 'vault' : 'openbao';
    const refused = await cli.run(['lab', 'up', '--name', name, '--flavor', other]);
    expect(refused.code).toBe(ExitCode.badInput);
    expect(refused.stderr).toMatch(/is running .* not /);
    expect(fingerprint(t)).toEqual(before);
  });

  it('an inventory pointing at another CA fails TLS verification and names the CA it expected', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vaultops-test-otherca-'));
    try {
      const other = await ensureLabCa(dir, 'a-other');
      const inv = join(dir, 'other-ca.yml');
      const text = readFileSync(t.inventory, 'utf8');
      expect(text).toContain(t.lab.caCert!);
      writeFileSync(inv, text.replace(t.lab.caCert!, other.caCert));
      const r = await cli.run(['status', '-i', inv]);
      expect(r.code).toBe(ExitCode.unreachable);
      for (const n of t.lab.nodes) {
        const line = r.stdout.split('\n').find((l) => l.startsWith(`! ${n.name} is unreachable`));
        expect(line).toBeDefined();
        expect(line).toContain(`TLS verification of ${n.apiAddr} failed`);
        expect(line).toContain('expected a certificate signed by O=vaultops lab, CN=vaultops lab CA a-other');
        expect(line).toContain(`got one issued by O=vaultops lab, CN=vaultops lab CA ${name}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('no CLI output of this file contains an unseal key (base64 or hex) or the root token', () => {
    cli.expectNoSecrets(secrets);
  });
});

/** What `lab up` must not touch on a running lab: pids, keys, configs, inventory. */
function fingerprint(t: TestLab): unknown {
  const lab = readLab(t.lab.name, t.env)!;
  const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
  return {
    pids: lab.nodes.map((n) => n.pid),
    init: [sha(lab.initFile), statSync(lab.initFile).mtimeMs, statSync(lab.initFile).mode & 0o777],
    configs: lab.nodes.map((n) => sha(n.config)),
    inventory: [sha(t.inventory), statSync(t.inventory).mtimeMs],
  };
}
