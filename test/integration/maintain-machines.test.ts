import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterFor } from '../../src/lab/lab.js';
import { serverLayout } from '../../src/lab/machine-root.js';
import { runProcess, type Ran } from '../helpers/cli.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { inMachine, mainPid } from '../helpers/machines.js';

/**
 * `vaultops maintain` (the built CLI) on a lab of systemd machines (`lab up --hosts`): real reboots
 * (systemd-nspawn exits 133 and the lab's supervisor boots the machine again), the server stopped
 * and started with `sudo -n systemctl` by the ops user, the unseal keys from the inventory.
 * OpenBao only: the maintenance code talks to the same sys/health, seal, raft and autopilot
 * endpoints the upgrade suites already cover on both flavours, and a second machine lab would
 * double the file's time; the one flavour-specific part (`operator diagnose` as the config parser)
 * is the same command in both.
 */
const flavor = 'openbao' as const;
const version = '2.7.2';
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'vaultops.js');
const NODE = process.execPath;

describe('rolling host maintenance on openbao machines', () => {
  let t: TestLab;
  const layout = serverLayout(flavor);
  const outputs: string[] = [];
  const cli = async (args: string[]): Promise<Ran> => {
    const r = await runProcess(NODE, [BIN, ...args], { ...t.env, VAULT_TOKEN: '', BAO_TOKEN: '' });
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  const maintain = (extra: string[]) =>
    cli(['maintain', '-i', t.inventory, '--non-interactive', '--confirm', t.lab.name, ...extra]);
  const sh = (node: string, script: string) => inMachine(t.lab, node, ['sh', '-c', script]);
  /** The start time of the machine's PID 1: a new one after each boot. */
  const bootMark = (node: string) => sh(node, "awk '{print $22}' /proc/1/stat");
  const withCluster = async <T>(f: (c: ReturnType<typeof clusterFor>) => Promise<T>): Promise<T> => {
    const c = clusterFor(t.lab, t.init.root_token);
    try {
      return await f(c);
    } finally {
      c.close();
    }
  };
  const leaderNow = () => withCluster(async (c) => (await c.findLeader()).node.name);
  const healthy = () =>
    withCluster(async (c) => {
      const s = await c.status();
      return { health: s.health, tolerance: s.autopilot?.failureTolerance };
    });
  const runIdOf = (r: Ran) => /run (\S+) (?:failed|ok|interrupted)/.exec(r.stdout)?.[1];

  beforeAll(async () => {
    t = await startTestLab({ name: 'm-maint', flavor, version, hosts: true });
  }, 400_000);
  afterAll(async () => {
    await t?.destroy();
  }, 120_000);

  it('reboots every machine, standbys first and the leader last, unsealing each; a reader polling the cluster sees at most the leader-change gap', async () => {
    const nodes = t.lab.nodes.map((n) => n.name);
    const leader = await leaderNow();
    const marks = await Promise.all(nodes.map(bootMark));

    // A reader as a client behind a load balancer sees it: is some node active right now?
    const samples: Array<{ at: number; active: boolean }> = [];
    let polling = true;
    const poller = (async () => {
      const c = clusterFor(t.lab);
      try {
        while (polling) {
          const probes = await c.probeAll();
          samples.push({ at: Date.now(), active: probes.some((p) => p.health?.state === 'active') });
          await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        c.close();
      }
    })();
    let r: Ran;
    try {
      r = await maintain(['--command', 'echo patched > /var/tmp/maint-reboot; echo kernel $(uname -r)', '--reboot']);
    } finally {
      polling = false;
      await poller;
    }
    expect(r.stdout + r.stderr).toMatch(/run \S+ ok/);
    expect(r.code).toBe(0);

    // Every machine really booted again, ran the command, and its server is back and unsealed.
    const after = await Promise.all(nodes.map(bootMark));
    after.forEach((m, i) => expect(m).not.toBe(marks[i]));
    for (const n of nodes) expect(await sh(n, 'cat /var/tmp/maint-reboot')).toBe('patched');
    expect(await healthy()).toEqual({ health: 'healthy', tolerance: 1 });

    // The plan put the leader last, and the reboots happened in that order.
    const rebootLines = r.stdout.split('\n').filter((l) => l.includes('rebooting the host'));
    const order = rebootLines.map((l) => nodes.find((n) => new RegExp(`\\b${n}\\b`).test(l)));
    expect(order).toHaveLength(3);
    expect(order[2]).toBe(leader);
    expect(await leaderNow()).not.toBe(leader);
    // The journal has the command's exit code and output tail.
    expect(r.stdout).toMatch(/command exited 0/);
    expect(r.stdout).toMatch(/output tail: kernel /);

    // The reader: one window without an active node at most per leader change (one, when the
    // leader went down), and never a long one. Loose bounds: the machine is shared.
    const windows: number[] = [];
    let start: number | undefined;
    for (const s of samples) {
      if (!s.active && start === undefined) start = s.at;
      if (s.active && start !== undefined) {
        windows.push(s.at - start);
        start = undefined;
      }
    }
    if (start !== undefined) windows.push(samples.at(-1)!.at - start);
    console.info(
      `reader: ${samples.length} samples, ${samples.filter((s) => !s.active).length} without an active node, windows ${windows.join(', ') || 'none'} ms`,
    );
    expect(samples.length).toBeGreaterThan(50);
    expect(windows.length).toBeLessThanOrEqual(2);
    expect(Math.max(0, ...windows)).toBeLessThan(15_000);
  }, 300_000);

  it('a command that fails on the second node halts there with its exit code and output journaled; nothing more is touched; resume after the fix finishes', async () => {
    const leader = await leaderNow();
    const standbys = t.lab.nodes.map((n) => n.name).filter((n) => n !== leader);
    const [first, second] = standbys as [string, string];
    const pids = Object.fromEntries(
      await Promise.all(t.lab.nodes.map(async (n) => [n.name, await mainPid(t.lab, n.name)])),
    );
    await sh(second, 'touch /var/tmp/maint-fail; rm -f /var/tmp/maint-done');
    await Promise.all(standbys.concat(leader).map((n) => sh(n, 'rm -f /var/tmp/maint-done')));
    const command =
      'if [ -e /var/tmp/maint-fail ]; then echo "disk check failed on purpose" >&2; exit 3; fi; touch /var/tmp/maint-done; echo done';

    const r = await maintain(['--command', command, '--restart-service']);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toContain('exited 3');
    expect(r.stdout + r.stderr).toContain('disk check failed on purpose');
    const runId = runIdOf(r);
    expect(runId).toBeDefined();

    // The first standby was done (restarted); the second was brought back after its failure;
    // the leader was not touched at all.
    expect(await sh(first, 'test -e /var/tmp/maint-done && echo yes')).toBe('yes');
    expect(await sh(second, 'test -e /var/tmp/maint-done && echo yes || echo no')).toBe('no');
    expect(await sh(leader, 'test -e /var/tmp/maint-done && echo yes || echo no')).toBe('no');
    expect(await mainPid(t.lab, first)).not.toBe(pids[first]);
    expect(await mainPid(t.lab, leader)).toBe(pids[leader]);
    expect(await leaderNow()).toBe(leader);
    expect(await healthy()).toEqual({ health: 'healthy', tolerance: 1 });

    // The journal recorded the exit code and the redacted output tail.
    const shown = await cli(['runs', 'show', runId!, '--json']);
    const journal = JSON.parse(shown.stdout) as { outcomes: Record<string, { status: string; message?: string }> };
    const failed = Object.values(journal.outcomes).find((o) => o.status === 'failed');
    expect(failed?.message).toContain('exited 3');
    expect(failed?.message).toContain('stderr: disk check failed on purpose');

    // The operator fixes the host, then resumes: the first standby is not done again.
    await sh(second, 'rm -f /var/tmp/maint-fail');
    const firstPid = await mainPid(t.lab, first);
    const resumed = await cli(['resume', runId!, '--non-interactive', '--confirm', t.lab.name]);
    expect(resumed.stdout + resumed.stderr).toMatch(/run \S+ ok/);
    expect(resumed.code).toBe(0);
    for (const n of [first, second, leader]) expect(await sh(n, 'test -e /var/tmp/maint-done && echo yes')).toBe('yes');
    expect(await mainPid(t.lab, first)).toBe(firstPid);
    expect(await mainPid(t.lab, leader)).not.toBe(pids[leader]);
    expect(await leaderNow()).not.toBe(leader);
    expect(await healthy()).toEqual({ health: 'healthy', tolerance: 1 });
  }, 300_000);

  it('a configuration the server cannot start with is rolled back on the first node, no other node touched; the fixed one rolls out, reloaded where only the log level changed', async () => {
    const leader = await leaderNow();
    const first = t.lab.nodes.map((n) => n.name).find((n) => n !== leader)!;
    const node = t.lab.nodes.find((n) => n.name === first)!;
    const host = new URL(node.apiAddr).hostname;
    const live = await inMachine(t.lab, first, ['cat', layout.config]);
    const sums = Object.fromEntries(
      await Promise.all(
        t.lab.nodes.map(async (n) => [n.name, await inMachine(t.lab, n.name, ['sha256sum', layout.config])]),
      ),
    );
    const pids = Object.fromEntries(
      await Promise.all(t.lab.nodes.map(async (n) => [n.name, await mainPid(t.lab, n.name)])),
    );
    // One file for every node, with the per-node values as placeholders; its listener asks for an
    // address no machine has (TEST-NET-1), so it parses but the server cannot start with it.
    const template = live
      .replaceAll(`node_id = "${first}"`, 'node_id = "{{ node.name }}"')
      .replaceAll(host, '{{ node.host }}')
      .replace(/address = "\{\{ node\.host \}\}:8200"/, 'address = "192.0.2.1:8200"');
    expect(template).toContain('192.0.2.1:8200');
    const file = join(t.stateDir, 'bad.hcl');
    writeFileSync(file, `${template}\n`);

    const r = await maintain(['--config', file]);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/rolled back to its previous configuration/);
    expect(r.stdout + r.stderr).toContain(`validated: ${layout.binary} parses it`);

    // The first node has its old file again (the new one was really swapped in and out), runs
    // and votes; the other nodes' files and processes are as they were.
    expect(await inMachine(t.lab, first, ['sha256sum', layout.config])).toBe(sums[first]);
    expect(await inMachine(t.lab, first, ['grep', '-c', '192.0.2.1', `${layout.config}.vaultops-prev`])).toBe('0');
    expect(await mainPid(t.lab, first)).not.toBe(pids[first]);
    for (const n of t.lab.nodes.filter((x) => x.name !== first)) {
      expect(await inMachine(t.lab, n.name, ['sha256sum', layout.config])).toBe(sums[n.name]);
      expect(await mainPid(t.lab, n.name)).toBe(pids[n.name]);
    }
    expect(await inMachine(t.lab, first, ['systemctl', 'is-active', `${layout.unit}.service`])).toBe('active');
    expect(await leaderNow()).toBe(leader);
    expect(await healthy()).toEqual({ health: 'healthy', tolerance: 1 });

    // Fixed, and run again: on the first node only the log level changes, so it is reloaded
    // (same process); the others' files differ in more (their retry_join peers), so they are
    // restarted, the leader last with a handover. Every node ends with the new file, the old kept.
    const good = live
      .replaceAll(`node_id = "${first}"`, 'node_id = "{{ node.name }}"')
      .replaceAll(host, '{{ node.host }}')
      .replace('log_level = "info"', 'log_level = "debug"');
    expect(good).toContain('log_level = "debug"');
    writeFileSync(file, good);
    const before = Object.fromEntries(
      await Promise.all(t.lab.nodes.map(async (n) => [n.name, await mainPid(t.lab, n.name)])),
    );
    const again = await maintain(['--config', file]);
    expect(again.stdout + again.stderr).toMatch(/run \S+ ok/);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`${first}.*applied with systemctl reload`));
    expect(await mainPid(t.lab, first)).toBe(before[first]);
    for (const n of t.lab.nodes) {
      expect(await inMachine(t.lab, n.name, ['grep', '-c', 'log_level = "debug"', layout.config])).toBe('1');
      expect(await inMachine(t.lab, n.name, ['grep', '-c', `node_id = "${n.name}"`, layout.config])).toBe('1');
      expect(
        await inMachine(t.lab, n.name, ['grep', '-c', 'log_level = "info"', `${layout.config}.vaultops-prev`]),
      ).toBe('1');
      expect(await inMachine(t.lab, n.name, ['stat', '-c', '%U:%G %a', layout.config])).toBe(
        await inMachine(t.lab, n.name, ['stat', '-c', '%U:%G %a', `${layout.config}.vaultops-prev`]),
      );
      if (n.name !== first) expect(await mainPid(t.lab, n.name)).not.toBe(before[n.name]);
    }
    expect(await leaderNow()).not.toBe(leader);
    expect(await healthy()).toEqual({ health: 'healthy', tolerance: 1 });
  }, 300_000);

  it('printed and journaled no secret', () => {
    const journals = join(t.stateDir, 'runs');
    const files = readdirSync(journals, { recursive: true, withFileTypes: true })
      .filter((d) => d.isFile())
      .map((d) => readFileSync(join(d.parentPath, d.name), 'utf8'));
    const all = [...outputs, ...files].join('\n');
    expect(all.length).toBeGreaterThan(0);
    expect(t.secrets.filter((s) => all.includes(s))).toEqual([]);
  });
});
