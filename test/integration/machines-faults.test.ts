import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBinary } from '../../src/lab/binaries.js';
import { clusterFor, rebootHostsNode, runInMachine, waitHealthy } from '../../src/lab/lab.js';
import { serverLayout } from '../../src/lab/machine-root.js';
import { ensureKv, kvGet, kvPut, withCluster } from '../helpers/backup-lab.js';
import { runProcess, type Ran } from '../helpers/cli.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { inMachine, mainPid, versions } from '../helpers/machines.js';

/**
 * Faults of a rolling upgrade on systemd machines (`lab up --hosts`) that only a real host shows:
 * a unit that fails to start after the binary swap, and a standby rebooted in the middle of a run.
 *
 * OpenBao only: what is under test is systemd's side (a Type=notify unit whose start fails, the
 * journal read with `journalctl -u`, a reboot that brings a Shamir-sealed server back) and the
 * upgrade's reaction to it, which does not depend on the flavour; the rolling upgrade itself runs on
 * both flavours in upgrade-machines.test.ts. One machine lab for the file; the tests run in order on
 * it (2.6.2 -> a broken build rolled back -> a reboot halt -> a bad config halt -> finished on 2.7.2),
 * then a backup taken with the inventory of machines is restored into them.
 */
const flavor = 'openbao' as const;
const from = '2.6.2';
const to = '2.7.2';
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'vaultops.js');
const NODE = process.execPath;

