import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBinary } from '../../src/lab/binaries.js';
import { clusterFor, runInMachine } from '../../src/lab/lab.js';
import { serverLayout } from '../../src/lab/machine-root.js';
import { runProcess, type Ran } from '../helpers/cli.js';
import { upgradePairs } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { inMachine, mainPids, versions } from '../helpers/machines.js';

/**
 * `vaultops upgrade` stages the new binary on the first node before it goes down and on the later
 * nodes in the background while earlier nodes restart. A later host that can no longer take the
 * binary (here its binary directory turns read-only during the run: EROFS, as after a file system
 * error) stops the run before that node, with the cluster healthy, and a second run finishes it.
 * On a lab of systemd machines (`lab up --hosts`), one per flavour.
 */
const pairs = upgradePairs();

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'vaultops.js');
const NODE = process.execPath;
const short = { openbao: 'bao', vault: 'vault' } as const;

describe.each(pairs)(
  'rolling upgrade of $flavor machines $from -> $to, staging in the background',
  ({ flavor, from, to }) => {
    let t: TestLab;
    let newBinary: string;
    let sum: string;
    const layout = serverLayout(flavor);
    const binDir = layout.binary.slice(0, layout.binary.lastIndexOf('/'));
    const outputs: string[] = [];
    const upgrade = (o: { onLine?: (line: string) => void; binary?: string; extra?: string[] } = {}): Promise<Ran> =>
      runProcess(
        NODE,
        [
          BIN,
          'upgrade',
          '-i',
          t.inventory,
          '--binary',
          o.binary ?? newBinary,
          '--sha256',
          sum,
          '--non-interactive',
          '--confirm',
          t.lab.name,
          '--wait-timeout',
          '90',
          ...(o.extra ?? []),
        ],
        { ...t.env, VAULT_TOKEN: '', BAO_TOKEN: '' },
        o.onLine,
      ).then((r) => {
        outputs.push(r.stdout, r.stderr);
        return r;
      });
    const index = (node: string) => t.lab.nodes.findIndex((n) => n.name === node);

    beforeAll(async () => {
      newBinary = (await ensureBinary({ flavor, version: to })).path;
      sum = createHash('sha256').update(readFileSync(newBinary)).digest('hex');
      t = await startTestLab({ name: `m-stg-${short[flavor]}`, flavor, version: from, hosts: true });
    }, 400_000);
    afterAll(async () => {
      await t?.destroy();
    }, 120_000);

    it('--fetch-on-hosts --stage-only: each machine downloads the binary from a mirror on the lab network through sudo, checked there; no node stopped', async () => {
      // The mirror listens on this machine's address on the lab bridge, which the machines reach.
      const bridge = t.lab.nodes[0]!.ip.replace(/\.\d+$/, '.1');
      const gets: string[] = [];
      const server = createServer((req, res) => {
        gets.push(req.url ?? '');
        createReadStream(newBinary).pipe(res);
      });
      await new Promise<void>((r) => server.listen(0, bridge, () => r()));
      const pids = await mainPids(t.lab);
      const staged = `${layout.binary}.vaultops-staged`;
      try {
        const url = `http://${bridge}:${(server.address() as AddressInfo).port}/mirror/${short[flavor]}`;
        const r = await upgrade({ binary: url, extra: ['--fetch-on-hosts', '--stage-only'] });
        expect(r.code).toBe(0);
        expect(r.stdout).toContain(`Staged ${to} on`);
        expect(gets).toEqual([`/mirror/${short[flavor]}`, `/mirror/${short[flavor]}`, `/mirror/${short[flavor]}`]);
        // Downloaded through sudo: root's file from its creation, as an upload's is.
        for (const n of t.lab.nodes)
          expect(await inMachine(t.lab, n.name, ['sh', '-c', `stat -c %U ${staged}; sha256sum ${staged}`])).toBe(
            `root\n${sum}  ${staged}`,
          );
        expect(await mainPids(t.lab)).toEqual(pids);
      } finally {
        server.close();
        // The next test stages during the run: no copy may be waiting for it.
        for (const n of t.lab.nodes) await inMachine(t.lab, n.name, ['rm', '-f', staged]);
      }
    }, 300_000);

    it('a later host that cannot take the binary stops the run before that node, cluster healthy and that host unchanged; a run after the fix finishes', async () => {
      const c = clusterFor(t.lab);
      let leader: string;
      try {
        leader = (await c.findLeader()).node.name;
      } finally {
        c.close();
      }
      const pids = await mainPids(t.lab);
      // The leader goes down last, so its binary is staged last. Once every host passed the room check,
      // its binary directory turns read-only (a real read-only bind mount inside the machine).
      let faulted: Promise<unknown> | undefined;
      const r = await upgrade({
        onLine: (line) => {
          if (!faulted && /room to stage/.test(line))
            faulted = inMachine(t.lab, leader, [
              'sh',
              '-c',
              `mount --bind ${binDir} ${binDir} && mount -o remount,bind,ro ${binDir}`,
            ]);
        },
      });
      await faulted;
      try {
        expect(faulted).toBeDefined();
        expect(r.code).toBe(4);
        expect(r.stderr).toContain(`Upgrade stopped before ${leader}: the new binary could not be staged there`);
        expect(r.stderr).toContain(`${leader} was not touched`);
        expect(r.stderr).toMatch(/is healthy on mixed versions/);
        expect(r.stderr).toContain('run the same upgrade again');
        // The standbys are upgraded; the leader still runs the old binary, in the same process.
        const v = await versions(t.lab);
        t.lab.nodes.forEach((n, i) => expect(v[i]).toBe(n.name === leader ? from : to));
        expect((await mainPids(t.lab))[index(leader)]).toBe(pids[index(leader)]);
        const c2 = clusterFor(t.lab);
        try {
          const st = await c2.status();
          expect(st.health).toBe('healthy');
          // Untouched, it is still the active node: no failover happened for the stopped run.
          expect((await c2.findLeader()).node.name).toBe(leader);
        } finally {
          c2.close();
        }
        // Nothing half-changed on that host: the live binary is the old one, no staged or previous
        // copy, no upload left behind next to the binary or in /tmp.
        expect(await inMachine(t.lab, leader, [layout.binary, 'version'])).toContain(`v${from}`);
        for (const suffix of ['.vaultops-staged', '.vaultops-prev'])
          expect((await runInMachine(t.lab, leader, ['test', '-e', `${layout.binary}${suffix}`])).code).not.toBe(0);
        expect(
          await inMachine(t.lab, leader, ['sh', '-c', `ls -a /tmp ${binDir} | grep -c vaultops-upload || true`]),
        ).toBe('0');
      } finally {
        await inMachine(t.lab, leader, ['umount', binDir]);
      }

      // Fixed: the same command again skips the upgraded nodes and finishes with the old leader.
      const again = await upgrade();
      expect(again.code).toBe(0);
      expect(again.stdout).toContain(`Upgraded ${t.lab.name} to ${to}`);
      for (const n of t.lab.nodes.filter((x) => x.name !== leader))
        expect(again.stdout).toContain(`${n.name} (already on ${to})`);
      expect(await versions(t.lab)).toEqual([to, to, to]);
      expect((await mainPids(t.lab))[index(leader)]).not.toBe(pids[index(leader)]);
      expect(await inMachine(t.lab, leader, [layout.binary, 'version'])).toContain(`v${to}`);
    }, 420_000);

    it('printed no secret', () => {
      const all = outputs.join('\n');
      expect(all.length).toBeGreaterThan(0);
      expect(t.secrets.filter((s) => all.includes(s))).toEqual([]);
    });
  },
);
