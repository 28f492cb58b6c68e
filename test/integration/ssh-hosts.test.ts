import { createHash } from 'node:crypto';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SshHost, type SshTarget } from '../../src/ssh/connection.js';
import { fingerprint, parsePublicKeyLine } from '../../src/ssh/host-key.js';
import { LabService } from '../../src/ssh/services.js';
import { SSH_PORT } from '../../src/lab/ssh-hosts.js';
import { GateError, InputError } from '../../src/core/errors.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { waitFor } from '../helpers/cli.js';
import { runHostChecks } from '../../src/check/host-checks.js';
import type { NodeSpec } from '../../src/inventory/schema.js';
import { remoteBinaryVersion, stageBinary, STAGED_SUFFIX } from '../../src/upgrade/binary-install.js';
import { VaultopsError } from '../../src/core/errors.js';
import { openNodeHost } from '../../src/ssh/open-host.js';
import { redactor } from '../../src/core/redact.js';

/**
 * The SSH layer against the real OpenSSH sshd that `lab up --ssh` runs on each node's loopback
 * address. Flavour matters little here, but the lab runs either flavour's server, so both run.
 */
const upgradePairs = [
  { flavor: 'openbao' as const, from: '2.6.2', to: '2.7.2' },
  { flavor: 'vault' as const, from: '1.19.0', to: '1.21.0' },
].filter((p) => flavorsUnderTest().some((f) => f.flavor === p.flavor));

