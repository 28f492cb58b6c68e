import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ensureBinary } from '../../src/lab/binaries.js';
import { clusterFor, runInMachine } from '../../src/lab/lab.js';
import { serverLayout } from '../../src/lab/machine-root.js';
import { runProcess, type Ran } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { serveMirror, type Mirror } from '../helpers/release-mirror.js';

/**
 * The package strategy on systemd machines (`lab up --hosts`): the nodes got the server from an apt
 * repository (`service.install: package`), so `vaultops upgrade --version X` runs
 * `sudo -n apt-get install <pkg>=<version>` node by node. The repository is a flat apt repository
 * the test serves on the lab bridge, holding .debs built with dpkg-deb from the release binaries
 * (named and versioned like the vendor's: HashiCorp's `vault` 1.21.0-1, OpenBao's `openbao` 2.7.2),
 * and indexed with dpkg-scanpackages. The machines see only that repository, like a site with an
 * internal mirror. One machine lab, one flavour (the first under test).
 */
const all = [
  { flavor: 'openbao' as const, from: '2.6.2', to: '2.7.2', pkg: 'openbao', rev: '' },
  { flavor: 'vault' as const, from: '1.19.0', to: '1.21.0', pkg: 'vault', rev: '-1' },
].filter((p) => flavorsUnderTest().some((f) => f.flavor === p.flavor));
const pairs = all.slice(0, 1);

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'vaultops.js');
const NODE = process.execPath;

