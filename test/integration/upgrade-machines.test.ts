import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBinary } from '../../src/lab/binaries.js';
import { clusterFor, runInMachine, setMachineLink, setOpsSudo, waitHealthy } from '../../src/lab/lab.js';
import { serverLayout } from '../../src/lab/machine-root.js';
import { runProcess, type Ran } from '../helpers/cli.js';
import { upgradePairs } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { inMachine, mainPids, staged, versions } from '../helpers/machines.js';

/**
 * `vaultops upgrade` (the built CLI) on a lab of systemd machines (`lab up --hosts`): the server is
 * stopped and started with `sudo -n systemctl` by the ops user, as on production hosts. Then
 * `vaultops check` sees the real unit, user, permissions, core-dump limit and clock.
 * One machine lab per flavour.
 */
const pairs = upgradePairs();

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'vaultops.js');
const NODE = process.execPath;
const short = { openbao: 'bao', vault: 'vault' } as const;

describe.each(pairs)(
  'rolling upgrade of $flavor machines $from -> $to through sudo -n systemctl',
  ({ flavor, from, to }) => {
    let t: TestLab;
    let newBinary: string;
    let sum: string;
    const layout = serverLayout(flavor);
    const outputs: string[] = [];
    // Some faults are tested on one flavour only: such a test is registered only in that flavour's
    // run, so nothing is reported as skipped.
    const itOn = (only: string) => (name: string, fn: () => Promise<void>, timeout?: number) => {
      if (flavor === only) it(name, fn, timeout);
    };
    const cli = async (args: string[]): Promise<Ran> => {
      const r = await runProcess(NODE, [BIN, ...args], { ...t.env, VAULT_TOKEN: '', BAO_TOKEN: '' });
      outputs.push(r.stdout, r.stderr);
      return r;
    };
    const upgrade = (extra: string[] = []) =>
      cli([
        'upgrade',
        '-i',
        t.inventory,
        '--binary',
        newBinary,
        '--sha256',
        sum,
        '--non-interactive',
        '--confirm',
        t.lab.name,
        '--wait-timeout',
        '90',
        ...extra,
      ]);
    beforeAll(async () => {
      newBinary = (await ensureBinary({ flavor, version: to })).path;
      sum = createHash('sha256').update(readFileSync(newBinary)).digest('hex');
      t = await startTestLab({ name: `m-up-${short[flavor]}`, flavor, version: from, hosts: true });
    }, 400_000);
    afterAll(async () => {
      await t?.destroy();
    }, 120_000);

    itOn('openbao')('refuses at the gate (exit 4) when sshd is down on one machine, before any change', async () => {
      const pids = await mainPids(t.lab);
      await inMachine(t.lab, 'n3', ['systemctl', 'stop', 'ssh.service']);
      try {
        const r = await upgrade();
        expect(r.code).toBe(4);
        expect(r.stderr).toContain('n3');
        expect(await mainPids(t.lab)).toEqual(pids);
        expect(await staged(t.lab)).toEqual([]);
        expect(await versions(t.lab)).toEqual([from, from, from]);
      } finally {
        await inMachine(t.lab, 'n3', ['systemctl', 'start', 'ssh.service']);
      }
    });

    itOn('openbao')(
      'refuses at the gate (exit 4) naming `sudo -n` when sudo wants a password on one machine; nothing staged or stopped',
      async () => {
        const pids = await mainPids(t.lab);
        await setOpsSudo(t.lab, 'n2', false);
        try {
          const r = await upgrade();
          expect(r.code).toBe(4);
          expect(r.stderr).toContain('sudo -n');
          expect(r.stderr).toContain('n2');
          expect(await mainPids(t.lab)).toEqual(pids);
          expect(await staged(t.lab)).toEqual([]);
          expect(await versions(t.lab)).toEqual([from, from, from]);
        } finally {
          await setOpsSudo(t.lab, 'n2', true);
        }
      },
    );

    /** Every node upgraded by systemd (stopped by the unit, not killed), running the swapped binary. */
    const expectUpgradedThroughSystemd = async (pidsBefore: string[]) => {
      expect(await versions(t.lab)).toEqual([to, to, to]);
      const after = await mainPids(t.lab);
      after.forEach((pid, i) => expect(pid).not.toBe(pidsBefore[i]));
      for (const n of t.lab.nodes) {
        const journal = await inMachine(t.lab, n.name, [
          'journalctl',
          '-u',
          `${layout.unit}.service`,
          '--no-pager',
          '-o',
          'cat',
        ]);
        expect(journal).toMatch(/Stopped .*(OpenBao|Vault)/);
        expect(await inMachine(t.lab, n.name, ['systemctl', 'is-active', `${layout.unit}.service`])).toBe('active');
        expect(await inMachine(t.lab, n.name, [layout.binary, 'version'])).toContain(`v${to}`);
        expect(await inMachine(t.lab, n.name, ['stat', '-c', '%U %a', layout.binary])).toBe('root 755');
        expect((await runInMachine(t.lab, n.name, ['test', '-e', `${layout.binary}.vaultops-prev`])).code).toBe(0);
      }
    };

    itOn('vault')(
      'upgrades every machine through its systemd unit: new MainPIDs, the previous binary kept, one leader on the new version',
      async () => {
        const pids = await mainPids(t.lab);
        const r = await upgrade();
        expect(r.stderr + r.stdout).toContain(`Upgraded ${t.lab.name} to ${to}`);
        expect(r.code).toBe(0);
        await expectUpgradedThroughSystemd(pids);
      },
      420_000,
    );

    itOn('openbao')(
      "halts before the next node when that machine's network is cut mid-run, quorum kept; run again once the link is back, it finishes through systemd",
      async () => {
        const pids = await mainPids(t.lab);
        let order: string[] = [];
        let cut: string | undefined;
        const cutting: Array<Promise<void>> = [];
        const r = await runProcess(
          NODE,
          [
            BIN,
            'upgrade',
            '-i',
            t.inventory,
            '--binary',
            newBinary,
            '--sha256',
            sum,
            '--non-interactive',
            '--confirm',
            t.lab.name,
            '--wait-timeout',
            '30',
          ],
          { ...t.env, VAULT_TOKEN: '', BAO_TOKEN: '' },
          (line) => {
            const o = /order: (.+?);/.exec(line);
            if (o) order = o[1]!.split(' -> ').map((x) => x.split(' ')[0]!);
            // The first node is back and healthy: pull the cable of the next one before it is taken down.
            if (!cut && order.length === 3 && new RegExp(`${order[0]}: healthy voter on`).test(line)) {
              cut = order[1]!;
              cutting.push(setMachineLink(t.lab, cut, 'down'));
            }
          },
        );
        outputs.push(r.stdout, r.stderr);
        await Promise.all(cutting);
        expect(cut).toBeDefined();
        try {
          expect(r.code).not.toBe(0);
          expect(r.stderr).toMatch(/halted|Not taking|not healthy|unreachable|cannot be reached/i);
          // The cut machine and the leader were not touched: same MainPIDs (seen from inside, not over the network).
          const now = await mainPids(t.lab);
          const untouched = [cut!, order[2]!].map((name) => t.lab.nodes.findIndex((n) => n.name === name));
          for (const i of untouched) expect(now[i]).toBe(pids[i]);
          // Quorum kept: the two reachable machines still have a leader.
          const c = clusterFor(t.lab);
          try {
            expect(['active', 'standby']).toContain((await c.client(order[0]!).health()).state);
            expect((await c.findLeader()).node.name).not.toBe(cut);
          } finally {
            c.close();
          }
        } finally {
          await setMachineLink(t.lab, cut!, 'up');
        }
        // As an operator would: once `status` is healthy again (the machine rejoined), run it again.
        await waitHealthy(t.lab, t.init.root_token, () => undefined, 120_000);
        const again = await upgrade();
        expect(again.stderr + again.stdout).toContain(`all nodes on ${to}`);
        expect(again.code).toBe(0);
        await expectUpgradedThroughSystemd(pids);
      },
      420_000,
    );

    it('vaultops check sees the real hosts: unit, user, permissions, core-dump limit and clock, each as expected', async () => {
      const r = await cli(['check', '-i', t.inventory, '--json']);
      const report = JSON.parse(r.stdout) as {
        checks: Array<{ id: string; target: string; status: string; found: string }>;
      };
      const host = (id: string) =>
        report.checks
          .filter((c) => c.id === id)
          .map((c) => `${c.target} ${c.status}`)
          .sort();
      const all = (status: string) => ['n1', 'n2', 'n3'].map((n) => `${n} ${status}`);
      // The vendor's unit as written by lab up --hosts: the hardening, LimitCORE=0, the service user.
      expect(host('host.unit-hardening')).toEqual(all('pass'));
      expect(host('host.core-dumps')).toEqual(all('pass'));
      expect(host('host.server-user')).toEqual(all('pass'));
      expect(host('host.permissions')).toEqual(all('pass'));
      expect(host('host.ports')).toEqual(all('pass'));
      expect(host('host.swap')).toEqual(all('pass'));
      // A container's systemd-timesyncd does not run (ConditionVirtualization=!container): the
      // clock is the host's, not synchronised by the machine, and the rule says so.
      expect(host('host.clock')).toEqual(all('fail'));
      expect(report.checks.find((c) => c.id === 'host.clock')!.found).toContain('NTPSynchronized=no');
      // No SELinux or AppArmor on this machine kind.
      expect(host('host.mac')).toEqual(all('fail'));
      expect(report.checks.find((c) => c.id === 'host.server-user' && c.target === 'n1')!.found).toContain(
        `runs as ${layout.user}`,
      );
    });

    it('printed no secret', () => {
      const all = outputs.join('\n');
      expect(all.length).toBeGreaterThan(0);
      expect(t.secrets.filter((s) => all.includes(s))).toEqual([]);
    });
  },
);
