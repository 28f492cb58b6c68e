import { afterAll, describe, expect, it } from 'vitest';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { CliRunner } from '../helpers/cli.js';
import { ExitCode } from '../../src/core/exit-codes.js';

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
});
