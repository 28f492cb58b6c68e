import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBinary } from '../../src/lab/binaries.js';
import { clusterFor } from '../../src/lab/lab.js';
import { upgradePairs } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { runProcess } from '../helpers/cli.js';

/** The built-in playbook `upgrade-rolling` through the engine (`vaultops plan` / `vaultops run`), on a real lab over SSH. */
const pairs = upgradePairs();

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'vaultops.js');
const cli = (args: string[], env: NodeJS.ProcessEnv) => runProcess(process.execPath, [BIN, ...args], env);

describe.each(pairs)('playbook upgrade-rolling on a $flavor cluster $from -> $to', ({ flavor, from, to }) => {
  let t: TestLab;
  let binary: string;
  let sum: string;
  const outputs: string[] = [];

  beforeAll(async () => {
    binary = (await ensureBinary({ flavor, version: to })).path;
    sum = createHash('sha256').update(readFileSync(binary)).digest('hex');
    t = await startTestLab({ name: `c-upb-${flavor}`, flavor, version: from, ssh: true });
  });
  afterAll(async () => {
    await t?.destroy();
  });

  it('plan shows the standbys one at a time and the current leader last, by name, and changes nothing', async () => {
    const c = clusterFor(t.lab);
    const leader = (await c.findLeader()).node.name;
    c.close();
    const r = await cli(
      ['plan', 'upgrade-rolling', '-i', t.inventory, '--var', `binary=${binary}`, '--var', `sha256=${sum}`],
      t.env,
    );
    outputs.push(r.stdout, r.stderr);
    expect(r.code).toBe(0);
    const nodeLines = r.stdout
      .split('\n')
      .filter((l) => /upgrade\.node on n\d/.test(l))
      .map((l) => /on (n\d)/.exec(l)![1]);
    expect(nodeLines.length).toBe(3);
    expect(nodeLines[2]).toBe(leader);
    expect(new Set(nodeLines).size).toBe(3);
    expect(r.stdout.indexOf('upgrade.preflight')).toBeLessThan(r.stdout.indexOf('upgrade.snapshot'));
    expect(r.stdout.indexOf('upgrade.snapshot')).toBeLessThan(r.stdout.indexOf('upgrade.node'));
  });

  it('run takes every node to the new version through the engine, and the official CLI agrees', async () => {
    const r = await cli(
      [
        'run',
        'upgrade-rolling',
        '-i',
        t.inventory,
        '--var',
        `binary=${binary}`,
        '--var',
        `sha256=${sum}`,
        '--non-interactive',
        '-y',
      ],
      { ...t.env, VAULT_TOKEN: '', BAO_TOKEN: '' },
    );
    outputs.push(r.stdout, r.stderr);
    expect(r.stdout + r.stderr).toContain(`version history ${from}, ${to}`);
    expect(r.code).toBe(0);
    const addr = t.lab.nodes[0]!.apiAddr;
    const env = {
      PATH: process.env['PATH'],
      HOME: t.stateDir,
      VAULT_ADDR: addr,
      BAO_ADDR: addr,
      VAULT_CACERT: t.lab.caCert,
      BAO_CACERT: t.lab.caCert,
      VAULT_TOKEN: t.init.root_token,
      BAO_TOKEN: t.init.root_token,
    };
    const peers = await new Promise<string>((resolve) => {
      const child = spawn(binary, ['operator', 'raft', 'list-peers', '-format=json'], {
        env,
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.on('close', () => resolve(out));
    });
    const servers = (JSON.parse(peers) as { data: { config: { servers: Array<{ voter: boolean; leader: boolean }> } } })
      .data.config.servers;
    expect(servers.length).toBe(3);
    expect(servers.every((s) => s.voter)).toBe(true);
    const c = clusterFor(t.lab);
    try {
      expect((await c.status()).nodes.map((n) => n.version)).toEqual([to, to, to]);
    } finally {
      c.close();
    }
  });

  it('never prints the token or the unseal keys', () => {
    const all = outputs.join('\n');
    for (const s of t.secrets) expect(all).not.toContain(s);
  });
});
