import { afterAll, describe, expect, it } from 'vitest';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { CliRunner } from '../helpers/cli.js';
import { ExitCode } from '../../src/core/exit-codes.js';
import { VaultApiError } from '../../src/core/errors.js';
import { connectCluster } from '../../src/cli/cluster-from-inventory.js';

/** Some suites (transit seal providers, quick drills) want a single node: it must come up, and status must say it cannot lose a node. */
const flavour = flavorsUnderTest()[0]!;

describe(`a one-node lab (${flavour.flavor})`, () => {
  let lab: TestLab | undefined;
  afterAll(async () => {
    await lab?.destroy();
  });

  it('comes up unsealed and is reported degraded only for its failure tolerance of 0', async () => {
    lab = await startTestLab({ name: 'e-single', flavor: flavour.flavor, version: flavour.version, nodes: 1 });
    const cli = new CliRunner({ env: lab.env, cwd: lab.stateDir });
    const r = await cli.run(['status', '-i', lab.inventory, '--json']);
    expect(r.code).toBe(ExitCode.degraded);
    const st = JSON.parse(r.stdout);
    expect(st.leader).toBe('n1');
    expect(st.autopilot.failureTolerance).toBe(0);
    expect(st.problems).toEqual(['failure tolerance is 0: losing one more node loses quorum']);
    cli.expectNoSecrets(lab.secrets);
  });

  it('a client without a token sends none, even when VAULT_TOKEN holds a valid one', async () => {
    const before = { token: process.env['VAULT_TOKEN'], ns: process.env['VAULT_NAMESPACE'] };
    process.env['VAULT_TOKEN'] = lab!.init.root_token;
    delete process.env['VAULT_NAMESPACE'];
    try {
      const { client } = await connectCluster(lab!.inventory, undefined);
      const node = client.client('n1').withToken(undefined);
      expect(node.hasToken).toBe(false);
      const attempt = () =>
        node.raftConfiguration().then(
          () => 'answered 200',
          (x: unknown) => x,
        );
      // Without a token the server answers 403; with the environment's root token it would answer 200.
      const e = await attempt();
      expect(e).toBeInstanceOf(VaultApiError);
      expect((e as VaultApiError).message).toMatch(/answered 403/);
      // Nor is $VAULT_NAMESPACE sent (OpenBao would answer 400 for a namespace on this path).
      process.env['VAULT_NAMESPACE'] = 'not-a-namespace';
      expect(((await attempt()) as VaultApiError).message).toMatch(/answered 403/);
      client.close();
    } finally {
      if (before.token === undefined) delete process.env['VAULT_TOKEN'];
      else process.env['VAULT_TOKEN'] = before.token;
      if (before.ns === undefined) delete process.env['VAULT_NAMESPACE'];
      else process.env['VAULT_NAMESPACE'] = before.ns;
    }
  });
});
