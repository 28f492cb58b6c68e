import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  createReadStream,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBinary, FLAVORS } from '../../src/lab/binaries.js';
import { clusterFor, unsealAll, waitHealthy } from '../../src/lab/lab.js';
import { upgradePairs } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';
import { runProcess, type Ran } from '../helpers/cli.js';

/**
 * `vaultops upgrade` (the built CLI) against a real 3-node lab whose nodes are reached over the
 * lab's real sshd. Checked with the official CLI at the end, as an operator would.
 */
const pairs = upgradePairs();

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'vaultops.js');
const NODE = process.execPath;

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

describe.each(pairs)('rolling upgrade of a $flavor cluster $from -> $to over SSH', ({ flavor, from, to }) => {
  let t: TestLab;
  let newBinary: string;
  const outputs: string[] = [];
  const upgrade = async (
    binary: string,
    sum: string,
    extra: string[] = [],
    onLine?: (line: string) => void,
  ): Promise<Ran> => {
    // No token or key on the command line: the inventory references the lab's 0600 init file.
    const r = await runProcess(
      NODE,
      [
        BIN,
        'upgrade',
        '-i',
        t.inventory,
        '--binary',
        binary,
        '--sha256',
        sum,
        '--non-interactive',
        '--confirm',
        t.lab.name,
        '--wait-timeout',
        '90',
        ...extra,
      ],
      { ...t.env, VAULT_TOKEN: '', BAO_TOKEN: '' },
      onLine,
    );
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  const versions = async () => {
    const c = clusterFor(t.lab);
    try {
      return (await c.status()).nodes.map((n) => n.version);
    } finally {
      c.close();
    }
  };
  const pids = () => t.lab.nodes.map((n) => readFileSync(join(n.dir, 'pid'), 'utf8').trim());
  const staged = () =>
    t.lab.nodes
      .filter((n) => existsSync(join(n.dir, 'bin', `${FLAVORS[flavor].binaryName}.vaultops-staged`)))
      .map((n) => n.name);

  beforeAll(async () => {
    newBinary = (await ensureBinary({ flavor, version: to })).path;
    t = await startTestLab({ name: `c-up-${flavor}`, flavor, version: from, ssh: true });
  });
  afterAll(async () => {
    await t?.destroy();
  });

  it('refuses a binary whose sha256 is not the expected one before touching any node', async () => {
    const pidsBefore = pids();
    const r = await upgrade(newBinary, 'a'.repeat(64));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('refused before touching any node');
    expect(staged()).toEqual([]);
    expect(pids()).toEqual(pidsBefore);
    expect(await versions()).toEqual([from, from, from]);
  });

  it('downloads a --binary URL, then refuses it on a wrong sha256 before touching any node', async () => {
    const payload = Buffer.from('#!/bin/sh\necho not the release\n');
    const server = createServer((_req, res) => res.end(payload));
    await new Promise<void>((r) => server.listen(0, t.lab.nodes[0]!.ip, () => r()));
    try {
      const { port } = server.address() as AddressInfo;
      const r = await upgrade(`http://${t.lab.nodes[0]!.ip}:${port}/bao-download`, 'b'.repeat(64));
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`has sha256 ${createHash('sha256').update(payload).digest('hex')}`);
      expect(r.stderr).toContain('refused before touching any node');
      expect(staged()).toEqual([]);
    } finally {
      server.close();
    }
  });

  it('refuses at the gate when a node is down (failure tolerance 0), and changes nothing', async () => {
    const n3 = t.lab.nodes[2]!;
    const stop = await runProcess('/bin/sh', [join(n3.dir, 'service.sh'), 'stop', '30'], t.env);
    expect(stop.code).toBe(0);
    const pidsBefore = pids();
    const r = await upgrade(newBinary, sha256(newBinary));
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('is not healthy; no node was touched');
    expect(r.stderr).toContain('n3 is unreachable');
    expect(staged()).toEqual([]);
    expect(pids()).toEqual(pidsBefore);
    // Put n3 back as it was.
    const start = await runProcess('/bin/sh', [join(n3.dir, 'service.sh'), 'start'], t.env);
    expect(start.code).toBe(0);
    await unsealAll({ ...t.lab, nodes: [{ ...n3, pid: undefined }] }, t.init, () => undefined);
    await waitHealthy(t.lab, t.init.root_token, () => undefined);
  });

  it('refuses a corrupt binary (right checksum, does not run) before any node goes down', async () => {
    const corrupt = join(t.stateDir, 'corrupt-binary');
    // The first MB of the real binary: an ELF that cannot run.
    const fd = openSync(newBinary, 'r');
    const buf = Buffer.alloc(1024 * 1024);
    readSync(fd, buf, 0, buf.length, 0);
    closeSync(fd);
    writeFileSync(corrupt, buf, { mode: 0o755 });
    const pidsBefore = pids();
    const r = await upgrade(corrupt, sha256(corrupt));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('does not run on');
    expect(pids()).toEqual(pidsBefore);
    expect(await versions()).toEqual([from, from, from]);
  });

  it('halts at the first standby whose new binary does not start, shows its log tail, and rolls that node back', async () => {
    // A fault a real release cannot be made to produce on demand: a binary that answers `version`
    // like the new release but fails at `server`. A shell script stands in for it (DESIGN rule 8).
    const bad = join(t.stateDir, 'starts-then-dies');
    writeFileSync(
      bad,
      `#!/bin/sh\nif [ "$1" = version ]; then echo "${flavor === 'openbao' ? 'OpenBao' : 'Vault'} v${to} (fault-injection)"; exit 0; fi\necho "fault-injection: this build cannot start: corrupt text segment" >&2\nexit 1\n`,
    );
    chmodSync(bad, 0o755);
    // The gate refuses a cluster whose autopilot is not healthy this instant; on a loaded machine a
    // restarted node (two tests ago) can still be settling. Start from a healthy cluster.
    await waitHealthy(t.lab, t.init.root_token, () => undefined);
    const pidsBefore = pids();
    const r = await upgrade(bad, sha256(bad), ['--rollback-on-failure']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Upgrade halted at n\d: n\d exited right after it was started/);
    expect(r.stderr).toContain('fault-injection: this build cannot start');
    expect(r.stderr).toContain('rolled back to its previous binary and is a healthy voter again');
    // Only one node was touched (the first standby); the others kept their processes.
    const after = pids();
    expect(after.filter((p, i) => p !== pidsBefore[i]).length).toBe(1);
    expect(await versions()).toEqual([from, from, from]);
    await waitHealthy(t.lab, t.init.root_token, () => undefined);
  });

  it('--stage-only refuses a wrong sha256 leaving nothing staged, stages the verified binary on every host, stops no node; a second run finds it staged', async () => {
    await waitHealthy(t.lab, t.init.root_token, () => undefined);
    const pidsBefore = pids();
    // A wrong sha256: the hosts may already be receiving the file while it is hashed here, and each
    // removes what does not match, so what is staged (copies an earlier test left) does not change.
    const stagedSums = () =>
      t.lab.nodes.map((n) => {
        const f = join(n.dir, 'bin', `${FLAVORS[flavor].binaryName}.vaultops-staged`);
        return existsSync(f) ? sha256(f) : undefined;
      });
    const before = stagedSums();
    const wrong = await upgrade(newBinary, 'c'.repeat(64), ['--stage-only']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('refused before touching any node');
    expect(stagedSums()).toEqual(before);
    for (const n of t.lab.nodes)
      expect(readdirSync(join(n.dir, 'bin')).filter((f) => f.includes('vaultops-upload'))).toEqual([]);
    const sum = sha256(newBinary);
    const r = await upgrade(newBinary, sum, ['--stage-only']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Staged ${to} on n1, n2, n3`);
    expect(r.stdout).toContain('no node was stopped');
    expect(staged()).toEqual(['n1', 'n2', 'n3']);
    for (const n of t.lab.nodes)
      expect(sha256(join(n.dir, 'bin', `${FLAVORS[flavor].binaryName}.vaultops-staged`))).toBe(sum);
    expect(pids()).toEqual(pidsBefore);
    expect(await versions()).toEqual([from, from, from]);

    // What the upgrade run does first: each host's staged copy is checked by its sha256, not sent again.
    const again = await upgrade(newBinary, sum, ['--stage-only']);
    expect(again.code).toBe(0);
    for (const n of ['n1', 'n2', 'n3']) expect(again.stderr).toContain(`${n}: already staged`);
    expect(again.stderr).not.toMatch(/staging \S+ on \d+ hosts?:/);
    expect(pids()).toEqual(pidsBefore);
  });

  it('--fetch-on-hosts: every host downloads the binary itself and checks it; a 404 or a wrong sha256 stages nothing', async () => {
    const pidsBefore = pids();
    const sum = sha256(newBinary);
    const name = FLAVORS[flavor].binaryName;
    // The copies the test before staged are removed: the hosts must download the binary now.
    for (const n of t.lab.nodes) rmSync(join(n.dir, 'bin', `${name}.vaultops-staged`), { force: true });
    const gets: string[] = [];
    const server = createServer((req, res) => {
      gets.push(req.url ?? '');
      if (req.url?.startsWith(`/release/${name}?`)) createReadStream(newBinary).pipe(res);
      else res.writeHead(404).end('not found');
    });
    await new Promise<void>((r) => server.listen(0, t.lab.nodes[0]!.ip, () => r()));
    try {
      const base = `http://${t.lab.nodes[0]!.ip}:${(server.address() as AddressInfo).port}`;
      // A signed URL's signature must not be shown anywhere.
      const signature = `sig-${createHash('sha256').update(String(Math.random())).digest('hex').slice(0, 16)}`;
      const url = `${base}/release/${name}?signature=${signature}`;
      const fetchOnHosts = ['--stage-only', '--fetch-on-hosts'];

      const missing = await upgrade(`${base}/missing/${name}`, sum, fetchOnHosts);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/could not download .*404/);
      const wrong = await upgrade(url, 'd'.repeat(64), fetchOnHosts);
      expect(wrong.code).toBe(2);
      expect(wrong.stderr).toContain(`with sha256 ${sum}, not the expected ${'d'.repeat(64)}: removed`);
      expect(staged()).toEqual([]);
      for (const n of t.lab.nodes)
        expect(readdirSync(join(n.dir, 'bin')).filter((f) => f.includes('vaultops-upload'))).toEqual([]);

      const r = await upgrade(url, sum, fetchOnHosts);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Staged ${to} on n1, n2, n3`);
      for (const n of ['n1', 'n2', 'n3']) expect(r.stderr).toContain(`${n}: staged`);
      expect(r.stderr).toContain(`downloaded by the host from ${base}/release/${name}?...`);
      for (const n of t.lab.nodes) expect(sha256(join(n.dir, 'bin', `${name}.vaultops-staged`))).toBe(sum);
      // Each run asked the server once per host: nothing was downloaded here and sent over SSH.
      expect(gets.filter((u) => u.startsWith('/missing/')).length).toBe(3);
      expect(gets.filter((u) => u.startsWith('/release/')).length).toBe(6);
      expect(pids()).toEqual(pidsBefore);
      expect(await versions()).toEqual([from, from, from]);
      for (const o of [missing, wrong, r]) expect(o.stdout + o.stderr).not.toContain(signature);
    } finally {
      server.close();
    }
  });

  it('halts before the next node when a standby is SIGKILLed while it rejoins; quorum is kept; running again resumes and finishes', async () => {
    await waitHealthy(t.lab, t.init.root_token, () => undefined);
    const pidsBefore = pids();
    let killed: string | undefined;
    const r = await upgrade(newBinary, sha256(newBinary), [], (line) => {
      const m = /(n\d): started and unsealed/.exec(line);
      if (m && !killed) {
        killed = m[1]!;
        const node = t.lab.nodes.find((n) => n.name === killed)!;
        process.kill(Number(readFileSync(join(node.dir, 'pid'), 'utf8')), 'SIGKILL');
      }
    });
    expect(killed).toBeDefined();
    // Staged ahead by --stage-only above: the run checks each copy instead of uploading it.
    expect(r.stderr).toMatch(/n\d: already staged/);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`Upgrade halted at ${killed}|Not taking n\\d down`));
    // Nothing but the killed node was touched; the other two still run the old version and keep quorum.
    const i = t.lab.nodes.findIndex((n) => n.name === killed);
    const after = pids();
    expect(after.filter((_p, j) => j !== i)).toEqual(pidsBefore.filter((_p, j) => j !== i));
    const v = await versions();
    expect(v.filter((_x, j) => j !== i)).toEqual([from, from]);
    const c = clusterFor(t.lab);
    try {
      expect((await c.findLeader()).node.name).not.toBe(killed);
    } finally {
      c.close();
    }

    const again = await upgrade(newBinary, sha256(newBinary));
    expect(again.stderr).toContain(`${killed}: resuming`);
    expect(again.stderr + again.stdout).toContain(`all nodes on ${to}`);
    expect(again.code).toBe(0);
    // The order: the leader (marked in the plan line) is upgraded last.
    const plan = /order: (.+?);/.exec(again.stderr)?.[1] ?? '';
    expect(plan).toMatch(/\(leader, last\)$/);
    expect(await versions()).toEqual([to, to, to]);
  });

  it('ends with every node on the new version as the official CLI sees it, and a second run changes nothing', async () => {
    const client = await cliEnv();
    const peers = await runProcess(newBinary, ['operator', 'raft', 'list-peers', '-format=json'], client);
    expect(peers.code).toBe(0);
    const servers = (
      JSON.parse(peers.stdout) as {
        data: { config: { servers: Array<{ node_id: string; voter: boolean; leader: boolean }> } };
      }
    ).data.config.servers;
    expect(servers.map((s) => s.node_id).sort()).toEqual(['n1', 'n2', 'n3']);
    expect(servers.every((s) => s.voter)).toBe(true);
    expect(servers.filter((s) => s.leader).length).toBe(1);
    const history = await runProcess(newBinary, ['list', '-format=json', 'sys/version-history'], client);
    expect(history.code).toBe(0);
    expect(JSON.parse(history.stdout)).toEqual(expect.arrayContaining([from, to]));

    // Running it again is a no-op: every node is skipped with the reason.
    const again = await upgrade(newBinary, sha256(newBinary));
    expect(again.code).toBe(0);
    expect(again.stderr).toContain(`skipped (already on ${to})`);
    expect(again.stdout).toContain('Nothing to do');
  });

  it("never shows the lab's token or unseal keys, and servers never get them on their command line", () => {
    const all = outputs.join('\n');
    for (const s of t.secrets) expect(all).not.toContain(s);
    for (const pid of pids()) {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      for (const s of t.secrets) expect(cmdline).not.toContain(s);
    }
  });

  /** The official CLI's environment: token only through the environment, never argv. */
  async function cliEnv(): Promise<NodeJS.ProcessEnv> {
    const addr = t.lab.nodes[0]!.apiAddr;
    return {
      PATH: process.env['PATH'],
      HOME: t.stateDir,
      VAULT_ADDR: addr,
      BAO_ADDR: addr,
      VAULT_CACERT: t.lab.caCert,
      BAO_CACERT: t.lab.caCert,
      VAULT_TOKEN: t.init.root_token,
      BAO_TOKEN: t.init.root_token,
    };
  }
});