/** A .deb that installs `binary` at `path`, as the vendor's package installs its server. */
function buildDeb(repo: string, pkg: string, version: string, binary: string, path: string): void {
  const work = mkdtempSync(join(tmpdir(), 'vaultops-deb-'));
  try {
    mkdirSync(join(work, 'DEBIAN'));
    mkdirSync(join(work, path, '..'), { recursive: true });
    copyFileSync(binary, join(work, path));
    chmodSync(join(work, path), 0o755);
    writeFileSync(
      join(work, 'DEBIAN', 'control'),
      `Package: ${pkg}\nVersion: ${version}\nArchitecture: amd64\nMaintainer: vaultops tests <tests@example.invalid>\nSection: admin\nPriority: optional\nDescription: ${pkg} server (test package built from the release binary)\n`,
    );
    execFileSync(
      'dpkg-deb',
      ['--root-owner-group', '-Zgzip', '-z1', '--build', work, join(repo, `${pkg}_${version}_amd64.deb`)],
      {
        stdio: 'ignore',
      },
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

describe.each(pairs)(
  'package upgrade of $flavor machines $from -> $to with apt-get',
  ({ flavor, from, to, pkg, rev }) => {
    let t: TestLab;
    let repo: string;
    let mirror: Mirror;
    let inventory: string;
    const layout = serverLayout(flavor);
    const outputs: string[] = [];
    const cli = async (args: string[]): Promise<Ran> => {
      const r = await runProcess(NODE, [BIN, ...args], { ...t.env, VAULT_TOKEN: '', BAO_TOKEN: '' });
      outputs.push(r.stdout, r.stderr);
      return r;
    };
    const upgrade = (extra: string[]) =>
      cli(['upgrade', '-i', inventory, '--non-interactive', '--confirm', t.lab.name, '--wait-timeout', '90', ...extra]);
    const inMachine = async (node: string, command: string[]) => {
      const r = await runInMachine(t.lab, node, command, 300_000);
      if (r.code !== 0) throw new Error(`${node}: ${command.join(' ')} exit ${r.code}: ${r.stderr}`);
      return r.stdout.trim();
    };
    const installed = () =>
      Promise.all(t.lab.nodes.map((n) => inMachine(n.name, ['dpkg-query', '-W', '-f=${Version}', pkg])));
    const mainPids = () =>
      Promise.all(
        t.lab.nodes.map((n) =>
          inMachine(n.name, ['systemctl', 'show', '-p', 'ExecMainPID', '--value', `${layout.unit}.service`]),
        ),
      );
    const versions = async () => {
      const c = clusterFor(t.lab);
      try {
        return (await c.status()).nodes.map((n) => n.version);
      } finally {
        c.close();
      }
    };

    beforeAll(async () => {
      repo = mkdtempSync(join(tmpdir(), 'vaultops-apt-'));
      for (const v of [from, to])
        buildDeb(repo, pkg, `${v}${rev}`, (await ensureBinary({ flavor, version: v })).path, layout.binary);
      execFileSync('sh', ['-c', 'cd "$1" && dpkg-scanpackages --multiversion . /dev/null > Packages', 'sh', repo], {
        stdio: ['ignore', 'ignore', 'ignore'],
      });
      t = await startTestLab({
        name: `m-pkg-${flavor === 'vault' ? 'vault' : 'bao'}`,
        flavor,
        version: from,
        hosts: true,
      });
      // The bridge's address on this machine is .1 of the lab's /24; the machines reach it there.
      const bridge = t.lab.nodes[0]!.ip.replace(/\.\d+$/, '.1');
      mirror = await serveMirror(repo, bridge);
      for (const n of t.lab.nodes) {
        // Only the lab repository, as on a host that sees only its site's mirror.
        await inMachine(n.name, [
          'sh',
          '-c',
          `rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*; echo 'deb [trusted=yes] ${mirror.url}/ ./' > /etc/apt/sources.list.d/vaultops-lab.list; apt-get update -q`,
        ]);
        // The server as the package installed it (the same binary the lab started with).
        await inMachine(n.name, [
          'sh',
          '-c',
          `DEBIAN_FRONTEND=noninteractive apt-get install -y -q ${pkg}=${from}${rev}`,
        ]);
      }
      const inv = parse(readFileSync(t.inventory, 'utf8'));
      for (const c of Object.values(inv.clusters as Record<string, { nodes: { service: Record<string, unknown> }[] }>))
        for (const n of c.nodes) n.service = { ...n.service, install: 'package', package: pkg };
      inventory = join(t.stateDir, 'packages.yml');
      writeFileSync(inventory, stringify(inv));
    }, 600_000);
    afterAll(async () => {
      await t?.destroy();
      await mirror?.close();
      if (repo) rmSync(repo, { recursive: true, force: true });
    }, 120_000);

    it('refuses --binary on package-installed nodes (exit 2), saying to give --version', async () => {
      const r = await upgrade(['--binary', '/bin/true', '--sha256', 'a'.repeat(64)]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('installed from packages (service.install: package)');
      expect(r.stderr).toContain('--version X');
    });

    it('refuses at the gate (exit 4) a version the repository does not carry; no package or process changed', async () => {
      const pids = await mainPids();
      const r = await upgrade(['--version', '9.9.9']);
      expect(r.code).toBe(4);
      expect(r.stderr).toMatch(
        new RegExp(`package ${pkg} 9\\.9\\.9 is not in the host's repositories; no node was touched`),
      );
      expect(r.stderr).toContain(`${from}${rev}`);
      expect(await installed()).toEqual([`${from}${rev}`, `${from}${rev}`, `${from}${rev}`]);
      expect(await mainPids()).toEqual(pids);
    });

    it('upgrades node by node with sudo -n apt-get install, leader last; dpkg and the cluster agree on the new version', async () => {
      const pids = await mainPids();
      const r = await upgrade(['--version', to]);
      expect(r.stderr).toContain(`to package version ${to}`);
      expect(r.stderr).toContain(
        `package ${pkg} ${to}${rev} downloaded into the package cache (installed now: ${from}${rev})`,
      );
      expect(r.stderr).toContain(`package ${pkg} ${to}${rev} installed (was ${from}${rev})`);
      expect(r.code).toBe(0);
      expect(await versions()).toEqual([to, to, to]);
      expect(await installed()).toEqual([`${to}${rev}`, `${to}${rev}`, `${to}${rev}`]);
      // Every server was restarted by systemd, and runs the binary the package put there.
      const after = await mainPids();
      after.forEach((pid, i) => expect(pid).not.toBe(pids[i]));
      const want = execFileSync('sha256sum', [(await ensureBinary({ flavor, version: to })).path])
        .toString()
        .split(' ')[0];
      for (const n of t.lab.nodes)
        expect((await inMachine(n.name, ['sha256sum', layout.binary])).split(' ')[0]).toBe(want);
      // The plan order: the leader of the time went last.
      const order = /order: (.+?);/.exec(r.stderr)?.[1] ?? '';
      expect(order).toMatch(/\(leader, last\)$/);
    }, 600_000);

    it('never printed a secret of the lab', () => {
      const text = outputs.join('\n');
      for (const s of t.secrets) expect(text).not.toContain(s);
    });
  },
);
