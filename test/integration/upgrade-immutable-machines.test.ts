import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ExitCode } from '../../src/core/exit-codes.js';
import type { DrillReport } from '../../src/drill/run-drill.js';
import { ensureBinary, type Flavor } from '../../src/lab/binaries.js';
import { clusterFor, readLab, type LabRecord } from '../../src/lab/lab.js';
import { serverLayout } from '../../src/lab/machine-root.js';
import { ensureKv, kvPut, withCluster } from '../helpers/backup-lab.js';
import { processesUnder, runProcess, type Ran } from '../helpers/cli.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { inMachine, mainPids, versions } from '../helpers/machines.js';
import { upgradePairs } from '../helpers/flavors.js';

/**
 * `vaultops lab add-nodes --hosts` + `vaultops upgrade --strategy immutable` (the built CLI) on a lab
 * of systemd machines: three new machines on the new version join through `sudo -n systemctl`, the
 * three old ones leave (the old leader last) and are powered off and removed, and the inventory
 * lists the new ones. Then a backup taken with that inventory of machines is drilled: restored
 * into a local scratch cluster, unsealed, its canary read.
 *
 * OpenBao (2.6.2 -> 2.7.2) only by default: six machines boot for one run, and on the two cores CI
 * has a second lab of Vault machines would double the file's time (about 6 minutes each) for what
 * the flavour does not change here: the immutable upgrade's logic runs on both flavours against
 * loopback hosts in upgrade-immutable.test.ts, and rolling upgrades of Vault machines in
 * upgrade-machines.test.ts. VAULTOPS_TEST_IMMUTABLE_MACHINES=openbao,vault runs Vault too
 * (1.19.0 -> 1.21.0; its binaries are built with Go first).
 */
const pairs = upgradePairs(process.env['VAULTOPS_TEST_IMMUTABLE_MACHINES'] ?? 'openbao');

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'vaultops.js');
const NODE = process.execPath;
const short: Record<Flavor, string> = { openbao: 'bao', vault: 'vault' };

interface InvNode {
  name: string;
  api_addr: string;
  ssh: { host: string; port: number; user: string; sudo: boolean; key_file: string; host_key: string };
  service: { manager: string; name: string; binary: string; config: string };
}
interface InvCluster {
  version: string;
  nodes: InvNode[];
  new_nodes?: InvNode[];
}

