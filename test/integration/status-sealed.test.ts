import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectCluster } from '../../src/cli/cluster-from-inventory.js';
import type { ClusterStatus } from '../../src/vault/cluster.js';
import { ExitCode } from '../../src/core/exit-codes.js';
import { CliRunner, labSecrets } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { sealActiveNode, startTestLab, type TestLab } from '../helpers/lab.js';

const short = { openbao: 'bao', vault: 'vault' } as const;

describe.each(flavorsUnderTest())('a $flavor $version lab with a sealed node', ({ flavor, version }) => {
  const name = `a-sealed-${short[flavor]}`;
  let t: TestLab;
  let cli: CliRunner;
  let secrets: string[];
  let sealed: string;

  beforeAll(async () => {
    t = await startTestLab({ name, flavor, version });
    cli = new CliRunner({ env: t.env, cwd: t.stateDir });
    secrets = labSecrets(t.lab.initFile);
    // Vault does not forward sys/seal from a standby, so seal the active node: a standby takes over.
    sealed = await sealActiveNode(t.inventory);
  });
  afterAll(async () => {
    await t?.destroy();
  });

  it('ClusterClient.status() reports the node sealed and the cluster degraded, with the new leader', async () => {
    const { client } = await connectCluster(t.inventory, undefined);
    let st: ClusterStatus;
    let leader: string;
    try {
      st = await client.status();
      leader = (await client.findLeader()).node.name;
    } finally {
      client.close();
    }
    expect(st.health).toBe('degraded');
    expect(st.nodes.find((n) => n.name === sealed)).toMatchObject({
      reachable: true,
      state: 'sealed',
      sealed: true,
      leader: false,
    });
    expect(st.problems).toContain(`${sealed} is sealed`);
    expect(st.leader).toBe(leader);
    expect(leader).not.toBe(sealed);
  });

  it('`vaultops status` exits 5 and shows the seal state', async () => {
    const r = await cli.run(['status', '-i', t.inventory]);
    expect(r.code).toBe(ExitCode.degraded);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/: DEGRADED; leader n[123]/);
    expect(r.stdout).toMatch(new RegExp(`^${sealed}\\s+\\S+\\s+\\S+\\s+sealed\\s+sealed`, 'm'));
    expect(r.stdout).toContain(`! ${sealed} is sealed`);
  });

  it('`vaultops status --json` exits 5 too', async () => {
    const r = await cli.run(['status', '-i', t.inventory, '--json']);
    expect(r.code).toBe(ExitCode.degraded);
    expect((JSON.parse(r.stdout) as ClusterStatus).health).toBe('degraded');
  });

  it('no CLI output of this file contains an unseal key (base64 or hex) or the root token', () => {
    cli.expectNoSecrets(secrets);
  });
});
