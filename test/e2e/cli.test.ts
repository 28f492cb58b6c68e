import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labDestroy, type LabRecord } from '../../src/lab/lab.js';
import type { ClusterStatus } from '../../src/vault/cluster.js';
import { ExitCode } from '../../src/core/exit-codes.js';
import { buildProgram } from '../../src/cli/main.js';
import { CliRunner, isAlive, labSecrets, NODE, processesUnder, REPO, type CliResult } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';

const short = { openbao: 'bao', vault: 'vault' } as const;

/** What only some commands use; a start-up that reads one of them pays for it on every command. */
const HEAVY_PACKAGES = ['openpgp', 'ssh2', 'node-vault', 'listr2', '@inquirer/', '@aws-sdk/', '@smithy/'];

/**
 * Runs the built CLI with a module-load recorder (test/helpers/record-module-loads.js) and returns
 * the heavy modules the process loaded: a heavy package read from node_modules, or bundled into a
 * chunk it loaded (esbuild marks each bundled file with a `// node_modules/...` comment), or our S3
 * client on the AWS SDK. An import of openpgp added to a module on a common path shows up either way.
 */
async function heavyModulesLoaded(
  args: string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
): Promise<{ r: CliResult; heavy: string[]; chunks: string[] }> {
  const log = join(cwd, `modules-${Date.now()}-${Math.random().toString(36).slice(2)}.log`);
  const recorder = join(REPO, 'test', 'helpers', 'record-module-loads.js');
  const cli = new CliRunner({
    env: { ...env, NODE_OPTIONS: `--import ${recorder}`, VAULTOPS_TEST_MODULE_LOG: log },
    cwd,
  });
  const r = await cli.run(args);
  const urls = readFileSync(log, 'utf8')
    .split('\n')
    .filter((u) => u.startsWith('file:'));
  rmSync(log, { force: true });
  const heavy = new Set<string>();
  const chunks: string[] = [];
  for (const path of urls.map((u) => fileURLToPath(u))) {
    for (const h of HEAVY_PACKAGES) if (path.includes(`/node_modules/${h}`)) heavy.add(h);
    if (!path.startsWith(join(REPO, 'dist') + '/')) continue;
    chunks.push(basename(path));
    const text = readFileSync(path, 'utf8');
    for (const h of HEAVY_PACKAGES) if (text.includes(`// node_modules/${h}`)) heavy.add(`${h} in ${basename(path)}`);
    if (text.includes('// src/backup/stores/s3-api.ts')) heavy.add(`the S3 client in ${basename(path)}`);
  }
  return { r, heavy: [...heavy], chunks };
}