describe('rolling upgrade faults on openbao machines', () => {
  let t: TestLab;
  let newBinary: string;
  let sum: string;
  let scratch: string;
  const layout = serverLayout(flavor);
  const outputs: string[] = [];
  const env = () => ({ ...t.env, VAULT_TOKEN: '', BAO_TOKEN: '' });
  const cli = async (args: string[], onLine?: (line: string) => void): Promise<Ran> => {
    const r = await runProcess(NODE, [BIN, ...args], env(), onLine);
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  const upgrade = (binary: string, sha: string, extra: string[] = [], onLine?: (line: string) => void) =>
    cli(
      [
        'upgrade',
        '-i',
        t.inventory,
        '--binary',
        binary,
        '--sha256',
        sha,
        '--non-interactive',
        '--confirm',
        t.lab.name,
        '--wait-timeout',
        '60',
        ...extra,
      ],
      onLine,
    );
  /** The version of the live binary on the machine, asked inside (not over the network). */
  const liveVersion = async (node: string) =>
    /v(\d+\.\d+\.\d+)/.exec(await inMachine(t.lab, node, [layout.binary, 'version']))?.[1];
  const cluster = async <T>(f: (c: ReturnType<typeof clusterFor>) => Promise<T>): Promise<T> => {
    const c = clusterFor(t.lab);
    try {
      return await f(c);
    } finally {
      c.close();
    }
  };
  const leader = () => cluster(async (c) => (await c.findLeader()).node.name);
  const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'vaultops-machines-faults-'));
    newBinary = (await ensureBinary({ flavor, version: to })).path;
    sum = sha256(newBinary);
    t = await startTestLab({ name: 'm-faults', flavor, version: from, hosts: true });
  }, 400_000);
  afterAll(async () => {
    await t?.destroy();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }, 120_000);

  it('a new build whose unit fails to start: halts with the journal, --rollback-on-failure restores the previous binary and the node rejoins', async () => {
    // A broken build: it passes every gate (its sha256, `version` run on the host says 2.7.2) but
    // the server exits at once, as a build for the wrong platform or a bad release would. A real
    // release that fails only on the new version is not at hand, and a bad config line would fail
    // the previous binary too, so the rollback could not bring the node back (the next tests halt
    // on one).
    const broken = join(scratch, 'bao');
    writeFileSync(
      broken,
      `#!/bin/sh\nif [ "$1" = version ]; then echo "OpenBao v${to} (broken build)"; exit 0; fi\necho "broken build: cannot start the server" >&2\nexit 1\n`,
    );
    chmodSync(broken, 0o755);
    const active = await leader();
    const pids = Object.fromEntries(
      await Promise.all(t.lab.nodes.map(async (n) => [n.name, await mainPid(t.lab, n.name)])),
    );
    let first: string | undefined;
    const r = await upgrade(broken, sha256(broken), ['--rollback-on-failure'], (line) => {
      first ??= /order: (\S+)/.exec(line)?.[1];
    });
    expect(first).toBeDefined();
    expect(first).not.toBe(active);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`Upgrade halted at ${first}`);
    expect(r.stderr).toContain(`rolled back to its previous binary and is a healthy voter again`);
    // The unit's journal, read with journalctl -u on the host, is in the error.
    expect(r.stderr).toContain(`last lines of ${first}'s log`);
    expect(r.stderr).toContain('broken build: cannot start the server');
    // The previous binary is live again and the node runs it under systemd; nothing else was touched.
    expect(await liveVersion(first!)).toBe(from);
    expect(await inMachine(t.lab, first!, ['systemctl', 'is-active', `${layout.unit}.service`])).toBe('active');
    expect(await mainPid(t.lab, first!)).not.toBe(pids[first!]);
    for (const n of t.lab.nodes.filter((x) => x.name !== first))
      expect(await mainPid(t.lab, n.name)).toBe(pids[n.name]);
    expect(await versions(t.lab)).toEqual([from, from, from]);
    expect(await leader()).toBe(active);
  }, 300_000);

  let upgradedFirst: string;
  let rebooted: string;

  it('a standby rebooted during the run comes back sealed: the run halts (exit 4) before the next node, naming it and `vaultops run unseal`', async () => {
    const active = await leader();
    const pidLeader = await mainPid(t.lab, active);
    let order: string[] = [];
    const rebooting: Array<Promise<void>> = [];
    const r = await upgrade(newBinary, sum, [], (line) => {
      const o = /order: (.+?);/.exec(line);
      if (o) order = o[1]!.split(' -> ').map((x) => x.split(' ')[0]!);
      // The first standby is back on the new version: the other standby's host reboots (a kernel
      // update, a hypervisor) while the run waits the stabilization time.
      if (!rebooting.length && order.length === 3 && new RegExp(`${order[0]}: healthy voter on`).test(line)) {
        rebooted = order[1]!;
        rebooting.push(rebootHostsNode(t.lab, rebooted, () => undefined));
      }
    });
    await Promise.all(rebooting);
    expect(rebooted, r.stderr + r.stdout).toBeDefined();
    upgradedFirst = order[0]!;
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`Not taking ${rebooted} down`);
    expect(r.stderr).toContain('vaultops run unseal');
    // The rebooted machine is sealed, still on its old binary (never stopped or swapped by the run);
    // the leader was not touched.
    expect(await liveVersion(rebooted)).toBe(from);
    const sealed = await cluster(async (c) => (await c.client(rebooted).sealStatus()).sealed);
    expect(sealed).toBe(true);
    expect(await mainPid(t.lab, active)).toBe(pidLeader);
    expect(await liveVersion(upgradedFirst)).toBe(to);
    // As documented: unseal with the inventory's key shares, then run the upgrade again (next test).
    const u = await cli(['run', 'unseal', '-i', t.inventory, '--yes', '--non-interactive']);
    expect(u.code).toBe(0);
    await waitHealthy(t.lab, t.init.root_token, () => undefined, 120_000);
    // Healthy as the upgrade's gates see it: autopilot counts the node again (failure tolerance 1).
    const deadline = Date.now() + 60_000;
    let health = '';
    while (Date.now() < deadline) {
      // The inventory's client (with its token): autopilot's state needs one.
      const st = await withCluster(t.inventory, (c) => c.status());
      health = `${st.health}, tolerance ${st.autopilot?.failureTolerance}: ${st.problems.join('; ')}`;
      if (st.health === 'healthy' && (st.autopilot?.failureTolerance ?? 0) >= 1) break;
      await new Promise((res) => setTimeout(res, 500));
    }
    expect(health).toMatch(/^healthy, tolerance 1/);
  }, 300_000);

  it('a bad config line on the next node: halts there with the journal (redacted), quorum kept; fixed, the same command finishes', async () => {
    const node = rebooted;
    const active = await leader();
    const pidLeader = await mainPid(t.lab, active);
    // An operator pasted a token where a quoted string belongs: the server refuses its config at
    // start, and its error names what it could not parse, so the journal holds a secret.
    const config = layout.config;
    const original = await inMachine(t.lab, node, ['cat', config]);
    await runInMachine(t.lab, node, ['sh', '-c', `printf '%s\\n' 'api_addr = ${t.init.root_token}' >> ${config}`]);
    const r = await upgrade(newBinary, sum);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`Upgrade halted at ${node}`);
    expect(r.stderr).toContain(`last lines of ${node}'s log`);
    expect(r.stderr).toMatch(/openbao\.hcl|config/i);
    expect(r.stderr).not.toContain(t.init.root_token);
    // Quorum kept: the leader untouched and active.
    expect(await leader()).toBe(active);
    expect(await mainPid(t.lab, active)).toBe(pidLeader);
    // Fixed, the same command brings the node back first (its binary already swapped), then the leader.
    await runInMachine(t.lab, node, ['sh', '-c', `printf '%s\\n' "$1" > ${config}`, 'sh', original]);
    const again = await upgrade(newBinary, sum);
    expect(again.stderr).toContain(`${node}: resuming`);
    expect(again.stderr + again.stdout).toContain(`all nodes on ${to}`);
    expect(again.code).toBe(0);
    expect(await versions(t.lab)).toEqual([to, to, to]);
    for (const n of t.lab.nodes) expect(await liveVersion(n.name)).toBe(to);
  }, 400_000);

  it('backup with the inventory of machines, then restore into them: the data of the backup is back, every node healthy', async () => {
    const dir = join(scratch, 'backups');
    await withCluster(t.inventory, async (c) => {
      await ensureKv(c);
      await kvPut(c, 'marker', 'in-the-backup');
    });
    const b = await cli(['backup', '-i', t.inventory, '--to', dir, '--json']);
    expect(b.code, b.stderr).toBe(0);
    const file = (JSON.parse(b.stdout) as { file: string }).file;
    await withCluster(t.inventory, (c) => kvPut(c, 'marker', 'after-the-backup'));
    const r = await cli([
      'restore',
      '-i',
      t.inventory,
      '--from',
      file,
      '--confirm',
      t.lab.name,
      '--non-interactive',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { status: { health: string } }).status.health).toBe('healthy');
    expect(await withCluster(t.inventory, (c) => kvGet(c, 'marker'))).toBe('in-the-backup');
    expect(await versions(t.lab)).toEqual([to, to, to]);
  }, 300_000);

  it('printed no secret', () => {
    const all = outputs.join('\n');
    expect(all.length).toBeGreaterThan(0);
    expect(t.secrets.filter((s) => all.includes(s))).toEqual([]);
  });
});
