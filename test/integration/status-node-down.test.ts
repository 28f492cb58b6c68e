import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectCluster } from '../../src/cli/cluster-from-inventory.js';
import type { ClusterStatus } from '../../src/vault/cluster.js';
import { ExitCode } from '../../src/core/exit-codes.js';
import { CliRunner, isAlive, labSecrets, waitFor } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';

const short = { openbao: 'bao', vault: 'vault' } as const;

describe.each(flavorsUnderTest())('a $flavor $version lab with one node stopped', ({ flavor, version }) => {
  const name = `a-down-${short[flavor]}`;
  let t: TestLab;
  let cli: CliRunner;
  let secrets: string[];
  let stopped: string;

  beforeAll(async () => {
    t = await startTestLab({ name, flavor, version });
    cli = new CliRunner({ env: t.env, cwd: t.stateDir });
    secrets = labSecrets(t.lab.initFile);
    // Stop a standby the way an operator's `kill` or a crash would: SIGTERM to its pid.
    const { client } = await connectCluster(t.inventory, undefined);
    const leader = await client.findLeader().finally(() => client.close());
    const victim = t.lab.nodes.find((n) => n.name !== leader.node.name)!;
    stopped = victim.name;
    process.kill(victim.pid!, 'SIGTERM');
    await waitFor(
      `${victim.name} (pid ${victim.pid}) to exit`,
      () => (isAlive(victim.pid!) ? undefined : true),
      30_000,
    );
  });
  afterAll(async () => {
    await t?.destroy();
  });

  it('ClusterClient.status() reports the node unreachable and the cluster unreachable, leader still found', async () => {
    const { client } = await connectCluster(t.inventory, undefined);
    let st: ClusterStatus;
    try {
      st = await client.status();
    } finally {
      client.close();
    }
    expect(st.health).toBe('unreachable');
    const down = st.nodes.find((n) => n.name === stopped)!;
    expect(down).toMatchObject({ reachable: false, state: 'unreachable', leader: false });
    expect(down.error).toContain('refused the connection');
    expect(st.problems).toContain(`${stopped} is unreachable: ${down.error}`);
    expect(st.leader).toBeDefined();
    expect(st.leader).not.toBe(stopped);
    for (const n of st.nodes.filter((x) => x.name !== stopped))
      expect(n).toMatchObject({ reachable: true, sealed: false });
  });

  it('`vaultops status` exits 3 and shows the node as unreachable, not a crash', async () => {
    const r = await cli.run(['status', '-i', t.inventory]);
    expect(r.code).toBe(ExitCode.unreachable);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/: UNREACHABLE; leader n[123]/);
    expect(r.stdout).toMatch(new RegExp(`^${stopped}\\s+\\S+\\s+-\\s+unreachable\\s+unreachable`, 'm'));
    expect(r.stdout).toContain(`! ${stopped} is unreachable:`);
    expect(r.stdout).not.toMatch(/at .*\.js:\d+/);
  });

  it('`vaultops status --json` exits 3 too', async () => {
    const r = await cli.run(['status', '-i', t.inventory, '--json']);
    expect(r.code).toBe(ExitCode.unreachable);
    const st = JSON.parse(r.stdout) as ClusterStatus;
    expect(st.nodes.find((n) => n.name === stopped)?.reachable).toBe(false);
  });

  it('no CLI output of this file contains an unseal key (base64 or hex) or the root token', () => {
    cli.expectNoSecrets(secrets);
  });
});
