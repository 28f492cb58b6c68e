import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ensureBinary } from '../../src/lab/binaries.js';
import { clusterFor, readLab, unsealAll, waitHealthy, type LabRecord } from '../../src/lab/lab.js';
import { upgradePairs } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { runProcess, type Ran } from '../helpers/cli.js';

/**
 * `vaultops lab add-nodes` + `vaultops upgrade --strategy immutable` (the built CLI) on a real
 * 3-node lab reached over its real sshd: three new nodes on the new version join, the three old
 * ones leave, and the official CLI sees only the new ones at the end.
 */
const pairs = upgradePairs();

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'vaultops.js');

describe.each(pairs)('immutable upgrade of a $flavor cluster $from -> $to', ({ flavor, from, to }) => {
  let t: TestLab;
  let newBinary: string;
  let sum: string;
  const outputs: string[] = [];
  const cli = async (args: string[]): Promise<Ran> => {
    // No token or key on the command line or in the environment: the inventory references the 0600 init file.
    const r = await runProcess(process.execPath, [BIN, ...args], { ...t.env, VAULT_TOKEN: '', BAO_TOKEN: '' });
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  const lab = (): LabRecord => readLab(t.lab.name, t.env)!;
  const written = () => join(t.stateDir, 'after-upgrade.yml');
  /** The official CLI against one node; the token only through the environment. */
  const official = async (addr: string, args: string[]): Promise<Ran> => {
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
    const r = await runProcess(newBinary, args, env);
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  const peers = async (addr: string) => {
    const r = await official(addr, ['operator', 'raft', 'list-peers', '-format=json']);
    expect(r.code).toBe(0);
    return (
      JSON.parse(r.stdout) as {
        data: { config: { servers: Array<{ node_id: string; voter: boolean; leader: boolean }> } };
      }
    ).data.config.servers;
  };

  beforeAll(async () => {
    newBinary = (await ensureBinary({ flavor, version: to })).path;
    sum = createHash('sha256').update(readFileSync(newBinary)).digest('hex');
    t = await startTestLab({ name: `h-imm-${flavor}`, flavor, version: from, ssh: true });
    const r = await cli(['lab', 'add-nodes', '--name', t.lab.name, '--count', '3', '--version', to]);
    expect(r.code).toBe(0);
  });
  afterAll(async () => {
    await t?.destroy();
  });

  it('lab add-nodes started n4-n6 on the new version, sealed and not members, and wrote them as new_nodes', async () => {
    const l = lab();
    expect(l.newNodes?.map((n) => n.name)).toEqual(['n4', 'n5', 'n6']);
    expect(l.newNodes?.map((n) => n.ip)).toEqual([4, 5, 6].map((i) => `127.0.0.${l.slot * 10 + i}`));
    const inv = parse(readFileSync(t.inventory, 'utf8')) as {
      clusters: Record<
        string,
        { nodes: Array<{ name: string }>; new_nodes: Array<{ name: string; ssh?: { host_key?: string } }> }
      >;
    };
    const c = inv.clusters[t.lab.name]!;
    expect(c.nodes.map((n) => n.name)).toEqual(['n1', 'n2', 'n3']);
    expect(c.new_nodes.map((n) => n.name)).toEqual(['n4', 'n5', 'n6']);
    expect(c.new_nodes.every((n) => n.ssh?.host_key?.startsWith('ssh-ed25519 '))).toBe(true);
    const servers = await peers(t.lab.nodes[0]!.apiAddr);
    expect(servers.map((s) => s.node_id).sort()).toEqual(['n1', 'n2', 'n3']);
  });

  it('refuses at the gate when an old node is down, before any new node joins', async () => {
    const n3 = t.lab.nodes[2]!;
    expect((await runProcess('/bin/sh', [join(n3.dir, 'service.sh'), 'stop', '30'], t.env)).code).toBe(0);
    const r = await cli([
      'upgrade',
      '-i',
      t.inventory,
      '--strategy',
      'immutable',
      '--binary',
      newBinary,
      '--sha256',
      sum,
      '--non-interactive',
      '--confirm',
      t.lab.name,
      '--wait-timeout',
      '90',
    ]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('no new node joined');
    expect(r.stderr).toContain('n3 is unreachable');
    // The new nodes are still sealed and outside the cluster.
    const all = clusterFor({ ...t.lab, nodes: lab().newNodes! });
    try {
      for (const p of await all.probeAll()) expect(p.health?.body.sealed).toBe(true);
    } finally {
      all.close();
    }
    expect((await peers(t.lab.nodes[0]!.apiAddr)).map((s) => s.node_id).sort()).toEqual(['n1', 'n2', 'n3']);
    // Put n3 back.
    expect((await runProcess('/bin/sh', [join(n3.dir, 'service.sh'), 'start'], t.env)).code).toBe(0);
    await unsealAll({ ...t.lab, nodes: [{ ...n3, pid: undefined }] }, t.init, () => undefined);
    // n3 has a new pid now (service.sh): the in-memory record's pids are stale, so they are not checked.
    await waitHealthy(
      { ...t.lab, nodes: t.lab.nodes.map((n) => ({ ...n, pid: undefined })) },
      t.init.root_token,
      () => undefined,
    );
  });

  it('replaces all three nodes: the new ones join and become voters, the old ones leave, the old leader last', async () => {
    // One new host whose server is not running: the upgrade installs and starts it over SSH.
    const n6 = lab().newNodes![2]!;
    expect((await runProcess('/bin/sh', [join(n6.dir, 'service.sh'), 'stop', '30'], t.env)).code).toBe(0);
    const c = clusterFor(t.lab);
    const oldLeader = (await c.findLeader()).node.name;
    c.close();
    const r = await cli([
      'upgrade',
      '-i',
      t.inventory,
      '--strategy',
      'immutable',
      '--binary',
      newBinary,
      '--sha256',
      sum,
      '--non-interactive',
      '--confirm',
      t.lab.name,
      '--wait-timeout',
      '120',
      '--write-inventory',
      written(),
    ]);
    expect(r.stderr + r.stdout).toContain(`all nodes on ${to}`);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('n6: started through the lab service manager');
    // Old standbys first, the old leader last; leadership went to a new node.
    const removals = [...r.stderr.matchAll(/(n[123]): removed from the Raft configuration/g)].map((m) => m[1]);
    expect(removals.length).toBe(3);
    expect(removals[2]).toBe(oldLeader);
    expect(r.stderr).toMatch(
      new RegExp(`${oldLeader}: stopped; n[456] \\(on ${to.replace(/\./g, '\\.')}\\) is the active node`),
    );

    const addr = lab().nodes[0]!.apiAddr;
    const servers = await peers(addr);
    expect(servers.map((s) => s.node_id).sort()).toEqual(['n4', 'n5', 'n6']);
    expect(servers.every((s) => s.voter)).toBe(true);
    expect(servers.filter((s) => s.leader).length).toBe(1);
    // Asked of the active node: a standby that joined before the leader ran the new version keeps
    // the history it loaded when it was unsealed (seen on OpenBao 2.7.2).
    const leaderAddr = lab().nodes.find((n) => n.name === servers.find((s) => s.leader)!.node_id)!.apiAddr;
    const list = await official(leaderAddr, ['list', '-format=json', 'sys/version-history']);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual(expect.arrayContaining([from, to]));
  });

  it('the written inventory lists only the new nodes on the new version, and status on it is healthy', async () => {
    for (const file of [written(), t.inventory]) {
      const inv = parse(readFileSync(file, 'utf8')) as {
        clusters: Record<string, { version: string; nodes: Array<{ name: string }>; new_nodes?: unknown }>;
      };
      const c = inv.clusters[t.lab.name]!;
      expect(c.nodes.map((n) => n.name)).toEqual(['n4', 'n5', 'n6']);
      expect(c.new_nodes).toBeUndefined();
      expect(c.version).toBe(to);
      const st = await cli(['status', '-i', file]);
      expect(st.code).toBe(0);
      expect(st.stdout).toContain('HEALTHY');
    }
    // lab.json says what the lab is now.
    expect(lab().version).toBe(to);
    expect(lab().nodes.map((n) => n.name)).toEqual(['n4', 'n5', 'n6']);
    expect(lab().newNodes).toBeUndefined();
  });

  it("never shows the lab's token or unseal keys", () => {
    const all = outputs.join('\n');
    for (const s of t.secrets) expect(all).not.toContain(s);
    for (const n of lab().nodes) {
      const cmdline = readFileSync(`/proc/${readFileSync(join(n.dir, 'pid'), 'utf8').trim()}/cmdline`, 'utf8');
      for (const s of t.secrets) expect(cmdline).not.toContain(s);
    }
  });
});