describe('the built CLI starts on the Node it ships for', () => {
  // Made in beforeAll, not while the file is collected: a describe whose tests are all filtered
  // out (-t) runs no hooks, and would leave its directory behind.
  let cwd = '';
  let cli: CliRunner;
  beforeAll(() => {
    cwd = mkdtempSync(join(tmpdir(), 'vaultops-test-a-e2e-cwd-'));
    cli = new CliRunner({ env: { ...process.env, VAULTOPS_STATE_DIR: join(cwd, 'state') }, cwd });
  });
  afterAll(() => {
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  it('`--version --verbose` reports the package version and Node >= 22', async () => {
    const r = await cli.run(['--version', '--verbose']);
    expect(r.code).toBe(0);
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(r.stdout).toContain(`vaultops ${pkg.version}\n`);
    const major = Number(/^node (\d+)\./m.exec(r.stdout)?.[1]);
    expect(major).toBeGreaterThanOrEqual(22);
  });

  it('`--help` exits 0 and lists the commands', async () => {
    const r = await cli.run(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Usage: vaultops/);
    expect(r.stdout).toMatch(/^\s+lab\s/m);
    expect(r.stdout).toMatch(/^\s+status\s/m);
  });

  it('`schedule backup|drill --format` with a scheduler it does not know exits 2 naming it and prints nothing', async () => {
    const inventory = join(cwd, 'schedule.yml');
    writeFileSync(
      inventory,
      ['clusters:', '  prod:', '    nodes:', '      - { name: n1, api_addr: "https://10.0.0.1:8200" }', ''].join('\n'),
    );
    for (const cmd of [
      ['schedule', 'backup', '--to', join(cwd, 'b')],
      ['schedule', 'drill'],
    ]) {
      const r = await cli.run([...cmd, '-i', inventory, '--format', 'cron,nomad']);
      expect(r.code).toBe(ExitCode.badInput);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/--format cron,nomad names "nomad", which is not a scheduler we print/);
      expect(r.stderr).toMatch(/hint: Use one or more of cron, systemd, kubernetes/);
    }
    // A CronJob must name an image that exists: asked for without one, it is refused; by default left out.
    const noImage = await cli.run(['schedule', 'drill', '-i', inventory, '--format', 'k8s']);
    expect(noImage.code).toBe(ExitCode.badInput);
    expect(noImage.stdout).toBe('');
    expect(noImage.stderr).toContain('--format kubernetes needs --image REF');
    expect(noImage.stderr).toContain('npm run image');
    const byDefault = await cli.run(['schedule', 'drill', '-i', inventory]);
    expect(byDefault.code).toBe(0);
    expect(byDefault.stdout).toMatch(/\[Timer\]/);
    expect(byDefault.stdout).not.toMatch(/kind: CronJob|vaultops:latest/);
    expect(byDefault.stdout).toContain('not printed without --image REF');
    const ok = await cli.run([
      'schedule',
      'drill',
      '-i',
      inventory,
      '--format',
      'k8s',
      '--image',
      'reg.example/vaultops:1',
    ]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/kind: CronJob/);
    expect(ok.stdout).toContain('image: reg.example/vaultops:1');
    expect(ok.stdout).not.toMatch(/\[Timer\]/);
  });

  it('`--help` from the bundle (which builds only stubs of the commands it does not run) prints what the whole command tree prints', async () => {
    // From the sources there is no build-time table: every command is built in full.
    const program = buildProgram(['--help']);
    expect(program.commands.filter((c) => c.options.some((o) => o.long === '--stub'))).toEqual([]);
    const r = await cli.run(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(program.helpInformation());
    const typo = await cli.run(['stauts']);
    expect(typo.code).toBe(ExitCode.badInput);
    expect(typo.stderr).toContain("error: unknown command 'stauts'\n(Did you mean status?)");
  });

  it('`--help` and `status --help` load none of openpgp, ssh2, node-vault, listr2, inquirer, the AWS SDK, the S3 client', async () => {
    for (const args of [['--help'], ['status', '--help']]) {
      // Rendered by the CLI, as on a terminal: the build-time text is turned off.
      const { r, heavy, chunks } = await heavyModulesLoaded(args, { ...process.env, VAULTOPS_HELP_CACHE: '0' }, cwd);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^Usage: vaultops/);
      expect(chunks, 'the recorder saw the bundle load').toContain('main.js');
      expect(heavy, `vaultops ${args.join(' ')}`).toEqual([]);
    }
  });

  it('`[command] --help` into a pipe prints the build-time text, byte for byte what the CLI renders, without loading the CLI', async () => {
    const helps = JSON.parse(readFileSync(join(REPO, 'dist', 'cli', 'help-80.json'), 'utf8')) as Record<string, string>;
    for (const words of ['', 'status', 'lab up', 'backups list', 'root generate', 'rekey verify', 'schedule backup'])
      expect(Object.keys(helps), 'help-80.json covers nested commands').toContain(words);
    const rendered = new CliRunner({ env: { ...process.env, VAULTOPS_HELP_CACHE: '0' }, cwd });
    for (const [words, text] of Object.entries(helps)) {
      const args = [...(words ? words.split(' ') : []), '--help'];
      const live = await rendered.run(args);
      expect(live.code, live.stderr).toBe(0);
      expect(text, `vaultops ${args.join(' ')}`).toBe(live.stdout);
    }
    for (const args of [['--help'], ['status', '-h'], ['lab', 'up', '--help']]) {
      const { r, chunks } = await heavyModulesLoaded(args, process.env, cwd);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(helps[args.slice(0, -1).join(' ')]);
      expect(chunks, `vaultops ${args.join(' ')} read no module of the CLI`).toEqual([]);
    }
  });

  it('`--help` on a terminal is laid out for its width, not the build-time 80 columns', () => {
    const helps = JSON.parse(readFileSync(join(REPO, 'dist', 'cli', 'help-80.json'), 'utf8')) as Record<string, string>;
    const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
    // script(1) gives the CLI a pseudo-terminal 150 columns wide.
    const r = spawnSync(
      'script',
      ['-qec', `stty cols 150; ${quote(NODE)} ${quote(join(REPO, 'bin', 'vaultops.js'))} --help`, '/dev/null'],
      { encoding: 'utf8', env: { ...process.env, VAULTOPS_STATE_DIR: join(cwd, 'state') } },
    );
    expect(r.status, r.stderr).toBe(0);
    const text = r.stdout.replace(/\r\n/g, '\n');
    expect(text).toMatch(/^Usage: vaultops/);
    expect(Math.max(...text.split('\n').map((l) => l.length))).toBeGreaterThan(80);
    expect(text).not.toBe(helps['']);
  });

  it('`plan` loads every action but none of openpgp, ssh2, node-vault, listr2, inquirer, the AWS SDK', async () => {
    const inventory = join(cwd, 'refused.yml');
    // Nothing listens on port 1: the plan reports the node unreachable, having loaded what it loads.
    writeFileSync(
      inventory,
      ['clusters:', '  prod:', '    nodes:', '      - { name: n1, api_addr: "https://127.0.0.1:1" }', ''].join('\n'),
    );
    const { r, heavy } = await heavyModulesLoaded(['plan', 'upgrade-rolling', '-i', inventory], process.env, cwd);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Plan: upgrade-rolling on cluster prod/);
    // The backup actions validate store settings with the store module; the S3 client and the SDK load only on use.
    expect(heavy).toEqual([]);
  });

  it('`backups list` on a local store loads no AWS SDK; on an S3 store it does (the recorder sees it)', async () => {
    const inventory = join(cwd, 'stores.yml');
    writeFileSync(
      inventory,
      [
        'clusters:',
        '  prod:',
        '    nodes:',
        '      - { name: n1, api_addr: "https://127.0.0.1:1" }',
        '    stores:',
        `      local: { type: dir, path: ${JSON.stringify(join(cwd, 'backups'))} }`,
        // Nothing listens on port 1: the listing fails after the SDK was loaded.
        '      offsite: { type: s3, endpoint: "http://127.0.0.1:1", bucket: vault-backups, access_key_id: AKIDEXAMPLE, secret_access_key: "env:NO_SUCH_S3_SECRET_SET", max_attempts: 1 }',
        '',
      ].join('\n'),
    );
    mkdirSync(join(cwd, 'backups'), { recursive: true });
    const local = await heavyModulesLoaded(['backups', 'list', '-i', inventory, '--store', 'local'], process.env, cwd);
    expect(local.r.code, local.r.stderr).toBe(ExitCode.ok);
    expect(local.heavy).toEqual([]);
    const s3 = await heavyModulesLoaded(
      ['backups', 'list', '-i', inventory, '--store', 'offsite'],
      { ...process.env, NO_SUCH_S3_SECRET_SET: 'not-a-real-key' },
      cwd,
    );
    expect(s3.r.code).not.toBe(ExitCode.ok);
    expect(s3.r.stderr).toContain('Cannot reach the S3 endpoint http://127.0.0.1:1');
    // The SDK is bundled into the S3 client's chunks (scripts/build.js): they are what loads.
    expect(s3.heavy).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^@aws-sdk\/ in /),
        expect.stringMatching(/^@smithy\/ in /),
        expect.stringMatching(/^the S3 client in /),
      ]),
    );
  });

  it('`upgrade --stage-only` with the immutable strategy exits 2 before reading any inventory', async () => {
    const r = await cli.run(['upgrade', '-i', '/nonexistent/inventory.yml', '--strategy', 'immutable', '--stage-only']);
    expect(r.code).toBe(ExitCode.badInput);
    expect(r.stderr).toContain('--stage-only goes with --strategy rolling');
  });

  it('`upgrade --fetch-on-hosts` without an http(s) URL and its sha256 exits 2 before reading any inventory', async () => {
    const sum = 'e'.repeat(64);
    const cases: Array<[string[], string]> = [
      [['--binary', '/opt/vault', '--sha256', sum], 'needs --binary to be an http(s) URL'],
      [['--binary', 'https://mirror.example/vault'], 'needs --binary URL and --sha256 HEX'],
      [['--version', '1.21.0'], '--fetch-on-hosts goes with --binary URL, not --version'],
      [['--binary', 'https://ops:hunter2@mirror.example/vault', '--sha256', sum], 'with a user or password in it'],
      [['--binary', 'ftp://mirror.example/vault', '--sha256', sum], 'needs --binary to be an http(s) URL'],
    ];
    for (const [args, message] of cases) {
      const r = await cli.run(['upgrade', '-i', '/nonexistent/inventory.yml', '--fetch-on-hosts', ...args]);
      expect(r.code).toBe(ExitCode.badInput);
      expect(r.stderr).toContain(message);
      expect(r.stderr).not.toContain('hunter2');
    }
  });

  it('an unknown command exits 2', async () => {
    const r = await cli.run(['frobnicate']);
    expect(r.code).toBe(ExitCode.badInput);
    expect(r.stderr).toMatch(/unknown command 'frobnicate'/);
  });
});

