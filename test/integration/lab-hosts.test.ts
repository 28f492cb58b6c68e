import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterFor, readLab, runInMachine, type LabRecord } from '../../src/lab/lab.js';
import { CliRunner, labSecrets, processesUnder, waitFor } from '../helpers/cli.js';

/**
 * `vaultops lab up --hosts` as a user runs it (the built CLI): three real systemd machines
 * (systemd-nspawn), each reached as a production host is, then down/up with data kept, a reboot,
 * and a destroy that leaves nothing on this machine. OpenBao only: the machine is the same for
 * both flavours; the upgrade suite on machines runs both.
 */
const NAME = 'm-hosts';

interface InvNode {
  name: string;
  api_addr: string;
  ssh: { host: string; port: number; user: string; sudo: boolean; key_file: string; host_key: string };
  service: { manager: string; name: string; binary: string; config: string; data_dir: string };
}

describe('a lab of systemd machines (lab up --hosts)', () => {
  let dir: string;
  let cli: CliRunner;
  let lab: LabRecord;
  let inventory: string;
  let nodes: InvNode[];
  let knownHosts: string;
  let secrets: string[];

  const ssh = (node: InvNode, command: string) => {
    const r = spawnSync(
      'ssh',
      [
        '-i',
        node.ssh.key_file,
        '-o',
        'BatchMode=yes',
        '-o',
        'StrictHostKeyChecking=yes',
        '-o',
        `UserKnownHostsFile=${knownHosts}`,
        '-o',
        'ConnectTimeout=10',
        '-p',
        String(node.ssh.port),
        `${node.ssh.user}@${node.ssh.host}`,
        command,
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  /** What the network and the machine's sshd looked like when an ssh failed: for the failure message. */
  const diagnose = async (node: InvNode) => {
    const host = (args: string[]) => {
      const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8', timeout: 10_000 });
      return `$ ${args.join(' ')}\n${r.stdout}${r.stderr}`;
    };
    const inside = async (args: string[]) => {
      const r = await runInMachine(lab, node.name, args, 15_000).catch((e: unknown) => ({
        stdout: String(e),
        stderr: '',
      }));
      return `# ${args.join(' ')}\n${r.stdout}${r.stderr}`;
    };
    return [
      '\n--- diagnosis',
      host(['ip', '-4', '-o', 'addr', 'show']),
      host(['ip', 'route', 'get', node.ssh.host]),
      host(['ip', 'neigh', 'show']),
      await inside(['ip', '-4', '-o', 'addr', 'show']),
      await inside(['ss', '-ltn']),
      await inside(['systemctl', 'status', '--no-pager', 'ssh.service']),
      await inside(['journalctl', '-u', 'ssh.service', '-n', '20', '--no-pager']),
    ].join('\n');
  };
  const token = () => (JSON.parse(readFileSync(lab.initFile, 'utf8')) as { root_token: string }).root_token;
  const kv = async (method: 'PUT' | 'GET', body?: string) => {
    const c = clusterFor(lab, token());
    try {
      const leader = await c.findLeader();
      // The root token's cubbyhole: stored in Raft like any secret, no engine to mount.
      return await leader.client.raw(method, '/cubbyhole/probe', body);
    } finally {
      c.close();
    }
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vaultops-test-hosts-'));
    cli = new CliRunner({ env: { ...process.env, VAULTOPS_STATE_DIR: join(dir, 'state') }, cwd: dir });
    inventory = join(dir, 'hosts.yml');
    const r = await cli.run(['lab', 'up', '--hosts', '--name', NAME, '--inventory', inventory], { timeoutMs: 300_000 });
    expect(r.stderr + r.stdout).toContain('3 machines');
    expect(r.code).toBe(0);
    lab = readLab(NAME, { VAULTOPS_STATE_DIR: join(dir, 'state') })!;
    secrets = labSecrets(lab.initFile);
    nodes = (parse(readFileSync(inventory, 'utf8')) as { clusters: Record<string, { nodes: InvNode[] }> }).clusters[
      NAME
    ]!.nodes;
    knownHosts = join(dir, 'known_hosts');
    writeFileSync(knownHosts, nodes.map((n) => `${n.ssh.host} ${n.ssh.host_key}`).join('\n') + '\n');
  }, 400_000);
  afterAll(async () => {
    if (lab) await cli.run(['lab', 'destroy', '--name', NAME]).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('writes an inventory of production-shaped hosts: ops with sudo on port 22, pinned host keys, the systemd unit at the usual paths', () => {
    expect(nodes.map((n) => n.name)).toEqual(['n1', 'n2', 'n3']);
    for (const n of nodes) {
      expect(n.api_addr).toMatch(/^https:\/\/10\.213\.\d+\.1[1-3]:8200$/);
      expect(n.ssh).toMatchObject({ port: 22, user: 'ops', sudo: true });
      expect(n.ssh.host_key).toMatch(/^ssh-ed25519 AAAA/);
      expect(n.service).toEqual({
        manager: 'systemd',
        name: 'openbao',
        binary: '/usr/local/bin/bao',
        config: '/etc/openbao/openbao.hcl',
        data_dir: '/opt/openbao/data',
      });
    }
  });

  it('`vaultops status` through that inventory reports a healthy cluster of 3 voters', async () => {
    const r = await cli.run(['status', '-i', inventory]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('HEALTHY');
    expect(r.stdout).toContain('3 voters');
  });

  it('each machine takes ssh as ops (host key as pinned), and ops runs root commands with sudo -n', async () => {
    for (const n of nodes) {
      const r = ssh(n, 'id -un; sudo -n id -u; hostname');
      expect(r.stderr).not.toContain('REMOTE HOST IDENTIFICATION HAS CHANGED');
      expect(r.code, `ssh to ${n.name}: ${r.stderr}${r.code === 0 ? '' : await diagnose(n)}`).toBe(0);
      expect(r.stdout.split('\n').slice(0, 3)).toEqual(['ops', '0', n.name]);
    }
  });

  it('a host that refuses logins (pam_nologin) is reported at once with what it said, not waited on', async () => {
    const n2 = lab.nodes[1]!;
    await runInMachine(lab, n2.name, ['sh', '-c', 'echo "Down for maintenance until 14:00." > /run/nologin'], 15_000);
    try {
      const r = await cli.run(['check', '-i', inventory, '--offline', '--json'], { timeoutMs: 60_000 });
      expect(`${r.stdout}${r.stderr}`).toContain('the server closed the connection during login');
      expect(`${r.stdout}${r.stderr}`).toContain('Down for maintenance until 14:00.');
    } finally {
      await runInMachine(lab, n2.name, ['rm', '-f', '/run/nologin'], 15_000);
    }
  });

  it("the server runs as openbao under a unit with the vendor's hardening, from the usual paths", () => {
    const r = ssh(
      nodes[1]!,
      'sudo -n systemctl show openbao.service -p ActiveState -p User -p Group -p ProtectSystem -p PrivateTmp -p NoNewPrivileges -p CapabilityBoundingSet -p LimitCORE -p LimitMEMLOCK -p KillMode -p KillSignal -p Restart -p ExecMainPID; stat -c "%U %a %n" /opt/openbao/data /usr/local/bin/bao; sudo -n stat -c "%U %a %n" /etc/openbao/openbao.hcl /opt/openbao/tls/tls.key',
    );
    expect(r.code).toBe(0);
    const props = Object.fromEntries(
      r.stdout
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    expect(props).toMatchObject({
      ActiveState: 'active',
      User: 'openbao',
      Group: 'openbao',
      ProtectSystem: 'full',
      PrivateTmp: 'yes',
      NoNewPrivileges: 'yes',
      CapabilityBoundingSet: 'cap_ipc_lock cap_syslog',
      LimitCORE: '0',
      LimitMEMLOCK: 'infinity',
      KillMode: 'process',
      KillSignal: '2',
      Restart: 'on-failure',
    });
    const pid = props['ExecMainPID'];
    expect(Number(pid)).toBeGreaterThan(0);
    expect(r.stdout).toContain('openbao 700 /opt/openbao/data');
    expect(r.stdout).toContain('root 755 /usr/local/bin/bao');
    expect(r.stdout).toContain('openbao 640 /etc/openbao/openbao.hcl');
    expect(r.stdout).toContain('openbao 600 /opt/openbao/tls/tls.key');
  });

  it("the lab's own state (init.json with the keys) is not visible inside a machine", async () => {
    const r = ssh(nodes[0]!, `sudo -n ls ${JSON.stringify(lab.initFile)} 2>&1; echo rc=$?`);
    expect(r.stdout, `ssh to n1: ${r.stderr}${r.code === 0 ? '' : await diagnose(nodes[0]!)}`).toContain(
      'No such file or directory',
    );
  });

  it('lab reboot --node n2 reboots the machine for real; its server comes back sealed', async () => {
    const bootBefore = ssh(nodes[1]!, "cut -d' ' -f22 /proc/1/stat").stdout.trim();
    const r = await cli.run(['lab', 'reboot', '--name', NAME, '--node', 'n2']);
    expect(r.code).toBe(0);
    expect(ssh(nodes[1]!, 'systemctl is-system-running --wait; systemctl is-active openbao').stdout).toContain(
      'active',
    );
    // A new systemd: the machine's PID 1 started after the command, the boot is a new one.
    const c = clusterFor(lab);
    try {
      const st = await waitFor(
        'n2 sealed after reboot',
        async () => ((await c.client('n2').sealStatus()).sealed ? true : undefined),
        30_000,
      );
      expect(st).toBe(true);
    } finally {
      c.close();
    }
    expect(ssh(nodes[1]!, "cut -d' ' -f22 /proc/1/stat").stdout.trim()).not.toBe(bootBefore);
  });

  it('lab down powers the machines off and removes their network; lab up boots them again with the data kept', async () => {
    const put = await kv('PUT', JSON.stringify({ kept: 'yes' }));
    expect(put.status).toBe(204);
    const down = await cli.run(['lab', 'down', '--name', NAME]);
    expect(down.code).toBe(0);
    expect(netns()).toEqual([]);
    expect(mountsUnder(lab.dir)).toEqual([]);
    const st = await cli.run(['lab', 'status', '--name', NAME, '--json']);
    expect((JSON.parse(st.stdout) as Array<{ state: string }>)[0]!.state).toBe('stopped');
    const up = await cli.run(['lab', 'up', '--name', NAME], { timeoutMs: 300_000 });
    expect(up.code).toBe(0);
    const get = await kv('GET');
    expect(get.status).toBe(200);
    expect((JSON.parse(get.body.toString('utf8')) as { data: { kept: string } }).data.kept).toBe('yes');
  });

  it('lab destroy leaves no mount, network namespace, link or process behind, and no secret was printed', async () => {
    const r = await cli.run(['lab', 'destroy', '--name', NAME]);
    expect(r.code).toBe(0);
    expect(mountsUnder(lab.dir)).toEqual([]);
    expect(netns()).toEqual([]);
    expect(links(lab.machines!.subnet)).toEqual([]);
    expect(processesUnder(lab.dir)).toEqual([]);
    cli.expectNoSecrets(secrets);
    lab = undefined as unknown as LabRecord;
  });

  function netns(): string[] {
    return spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter((l) => l.includes(`vaultops-${NAME}-`));
  }
  function links(subnet: number): string[] {
    return spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter((l) => new RegExp(`\\b(vaultops${subnet}|vo${subnet}n\\d+)\\b`).test(l));
  }
  function mountsUnder(path: string): string[] {
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .filter((p) => p.startsWith(path));
  }
});