describe.each(upgradePairs)('SSH hosts of a $flavor lab', ({ flavor, from }) => {
  let t: TestLab;
  const target = (name: string, extra: Partial<SshTarget> = {}): SshTarget => {
    const node = t.lab.nodes.find((n) => n.name === name)!;
    return {
      host: node.ip,
      port: SSH_PORT,
      user: 'root',
      keyFile: t.lab.ssh!.keyFile,
      hostKey: t.lab.ssh!.nodes[name]!.hostKey,
      label: name,
      ...extra,
    };
  };

  beforeAll(async () => {
    t = await startTestLab({ name: `c-ssh-${flavor}`, flavor, version: from, ssh: true });
  });
  afterAll(async () => {
    await t?.destroy();
  });

  it("lab up --ssh writes each node's ssh block with the pinned host key into the inventory", () => {
    const inv = readFileSync(t.inventory, 'utf8');
    for (const n of t.lab.nodes) {
      expect(inv).toContain(`host: "${n.ip}"`);
      expect(inv).toContain(`host_key: "${t.lab.ssh!.nodes[n.name]!.hostKey}"`);
    }
    expect(inv).toContain(`port: ${SSH_PORT}`);
  });

  it('runs commands and reports exit codes, with output bounded to its tail', async () => {
    const h = await SshHost.connect(target('n1'));
    try {
      const r = await h.exec('echo out; echo err >&2; exit 7');
      expect(r).toMatchObject({ code: 7, stdout: 'out\n', stderr: 'err\n' });
      const big = await h.exec('seq 1 100000', { maxBytes: 100 });
      expect(big.code).toBe(0);
      expect(big.stdout.length).toBeLessThanOrEqual(100);
      expect(big.stdout.trimEnd().endsWith('100000')).toBe(true);
      const who = await h.exec('id -u');
      expect(who.stdout.trim()).toBe('0');
    } finally {
      h.close();
    }
  });

  // The temporary files of uploads into `dir` (mktemp next to the target).
  const leftovers = (dir: string) => readdirSync(dir).filter((f) => f.includes('vaultops-upload'));

  it('uploads a file, verifies its sha256 on the host, and refuses a file that does not match the expected sum', async () => {
    const local = join(t.stateDir, 'payload.bin');
    const data = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    writeFileSync(local, data);
    const sha = createHash('sha256').update(data).digest('hex');
    const dir = t.lab.nodes[1]!.dir;
    const remote = join(dir, 'payload.bin');
    const h = await SshHost.connect(target('n2'));
    try {
      let reported = 0;
      const r = await h.upload(local, remote, { sha256: sha, mode: 0o600, onBytes: (sent) => (reported = sent) });
      expect(r).toEqual({ sha256: sha, bytes: data.length });
      expect(reported).toBe(data.length);
      expect(await h.sha256(remote)).toBe(sha);
      expect(statSync(remote).mode & 0o777).toBe(0o600);
      // The bytes that arrive differ from the expected sum: nothing at the target, nothing left next to it.
      const wrong = await h.upload(local, `${remote}.2`, { sha256: '0'.repeat(64) }).catch((e: unknown) => e);
      expect(wrong).toBeInstanceOf(InputError);
      expect(existsSync(`${remote}.2`)).toBe(false);
      expect(leftovers(dir)).toEqual([]);
    } finally {
      h.close();
    }
  });

  it('an upload cut short by a lost connection leaves nothing behind: the host sees a sum that differs', async () => {
    const local = join(t.stateDir, 'big.bin');
    const data = Buffer.alloc(96 * 1024 * 1024, 3);
    writeFileSync(local, data);
    const sha = createHash('sha256').update(data).digest('hex');
    const dir = t.lab.nodes[1]!.dir;
    const remote = join(dir, 'big.bin');
    const h = await SshHost.connect(target('n2'));
    let cutAt = 0;
    const r = await h
      .upload(local, remote, {
        sha256: sha,
        onBytes: (sent) => {
          if (!cutAt && sent >= 8 * 1024 * 1024) {
            cutAt = sent;
            h.close();
          }
        },
      })
      .catch((e: unknown) => e);
    expect(cutAt).toBeGreaterThan(0);
    expect(r).toBeInstanceOf(VaultopsError);
    expect((r as Error).message).toContain('the connection closed');
    // The remote command is not killed (no pty): its stdin ends, tee and sha256sum finish, and it
    // removes its temporary file itself.
    await waitFor('the temporary file to be removed', () => (leftovers(dir).length ? undefined : true), 30_000);
    expect(existsSync(remote)).toBe(false);
  });

  it('refuses a host whose key differs from the pinned one, showing the SHA256 fingerprint it was offered', async () => {
    const otherKey = t.lab.ssh!.nodes['n2']!.hostKey; // a real key, but n2's, not n1's
    const e = await SshHost.connect(target('n1', { hostKey: otherKey })).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(GateError);
    const presented = fingerprint(parsePublicKeyLine(t.lab.ssh!.nodes['n1']!.hostKey)!.blob);
    const text = [(e as GateError).message, ...(e as GateError).details].join('\n');
    expect(text).toContain('does not match the pinned key');
    expect(text).toContain(presented);
    expect(text).toMatch(/SHA256:[A-Za-z0-9+/]{43}/);
  });

  it('refuses an unknown host unless trust-on-first-use is asked for, then pins it in known_hosts and refuses a changed key', async () => {
    const knownHosts = join(t.stateDir, 'known_hosts');
    const unknown = await SshHost.connect(target('n3', { hostKey: undefined, knownHosts })).catch((x: unknown) => x);
    expect(unknown).toBeInstanceOf(GateError);
    expect((unknown as GateError).message).toContain('is unknown');

    const tofu = await SshHost.connect(target('n3', { hostKey: undefined, knownHosts, trustOnFirstUse: true }));
    tofu.close();
    expect(readFileSync(knownHosts, 'utf8')).toContain(`[${t.lab.nodes[2]!.ip}]:${SSH_PORT} ssh-ed25519 `);
    const again = await SshHost.connect(target('n3', { hostKey: undefined, knownHosts }));
    again.close();

    // Another host's key recorded for n3's address: the known_hosts entry no longer matches.
    const n1Key = t.lab.ssh!.nodes['n1']!.hostKey;
    writeFileSync(knownHosts, `[${t.lab.nodes[2]!.ip}]:${SSH_PORT} ${n1Key}\n`);
    const changed = await SshHost.connect(
      target('n3', { hostKey: undefined, knownHosts, trustOnFirstUse: true }),
    ).catch((x: unknown) => x);
    expect(changed).toBeInstanceOf(GateError);
    expect((changed as GateError).message).toContain('differs from the one in');
  });

  it("trust-on-first-use never accepts a listed host's other key, even of a type not listed for it", async () => {
    const dir = mkdtempSync(join(t.stateDir, 'tofu-'));
    const knownHosts = join(dir, 'known_hosts');
    // n3 is listed, but with an ECDSA key: its ed25519 key is another key, not a first use.
    execFileSync('ssh-keygen', ['-q', '-t', 'ecdsa', '-N', '', '-f', join(dir, 'other')]);
    const listed = `[${t.lab.nodes[2]!.ip}]:${SSH_PORT} ${readFileSync(join(dir, 'other.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ')}\n`;
    writeFileSync(knownHosts, listed, { mode: 0o600 });
    const e = await SshHost.connect(target('n3', { hostKey: undefined, knownHosts, trustOnFirstUse: true })).catch(
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(GateError);
    expect((e as GateError).message).toContain('differs from the one in');
    expect(readFileSync(knownHosts, 'utf8')).toBe(listed);
  });

  it('trust-on-first-use without a known_hosts file creates it (0600), records the key and checks it next time', async () => {
    const dir = mkdtempSync(join(t.stateDir, 'tofu-'));
    const knownHosts = join(dir, 'known_hosts');
    const first = await SshHost.connect(target('n2', { hostKey: undefined, knownHosts, trustOnFirstUse: true }));
    first.close();
    expect(statSync(knownHosts).mode & 0o777).toBe(0o600);
    expect(readFileSync(knownHosts, 'utf8')).toContain(`[${t.lab.nodes[1]!.ip}]:${SSH_PORT} ssh-ed25519 `);
    const again = await SshHost.connect(target('n2', { hostKey: undefined, knownHosts }));
    again.close();
    // No known_hosts in the target at all: vaultops' own file in the state dir records it.
    const before = process.env['VAULTOPS_STATE_DIR'];
    process.env['VAULTOPS_STATE_DIR'] = dir;
    try {
      const own = join(dir, 'known_hosts');
      writeFileSync(own, '', { mode: 0o600 });
      const tofu = await SshHost.connect(target('n1', { hostKey: undefined, trustOnFirstUse: true }));
      tofu.close();
      expect(readFileSync(own, 'utf8')).toContain(`[${t.lab.nodes[0]!.ip}]:${SSH_PORT} ssh-ed25519 `);
      const checked = await SshHost.connect(target('n1', { hostKey: undefined }));
      checked.close();
      // The recorded key is what is checked: n2's key planted for n1's address is refused.
      writeFileSync(own, `[${t.lab.nodes[0]!.ip}]:${SSH_PORT} ${t.lab.ssh!.nodes['n2']!.hostKey}\n`);
      const planted = await SshHost.connect(target('n1', { hostKey: undefined, trustOnFirstUse: true })).catch(
        (x: unknown) => x,
      );
      expect(planted).toBeInstanceOf(GateError);
    } finally {
      if (before === undefined) delete process.env['VAULTOPS_STATE_DIR'];
      else process.env['VAULTOPS_STATE_DIR'] = before;
    }
  });

  describe('the conventions of OpenSSH users: ~/.ssh/known_hosts, ~/.ssh/config, passphrases, ssh-agent', () => {
    // HOME points at a temp dir for these tests (os.homedir() follows it), so ~/.ssh is ours.
    let home: string;
    const saved: Record<string, string | undefined> = {};
    const ip = (i: number) => t.lab.nodes[i]!.ip;
    const key = (name: string) => t.lab.ssh!.nodes[name]!.hostKey;
    const setEnv = (name: string, value: string | undefined) => {
      if (!(name in saved)) saved[name] = process.env[name];
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    };
    const refused = (p: Promise<unknown>) =>
      p.then(
        (h) => {
          (h as SshHost).close();
          return undefined;
        },
        (e: unknown) => e as VaultopsError,
      );
    const PASSPHRASE = `pass-${Date.now()}-phrase`;

    beforeAll(() => {
      home = mkdtempSync(join(t.stateDir, 'home-'));
      mkdirSync(join(home, '.ssh'), { mode: 0o700 });
      setEnv('HOME', home);
      setEnv('VAULTOPS_STATE_DIR', join(home, 'state'));
      setEnv('SSH_AUTH_SOCK', undefined);
      // A passphrase-protected key (ssh-keygen -N), authorised on the lab's sshd next to the lab key.
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', PASSPHRASE, '-f', join(home, '.ssh', 'locked')]);
      appendFileSync(
        join(dirname(t.lab.ssh!.keyFile), 'authorized_keys'),
        readFileSync(join(home, '.ssh', 'locked.pub')),
      );
      copyFileSync(t.lab.ssh!.keyFile, join(home, '.ssh', 'lab_key'));
    });
    afterAll(() => {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    });

    it('without a pinned key, ~/.ssh/known_hosts decides: wildcards, negation, hashed names, @revoked; an unknown host is still refused', async () => {
      const kh = join(home, '.ssh', 'known_hosts');
      const prefix = ip(0).split('.').slice(0, 3).join('.');
      // n1's key for every lab address but n2 (a wildcard and a negation); n2 in a hashed line
      // (hashed by ssh-keygen -H itself); n3 later @revoked.
      writeFileSync(join(home, 'plain'), `[${ip(1)}]:${SSH_PORT} ${key('n2')}\n`);
      execFileSync('ssh-keygen', ['-q', '-H', '-f', join(home, 'plain')]);
      const hashed = readFileSync(join(home, 'plain'), 'utf8');
      expect(hashed).toMatch(/^\|1\|/);
      expect(hashed).not.toContain(ip(1));
      writeFileSync(kh, `[${prefix}.*]:${SSH_PORT},![${ip(1)}]:${SSH_PORT} ${key('n1')}\n`);
      const noPin = (name: string, extra: Partial<SshTarget> = {}) => target(name, { hostKey: undefined, ...extra });

      (await SshHost.connect(noPin('n1'))).close();
      // The wildcard lists n1's key for n3 too: a different key, refused even with trust-on-first-use.
      const n3 = await refused(SshHost.connect(noPin('n3', { trustOnFirstUse: true })));
      expect(n3).toBeInstanceOf(GateError);
      expect(n3!.message).toContain('differs from the one in');
      // The negation leaves n2 out: unknown, refused without trust-on-first-use.
      const n2 = await refused(SshHost.connect(noPin('n2')));
      expect(n2).toBeInstanceOf(GateError);
      expect(n2!.message).toContain('is unknown');
      expect(n2!.details.join('\n')).toContain(kh);
      appendFileSync(kh, hashed);
      (await SshHost.connect(noPin('n2'))).close();

      // /etc/ssh/ssh_known_hosts's place is taken by GlobalKnownHostsFile here (the test may not write /etc).
      writeFileSync(join(home, 'global_known_hosts'), `[${ip(2)}]:${SSH_PORT} ${key('n3')}\n`);
      writeFileSync(kh, `[${ip(0)}]:${SSH_PORT} ${key('n1')}\n`);
      writeFileSync(
        join(home, '.ssh', 'config'),
        `Host *\n  GlobalKnownHostsFile ${join(home, 'global_known_hosts')}\n`,
      );
      (await SshHost.connect(noPin('n3'))).close();
      appendFileSync(kh, `@revoked * ${key('n3')}\n`);
      const revoked = await refused(SshHost.connect(noPin('n3', { trustOnFirstUse: true })));
      expect(revoked).toBeInstanceOf(GateError);
      expect(revoked!.message).toContain('@revoked');
      writeFileSync(join(home, '.ssh', 'config'), '');

      // Trust-on-first-use records in vaultops' own file, never in the user's ~/.ssh/known_hosts.
      const before = readFileSync(kh, 'utf8');
      (await SshHost.connect(noPin('n2', { trustOnFirstUse: true }))).close();
      expect(readFileSync(kh, 'utf8')).toBe(before);
      expect(readFileSync(join(home, 'state', 'known_hosts'), 'utf8')).toContain(`[${ip(1)}]:${SSH_PORT} ssh-ed25519 `);
    });

    it('~/.ssh/config fills HostName, Port, User, IdentityFile and ProxyJump the inventory leaves out; the inventory wins', async () => {
      writeFileSync(
        join(home, '.ssh', 'known_hosts'),
        t.lab.nodes.map((n) => `[${n.ip}]:${SSH_PORT} ${key(n.name)}\n`).join(''),
      );
      const block = (alias: string, i: number, extra = '') =>
        `Host ${alias}\n  HostName ${ip(i)}\n  Port ${SSH_PORT}\n  User root\n  IdentityFile ~/.ssh/lab_key\n${extra}`;
      writeFileSync(
        join(home, '.ssh', 'config'),
        [
          block('vault-a', 0),
          block('vault-b', 1, '  ProxyJump vault-a\n'),
          block('vault-c', 2, '  ProxyJump nobody@vault-a\n'),
          'Host *\n  User nobody\n  IdentityFile ~/.ssh/lab_key\n',
        ].join(''),
      );
      const node = (name: string, ssh: NodeSpec['ssh']): NodeSpec => ({
        name,
        api_addr: `https://${name}.invalid:8200`,
        ssh,
      });
      const a = await openNodeHost(node('n1', { host: 'vault-a' }));
      try {
        expect((await a.exec('echo $SSH_CONNECTION')).stdout.split(' ')[2]).toBe(ip(0));
        expect((await a.exec('id -u')).stdout.trim()).toBe('0');
      } finally {
        a.close();
      }
      // ProxyJump from the config: through vault-a (itself looked up in the config) to n2.
      const b = await openNodeHost(node('n2', { host: 'vault-b' }));
      try {
        expect((await b.exec('echo $SSH_CONNECTION')).stdout.split(' ')[2]).toBe(ip(1));
      } finally {
        b.close();
      }
      // The jump's user from the ProxyJump spec is used: nobody's key is refused, and the error names the jump host.
      const c = await refused(openNodeHost(node('n3', { host: 'vault-c' })));
      expect(c).toBeInstanceOf(GateError);
      expect(c!.message).toMatch(/SSH to jump vault-a \(nobody@/);
      // The inventory wins field by field: its user and its (wrong) port override the config.
      const u = await refused(openNodeHost(node('n1', { host: 'vault-a', user: 'nobody' })));
      expect(u!.message).toContain(`nobody@${ip(0)}:${SSH_PORT}`);
      const p = await refused(openNodeHost(node('n1', { host: 'vault-a', port: 1 })));
      expect(p!.message).toContain(`root@${ip(0)}:1`);
      // ssh.jump in the inventory replaces the config's ProxyJump (whose user would be refused).
      const direct = await openNodeHost(node('n3', { host: 'vault-c', jump: `root@${ip(0)}:${SSH_PORT}` }));
      direct.close();
      writeFileSync(join(home, '.ssh', 'config'), '');
    });

    it('a passphrase-protected key opens with ssh.key_passphrase (a secret reference); the passphrase shows up nowhere', async () => {
      writeFileSync(
        join(home, '.ssh', 'known_hosts'),
        t.lab.nodes.map((n) => `[${n.ip}]:${SSH_PORT} ${key(n.name)}\n`).join(''),
      );
      const node = (ssh: Partial<NonNullable<NodeSpec['ssh']>>): NodeSpec => ({
        name: 'n1',
        api_addr: `https://${ip(0)}:8200`,
        ssh: { port: SSH_PORT, user: 'root', key_file: join(home, '.ssh', 'locked'), ...ssh },
      });
      setEnv('TEST_SSH_PASSPHRASE', PASSPHRASE);
      const h = await openNodeHost(node({ key_passphrase: 'env:TEST_SSH_PASSPHRASE' }));
      try {
        expect((await h.exec('echo ok')).stdout).toBe('ok\n');
      } finally {
        h.close();
      }
      // Registered with the redactor as soon as it was resolved.
      expect(redactor.redact(`x ${PASSPHRASE} y`)).not.toContain(PASSPHRASE);
      setEnv('TEST_SSH_WRONG', 'not-the-passphrase');
      const wrong = await refused(openNodeHost(node({ key_passphrase: 'env:TEST_SSH_WRONG' })));
      expect(wrong).toBeInstanceOf(InputError);
      expect(wrong!.message).toContain('does not open SSH key');
      const none = await refused(openNodeHost(node({})));
      expect(none).toBeInstanceOf(InputError);
      expect(none!.message).toContain('is protected by a passphrase');
      expect(none!.hint).toContain('ssh.key_passphrase');
      for (const e of [wrong!, none!])
        expect(JSON.stringify([e.message, e.hint, e.details, e.stack])).not.toContain(PASSPHRASE);
    });

    it('a key held by a real ssh-agent ($SSH_AUTH_SOCK) logs in, including the locked key the inventory names without a passphrase', async () => {
      writeFileSync(
        join(home, '.ssh', 'known_hosts'),
        t.lab.nodes.map((n) => `[${n.ip}]:${SSH_PORT} ${key(n.name)}\n`).join(''),
      );
      const sock = join(home, 'agent.sock');
      const agent: ChildProcess = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
      try {
        await waitFor('ssh-agent to listen', () => (existsSync(sock) ? true : undefined), 10_000, 50);
        // ssh-add asks SSH_ASKPASS for the passphrase: it goes through a 0700 script, never argv.
        const askpass = join(home, 'askpass.sh');
        writeFileSync(askpass, '#!/bin/sh\nprintf "%s\\n" "$TEST_SSH_PASSPHRASE"\n', { mode: 0o700 });
        execFileSync('ssh-add', ['-q', join(home, '.ssh', 'locked')], {
          env: {
            ...process.env,
            SSH_AUTH_SOCK: sock,
            SSH_ASKPASS: askpass,
            SSH_ASKPASS_REQUIRE: 'force',
            DISPLAY: 'none',
            TEST_SSH_PASSPHRASE: PASSPHRASE,
          },
          stdio: 'ignore',
        });
        // Without the agent, no key and nothing in ~/.ssh: a clear error.
        const without = await refused(
          openNodeHost({ name: 'n2', api_addr: `https://${ip(1)}:8200`, ssh: { port: SSH_PORT, user: 'root' } }),
        );
        expect(without).toBeInstanceOf(InputError);
        expect(without!.message).toContain('No way to authenticate');
        setEnv('SSH_AUTH_SOCK', sock);
        const viaAgent = await openNodeHost({
          name: 'n2',
          api_addr: `https://${ip(1)}:8200`,
          ssh: { port: SSH_PORT, user: 'root' },
        });
        viaAgent.close();
        // The inventory's locked key without a passphrase: skipped, and the agent (which holds it) logs in.
        const locked = await openNodeHost({
          name: 'n2',
          api_addr: `https://${ip(1)}:8200`,
          ssh: { port: SSH_PORT, user: 'root', key_file: join(home, '.ssh', 'locked') },
        });
        locked.close();
      } finally {
        setEnv('SSH_AUTH_SOCK', undefined);
        agent.kill('SIGTERM');
      }
    });
  });

  it("check's host facts treat hostile service paths as data: nothing in them runs on the host", async () => {
    const marker = `/tmp/vaultops-pwned-${process.pid}-${Date.now()}`;
    const hostile = [
      `$(touch ${marker}-a)`,
      `\`touch ${marker}-b\``,
      `x"; touch ${marker}-c; echo "`,
      `x'; touch ${marker}-d; echo '`,
      `x\ntouch ${marker}-e\n`,
      `x; touch ${marker}-f`,
      `"$(touch ${marker}-g)"`,
    ];
    const h = await SshHost.connect(target('n1'));
    try {
      for (const [i, bad] of hostile.entries()) {
        const other = hostile[(i + 1) % hostile.length]!;
        const node = {
          name: 'n1',
          api_addr: `http://${t.lab.nodes[0]!.ip}:8200`,
          service: { manager: 'lab', data_dir: bad, config: other },
        } as NodeSpec;
        const results = await runHostChecks(node, h);
        const perms = results.find((r) => r.id === 'host.permissions')!;
        expect(perms.status).toBe('fail');
        expect(perms.found).toContain('not found');
      }
      for (const suffix of ['a', 'b', 'c', 'd', 'e', 'f', 'g'])
        expect(existsSync(`${marker}-${suffix}`), `${marker}-${suffix}`).toBe(false);
    } finally {
      h.close();
    }
  });

  it('a staged binary is hashed right before it runs: one changed after staging never runs', async () => {
    const good = '#!/bin/sh\necho "Vault v9.9.9 (staged test binary)"\n';
    const local = join(t.stateDir, 'good-server');
    writeFileSync(local, good, { mode: 0o755 });
    const sha = createHash('sha256').update(good).digest('hex');
    const live = join(t.lab.nodes[0]!.dir, 'fake-server');
    const marker = join(t.stateDir, `tampered-binary-ran-${Date.now()}`);
    const h = await SshHost.connect(target('n1'));
    try {
      await stageBinary(h, live, { path: local, sha256: sha });
      expect(await remoteBinaryVersion(h, `${live}${STAGED_SUFFIX}`, sha)).toBe('9.9.9');
      writeFileSync(`${live}${STAGED_SUFFIX}`, `#!/bin/sh\ntouch ${marker}\necho "Vault v6.6.6"\n`, { mode: 0o755 });
      const e = await remoteBinaryVersion(h, `${live}${STAGED_SUFFIX}`, sha).then(
        (v) => v,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(VaultopsError);
      expect((e as VaultopsError).message).toContain('was not run');
      expect(existsSync(marker)).toBe(false);
    } finally {
      h.close();
    }
  });

  it('reaches a node through a jump host', async () => {
    const jump = target('n1');
    const h = await SshHost.connect(target('n2', { jump }));
    try {
      const r = await h.exec('cat /proc/sys/kernel/hostname >/dev/null; echo via-jump');
      expect(r.stdout.trim()).toBe('via-jump');
    } finally {
      h.close();
    }
  });

  it('the lab service manager stops the server with SIGTERM and waits until it is gone, then starts it again', async () => {
    const n3 = t.lab.nodes[2]!;
    const h = await SshHost.connect(target('n3'));
    try {
      const svc = new LabService(h, join(n3.dir, 'service.sh'), n3.log);
      const before = await svc.status();
      expect(before.running).toBe(true);
      await svc.stop(60_000);
      // Gone: no process, or a zombie its parent (this test's worker, which started the lab) has not
      // reaped yet — reaping is asynchronous, so poll briefly instead of asserting at once.
      const state = () => {
        try {
          return readFileSync(`/proc/${before.pid}/stat`, 'utf8').replace(/^.*\) /, '')[0];
        } catch {
          return undefined;
        }
      };
      await waitFor(
        'the stopped server to be gone',
        () => (state() === undefined || state() === 'Z' ? true : undefined),
        10_000,
        50,
      );
      expect((await svc.status()).running).toBe(false);
      // The server logs a clean shutdown on SIGTERM (not a kill).
      expect((await svc.logTail(30)).join('\n')).toMatch(/shutdown|shutting down/i);
      await svc.start();
      const after = await svc.status();
      expect(after.running).toBe(true);
      expect(after.pid).not.toBe(before.pid);
      // The new process inherited nothing from the SSH session.
      const environ = readFileSync(`/proc/${after.pid}/environ`, 'utf8').split('\0');
      expect(environ.filter((e) => /TOKEN|SSH_/.test(e))).toEqual([]);
    } finally {
      h.close();
    }
  });
});