describe.each(flavorsUnderTest())(
  'a user runs `lab up`, `status`, `lab down`, `lab destroy` with $flavor $version',
  ({ flavor, version }) => {
    const name = `a-e2e-${short[flavor]}`;
    // Made in beforeAll, as above: no directory is left when -t filters this describe out.
    let stateDir = '';
    let cwd = '';
    let env: NodeJS.ProcessEnv = {};
    let cli: CliRunner;
    const inventory = join('inventories', `${name}.yml`);
    let lab: LabRecord;
    let secrets: string[] = [];

    beforeAll(async () => {
      stateDir = mkdtempSync(join(tmpdir(), `vaultops-test-${name}-`));
      cwd = mkdtempSync(join(tmpdir(), `vaultops-test-${name}-cwd-`));
      env = { ...process.env, VAULTOPS_STATE_DIR: stateDir };
      cli = new CliRunner({ env, cwd });
      const r = await cli.run(['lab', 'up', '--name', name, '--flavor', flavor, '--version', version]);
      expect(r.code, r.stderr).toBe(ExitCode.ok);
      expect(r.stdout).toContain(`Inventory: ${inventory}`);
      lab = JSON.parse(readFileSync(join(stateDir, 'labs', name, 'lab.json'), 'utf8')) as LabRecord;
      secrets = labSecrets(lab.initFile);
    });
    afterAll(async () => {
      // Whatever happened above, leave nothing running.
      if (!stateDir) return;
      await labDestroy(name, () => undefined, env);
      rmSync(stateDir, { recursive: true, force: true });
      rmSync(cwd, { recursive: true, force: true });
    });

    it("`status` agrees with the real binary's `operator raft list-peers`", async () => {
      const r = await cli.run(['status', '-i', inventory, '--json']);
      expect(r.code, r.stderr).toBe(ExitCode.ok);
      const st = JSON.parse(r.stdout) as ClusterStatus;
      expect(st.health).toBe('healthy');
      expect(st.autopilot).toMatchObject({ healthy: true, failureTolerance: 1, voters: 3 });

      const peers = listPeers(lab, flavor);
      expect(peers).toHaveLength(3);
      const ours = st.nodes.map((n) => {
        const node = lab.nodes.find((x) => x.name === n.name)!;
        return {
          node_id: n.name,
          address: node.clusterAddr.replace(/^https?:\/\//, ''),
          api: n.address,
          voter: n.voter,
          leader: n.leader,
        };
      });
      expect(ours.map((o) => o.api)).toEqual(lab.nodes.map((n) => n.apiAddr));
      expect(ours.map(({ node_id, address, voter, leader }) => ({ node_id, address, voter, leader }))).toEqual(
        peers
          .map(({ node_id, address, voter, leader }) => ({ node_id, address, voter, leader }))
          .sort((a, b) => a.node_id.localeCompare(b.node_id)),
      );
      expect(peers.filter((p) => p.leader).map((p) => p.node_id)).toEqual([st.leader]);

      const text = await cli.run(['status', '-i', inventory]);
      expect(text.code).toBe(ExitCode.ok);
      expect(text.stdout).toContain(`leader ${st.leader}`);
    });

    it('`status` loads none of openpgp, ssh2, listr2, inquirer, the S3 client', async () => {
      const { r, heavy, chunks } = await heavyModulesLoaded(['status', '-i', inventory], env, cwd);
      expect(r.code, r.stderr).toBe(ExitCode.ok);
      expect(r.stdout).toMatch(/: HEALTHY; leader n\d/);
      expect(chunks.length, 'the recorder saw the status chunks load').toBeGreaterThan(5);
      // node-vault is status's own: the Vault client reads the Raft and autopilot state through it.
      expect(heavy.filter((h) => h !== 'node-vault')).toEqual([]);
    });

    it('`lab down` leaves no process of the lab alive', async () => {
      const pids = lab.nodes.map((n) => n.pid!);
      expect(pids.every((p) => Number.isInteger(p) && p > 0)).toBe(true);
      expect(pids.every(isAlive)).toBe(true);
      const r = await cli.run(['lab', 'down', '--name', name]);
      expect(r.code).toBe(ExitCode.ok);
      expect(r.stdout).toContain('stopped 3 server processes');
      expect(pids.filter(isAlive)).toEqual([]);
      expect(processesUnder(lab.dir)).toEqual([]);
      const s = await cli.run(['lab', 'status', '--name', name, '--json']);
      expect((JSON.parse(s.stdout) as Array<{ state: string }>)[0]?.state).toBe('stopped');
    });

    it('`lab destroy` removes the data, the keys and the inventory', async () => {
      const r = await cli.run(['lab', 'destroy', '--name', name]);
      expect(r.code).toBe(ExitCode.ok);
      expect(r.stdout).toContain(`Lab ${name} destroyed`);
      expect(existsSync(lab.dir)).toBe(false);
      expect(existsSync(join(cwd, inventory))).toBe(false);
    });

    it('no CLI output contains an unseal key (base64 or hex) or the root token', () => {
      cli.expectNoSecrets(secrets);
    });
  },
);

interface Peer {
  node_id: string;
  address: string;
  leader: boolean;
  voter: boolean;
}

/**
 * `bao|vault operator raft list-peers -format=json`, run with the real binary. The token goes in
 * through the environment (BAO_TOKEN / VAULT_TOKEN), never on the command line.
 */
function listPeers(lab: LabRecord, flavor: 'openbao' | 'vault'): Peer[] {
  const prefix = flavor === 'openbao' ? 'BAO' : 'VAULT';
  const init = JSON.parse(readFileSync(lab.initFile, 'utf8')) as { root_token: string };
  const home = mkdtempSync(join(tmpdir(), 'vaultops-test-a-e2e-home-'));
  try {
    const r = spawnSync(lab.binary, ['operator', 'raft', 'list-peers', '-format=json'], {
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        HOME: home,
        [`${prefix}_ADDR`]: lab.nodes[0]!.apiAddr,
        [`${prefix}_CACERT`]: lab.caCert!,
        [`${prefix}_TOKEN`]: init.root_token,
      },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { data: { config: { servers: Peer[] } } }).data.config.servers;
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}
