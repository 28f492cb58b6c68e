import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ensureBinary } from '../../src/lab/binaries.js';
import { clusterFor, readLab } from '../../src/lab/lab.js';
import { upgradePairs } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { runProcess } from '../helpers/cli.js';

/** The built-in playbook `upgrade-immutable` through the engine (`plan` / `run`), on a real lab over SSH. */
const pairs = upgradePairs();

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'vaultops.js');
const cli = (args: string[], env: NodeJS.ProcessEnv) => runProcess(process.execPath, [BIN, ...args], env);

describe.each(pairs)('playbook upgrade-immutable on a $flavor cluster $from -> $to', ({ flavor, from, to }) => {
  let t: TestLab;
  let binary: string;
  let sum: string;
  const outputs: string[] = [];
  const env = () => ({ ...t.env, VAULT_TOKEN: '', BAO_TOKEN: '' });

  beforeAll(async () => {
    binary = (await ensureBinary({ flavor, version: to })).path;
    sum = createHash('sha256').update(readFileSync(binary)).digest('hex');
    t = await startTestLab({ name: `h-immp-${flavor}`, flavor, version: from, ssh: true });
    const r = await cli(['lab', 'add-nodes', '--name', t.lab.name, '--version', to], t.env);
    outputs.push(r.stdout, r.stderr);
    expect(r.code).toBe(0);
  });
  afterAll(async () => {
    await t?.destroy();
  });

  it('plan shows the join, then the old standbys one at a time, the old leader last, by name', async () => {
    const c = clusterFor(t.lab);
    const leader = (await c.findLeader()).node.name;
    c.close();
    const r = await cli(
      ['plan', 'upgrade-immutable', '-i', t.inventory, '--var', `binary=${binary}`, '--var', `sha256=${sum}`],
      env(),
    );
    outputs.push(r.stdout, r.stderr);
    expect(r.code).toBe(0);
    const retire = r.stdout
      .split('\n')
      .filter((l) => /upgrade\.retire_node on n\d/.test(l))
      .map((l) => /on (n\d)/.exec(l)![1]);
    expect(retire.length).toBe(3);
    expect(retire[2]).toBe(leader);
    expect(r.stdout.indexOf('upgrade.snapshot')).toBeLessThan(r.stdout.indexOf('upgrade.join_new_nodes'));
    expect(r.stdout.indexOf('upgrade.join_new_nodes')).toBeLessThan(r.stdout.indexOf('upgrade.retire_node'));
  });

  it('run replaces the nodes through the engine and rewrites the inventory', async () => {
    const r = await cli(
      [
        'run',
        'upgrade-immutable',
        '-i',
        t.inventory,
        '--var',
        `binary=${binary}`,
        '--var',
        `sha256=${sum}`,
        '--non-interactive',
        '-y',
      ],
      env(),
    );
    outputs.push(r.stdout, r.stderr);
    expect(r.stdout + r.stderr).toContain(`version history ${from}, ${to}`);
    expect(r.code).toBe(0);
    const inv = parse(readFileSync(t.inventory, 'utf8')) as {
      clusters: Record<string, { version: string; nodes: Array<{ name: string }> }>;
    };
    expect(inv.clusters[t.lab.name]!.nodes.map((n) => n.name)).toEqual(['n4', 'n5', 'n6']);
    expect(inv.clusters[t.lab.name]!.version).toBe(to);
    expect(readLab(t.lab.name, t.env)!.version).toBe(to);
    const st = await cli(['status', '-i', t.inventory], env());
    outputs.push(st.stdout, st.stderr);
    expect(st.code).toBe(0);
  });

  it('never prints the token or the unseal keys', () => {
    const all = outputs.join('\n');
    for (const s of t.secrets) expect(all).not.toContain(s);
  });
});