describe.each(pairs)('immutable upgrade onto new $flavor machines $from -> $to', ({ flavor, from, to }) => {
  let t: TestLab;
  let scratch: string;
  let newBinary: string;
  let sum: string;
  const layout = serverLayout(flavor);
  const outputs: string[] = [];
  const canaryValue = `canary-${randomBytes(12).toString('hex')}`;
  const cli = async (args: string[]): Promise<Ran> => {
    // No token or key on the command line or in the environment: the inventory references the 0600 init file.
    const r = await runProcess(NODE, [BIN, ...args], { ...t.env, VAULT_TOKEN: '', BAO_TOKEN: '' });
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  const lab = (): LabRecord => readLab(t.lab.name, t.env)!;
  const inventory = (file = t.inventory): InvCluster =>
    (parse(readFileSync(file, 'utf8')) as { clusters: Record<string, InvCluster> }).clusters[t.lab.name]!;
  const raftPeers = async (l: LabRecord): Promise<string[]> => {
    const c = clusterFor(l, t.init.root_token);
    try {
      const leader = await c.findLeader();
      return (await leader.client.raftConfiguration()).config.servers.map((s) => s.node_id).sort();
    } finally {
      c.close();
    }
  };
  /** What a machine leaves on this host: mounts under its directory, its namespace, its veth, processes. */
  const traces = (l: LabRecord, names: string[]) => {
    const subnet = l.machines!.subnet;
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((x) => x.split(' ')[4] ?? '')
      .filter((p) => names.some((n) => p.startsWith(join(l.dir, 'machines', n))));
    const netns = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter((x) => names.some((n) => x.startsWith(`vaultops-${l.name}-${n}.`)));
    const links = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter((x) => names.some((n) => new RegExp(`\\bvo${subnet}${n}\\b`).test(x)));
    const procs = names.flatMap((n) => processesUnder(join(l.dir, 'machines', n)));
    const dirs = names.filter((n) => existsSync(join(l.dir, 'machines', n)));
    return { mounts, netns, links, procs, dirs };
  };
  const none = { mounts: [], netns: [], links: [], procs: [], dirs: [] };

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), `vaultops-imm-machines-${short[flavor]}-`));
    newBinary = (await ensureBinary({ flavor, version: to })).path;
    sum = createHash('sha256').update(readFileSync(newBinary)).digest('hex');
    t = await startTestLab({ name: `m-imm-${short[flavor]}`, flavor, version: from, hosts: true });
  }, 400_000);
  afterAll(async () => {
    await t?.destroy();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }, 180_000);

  it('a new machine whose server cannot start: add-nodes fails with its journal and leaves nothing behind', async () => {
    // A build that passes `version` but whose server exits at once: the unit fails in the new machine.
    const broken = join(scratch, short[flavor]);
    const product = flavor === 'vault' ? 'Vault' : 'OpenBao';
    writeFileSync(
      broken,
      `#!/bin/sh\nif [ "$1" = version ]; then echo "${product} v${to} (broken build)"; exit 0; fi\necho "broken build: cannot start" >&2\nexit 1\n`,
    );
    chmodSync(broken, 0o755);
    const before = readFileSync(t.inventory, 'utf8');
    const r = await cli([
      'lab',
      'add-nodes',
      '--hosts',
      '--name',
      t.lab.name,
      '--count',
      '1',
      '--version',
      to,
      '--vault-binary',
      broken,
    ]);
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.stderr).toContain(`could not start ${layout.unit}.service`);
    expect(r.stderr).toContain('broken build: cannot start');
    expect(lab().newNodes).toBeUndefined();
    expect(lab().retiredNodes).toBeUndefined();
    expect(Object.keys(lab().machines!.nodes).sort()).toEqual(['n1', 'n2', 'n3']);
    expect(traces(lab(), ['n4'])).toEqual(none);
    expect(readFileSync(t.inventory, 'utf8')).toBe(before);
  }, 300_000);

  it('lab add-nodes --hosts boots n4-n6 as machines on the new version, sealed and outside the cluster, written as new_nodes as production hosts', async () => {
    const r = await cli(['lab', 'add-nodes', '--hosts', '--name', t.lab.name, '--count', '3', '--version', to]);
    expect(r.code, r.stderr).toBe(0);
    const l = lab();
    const subnet = l.machines!.subnet;
    expect(l.newNodes?.map((n) => [n.name, n.ip])).toEqual(
      [4, 5, 6].map((i) => [`n${i}`, `10.213.${subnet}.${10 + i}`]),
    );
    const c = inventory();
    expect(c.nodes.map((n) => n.name)).toEqual(['n1', 'n2', 'n3']);
    expect(c.new_nodes!.map((n) => n.name)).toEqual(['n4', 'n5', 'n6']);
    for (const n of c.new_nodes!) {
      expect(n.ssh).toMatchObject({
        host: n.api_addr.replace(/^https:\/\/|:8200$/g, ''),
        port: 22,
        user: 'ops',
        sudo: true,
      });
      expect(n.ssh.host_key).toMatch(/^ssh-ed25519 /);
      expect(n.ssh.host_key).toBe(l.machines!.nodes[n.name]!.hostKey);
      expect(n.service).toMatchObject({
        manager: 'systemd',
        name: layout.unit,
        binary: layout.binary,
        config: layout.config,
      });
    }
    for (const n of l.newNodes!) {
      expect(await inMachine(l, n.name, ['systemctl', 'is-active', `${layout.unit}.service`])).toBe('active');
      expect(await inMachine(l, n.name, [layout.binary, 'version'])).toContain(`v${to}`);
    }
    const fresh = clusterFor({ ...l, nodes: l.newNodes! });
    try {
      for (const p of await fresh.probeAll()) expect(p.health?.body.sealed).toBe(true);
    } finally {
      fresh.close();
    }
    expect(await raftPeers(l)).toEqual(['n1', 'n2', 'n3']);
    // lab status shows them, with the version they run.
    const st = await cli(['lab', 'status', '--name', t.lab.name, '--json']);
    const [row] = JSON.parse(st.stdout) as Array<{
      state: string;
      new_nodes: Array<{ name: string; version: string }>;
    }>;
    expect(row!.state).toBe('running');
    expect(row!.new_nodes.map((n) => `${n.name} ${n.version}`)).toEqual([`n4 ${to}`, `n5 ${to}`, `n6 ${to}`]);
  }, 300_000);

  it('replaces the machines through sudo -n systemctl: the new ones join as voters, the old ones leave (the old leader last) and are removed from this host', async () => {
    // One new host whose server is stopped: the upgrade starts it through systemd.
    await inMachine(lab(), 'n6', ['systemctl', 'stop', `${layout.unit}.service`]);
    const old = t.lab;
    const c = clusterFor(old);
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
    ]);
    expect(r.stderr + r.stdout).toContain(`all nodes on ${to}`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('n6: started through the systemd service manager');
    const removals = [...r.stderr.matchAll(/(n[123]): removed from the Raft configuration/g)].map((m) => m[1]);
    expect(removals.length).toBe(3);
    expect(removals[2]).toBe(oldLeader);
    expect(r.stderr).toMatch(
      new RegExp(`${oldLeader}: stopped; n[456] \\(on ${to.replace(/\./g, '\\.')}\\) is the active node`),
    );

    const l = lab();
    t.lab = l;
    expect(l.nodes.map((n) => n.name)).toEqual(['n4', 'n5', 'n6']);
    expect(l.version).toBe(to);
    expect(l.newNodes).toBeUndefined();
    expect(l.retiredNodes).toBeUndefined();
    expect(await raftPeers(l)).toEqual(['n4', 'n5', 'n6']);
    expect(await versions(l)).toEqual([to, to, to]);
    for (const pid of await mainPids(l)) expect(Number(pid)).toBeGreaterThan(0);
    // The old machines are gone from this host; their host keys are no longer pinned.
    expect(traces(l, ['n1', 'n2', 'n3'])).toEqual(none);
    expect(Object.keys(l.machines!.nodes).sort()).toEqual(['n4', 'n5', 'n6']);
    // Each new machine's config joins only the new ones from now on.
    for (const n of l.nodes) {
      const config = await inMachine(l, n.name, ['cat', layout.config]);
      const joins = [...config.matchAll(/leader_api_addr = "https:\/\/([\d.]+):8200"/g)].map((m) => m[1]);
      expect(joins.sort()).toEqual(l.nodes.filter((x) => x.name !== n.name).map((x) => x.ip));
      expect(await inMachine(l, n.name, ['stat', '-c', '%U:%G %a', layout.config])).toBe(
        `${layout.user}:${layout.user} 640`,
      );
    }
    // The inventory lists the new machines only, and status through it is healthy.
    const c2 = inventory();
    expect(c2.version).toBe(to);
    expect(c2.nodes.map((n) => n.name)).toEqual(['n4', 'n5', 'n6']);
    expect(c2.new_nodes).toBeUndefined();
    const st = await cli(['status', '-i', t.inventory]);
    expect(st.code).toBe(0);
    expect(st.stdout).toContain('HEALTHY');
  }, 600_000);

  it('drill: a backup taken with the inventory of machines is restored into a local scratch cluster, unsealed, its canary read', async () => {
    await withCluster(t.inventory, async (c) => {
      await ensureKv(c);
      await kvPut(c, 'canary', canaryValue);
    });
    const inv = parse(readFileSync(t.inventory, 'utf8')) as { clusters: Record<string, Record<string, unknown>> };
    const cluster = inv.clusters[t.lab.name]!;
    cluster['stores'] = { local: { type: 'dir', path: join(scratch, 'backups') } };
    cluster['canaries'] = [
      { path: 'kv/canary', field: 'value', expect_sha256: createHash('sha256').update(canaryValue).digest('hex') },
    ];
    const drillInventory = join(scratch, 'drill.yml');
    writeFileSync(drillInventory, stringify(inv));
    const b = await cli(['backup', '-i', drillInventory, '--json']);
    expect(b.code, b.stderr).toBe(ExitCode.ok);
    const r = await cli([
      'drill',
      '-i',
      drillInventory,
      '--report-dir',
      join(scratch, 'reports'),
      '--non-interactive',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    const report = JSON.parse(r.stdout) as DrillReport;
    expect(report.result).toBe('passed');
    expect(report.canaries.map((c) => [c.path, c.result])).toEqual([['kv/canary', 'match']]);
    expect(report.backup).toMatchObject({ server_version: to, key_set: `${t.lab.name}-init` });
    expect(report.scratch).toMatchObject({ flavor, version: to, torn_down: true, processes_left: 0 });
    expect(report.rto_ms).toBeGreaterThan(0);
    expect(existsSync(report.scratch!.dir)).toBe(false);
    // The machines were not touched by the drill.
    expect(await versions(t.lab)).toEqual([to, to, to]);
  }, 400_000);

  it("printed no secret (the lab's token and keys, the canary's value)", () => {
    const all = outputs.join('\n');
    expect(all.length).toBeGreaterThan(0);
    expect([...t.secrets, canaryValue].filter((s) => all.includes(s))).toEqual([]);
  });
});
