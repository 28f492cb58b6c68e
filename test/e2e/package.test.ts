import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/core/exit-codes.js';
import { NODE, REPO, runProcess, type Ran } from '../helpers/cli.js';
import { flavorsUnderTest } from '../helpers/flavors.js';
import { startTestLab, type TestLab } from '../helpers/lab.js';

const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
  version: string;
  engines: { node: string };
  files: string[];
};
/** The directory of the real Node 24 binary (not node_modules/.bin, which holds the repo's tools). */
const NODE_DIR = dirname(realpathSync(NODE));

function run(cmd: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }): Promise<Ran> {
  return runProcess('/bin/sh', ['-c', 'cd "$0" && exec "$@"', options.cwd, cmd, ...args], options.env);
}

/**
 * A copy of what a clean clone holds (the sources, no dist/), with the repo's node_modules linked in
 * for the build tools: packing it runs `prepack` there, and the repo's own dist/ (used by other test
 * files running at the same time) is never removed.
 */
function cleanCheckout(into: string): string {
  const dir = join(into, 'checkout');
  mkdirSync(dir);
  for (const f of [
    'package.json',
    'package-lock.json',
    'tsconfig.json',
    'README.md',
    'LICENSE',
    'bin',
    'scripts',
    'src',
    'playbooks',
    'docs',
  ]) {
    if (existsSync(join(REPO, f))) cpSync(join(REPO, f), join(dir, f), { recursive: true });
  }
  mkdirSync(join(dir, 'inventories'));
  cpSync(join(REPO, 'inventories', 'example.yml'), join(dir, 'inventories', 'example.yml'));
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

describe('the packed package installs and runs outside the checkout', () => {
  const flavor = flavorsUnderTest()[0]!;
  let tmp: string;
  let prefix: string;
  let tarball: string;
  let contents: string[];
  let lab: TestLab;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'vaultops-pack-'));
    const checkout = cleanCheckout(tmp);
    const npmEnv = { ...process.env, PATH: `${NODE_DIR}:${process.env['PATH']}`, npm_config_loglevel: 'error' };
    const packed = await run('npm', ['pack', '--pack-destination', tmp, '--json'], { cwd: checkout, env: npmEnv });
    expect(packed.code, packed.stderr).toBe(0);
    const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as [
      { filename: string; files: { path: string }[] },
    ];
    tarball = join(tmp, info[0].filename);
    contents = info[0].files.map((f) => f.path);
    prefix = join(tmp, 'prefix');
    // From the npm cache when it has everything (npm ci filled it), else from the registry.
    const installed = await run(
      'npm',
      ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball],
      { cwd: tmp, env: npmEnv },
    );
    expect(installed.code, installed.stderr).toBe(0);
    // What a user has: the installed bin on PATH, a supported node, nothing of the checkout.
    env = {
      PATH: `${join(prefix, 'bin')}:${NODE_DIR}:/usr/bin:/bin`,
      HOME: tmp,
      VAULTOPS_STATE_DIR: join(tmp, 'state'),
    };
    lab = await startTestLab({ name: 'pkg-lab', flavor: flavor.flavor, version: flavor.version });
  });
  afterAll(async () => {
    await lab?.destroy();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('holds the built CLI, the playbooks and the licence, but no tests, sources or source maps', () => {
    expect(contents).toEqual(
      expect.arrayContaining([
        'LICENSE',
        'README.md',
        'package.json',
        'bin/vaultops.js',
        'dist/cli/main.js',
        'playbooks/health-check.yml',
        'inventories/example.yml',
      ]),
    );
    expect(contents.filter((f) => /^(src|test|scripts|\.ci)\//.test(f) || f.endsWith('.map'))).toEqual([]);
    expect(readFileSync(join(REPO, 'LICENSE'), 'utf8')).toMatch(/^Mozilla Public License Version 2\.0\n/);
    // A build without maps leaves no sourceMappingURL pointing at a file that is not there.
    const main = readFileSync(join(prefix, 'lib', 'node_modules', 'vaultops', 'dist', 'cli', 'main.js'), 'utf8');
    expect(main).not.toContain('sourceMappingURL');
  });

  it('`vaultops --version` prints the package version', async () => {
    const r = await run('vaultops', ['--version'], { cwd: tmp, env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`vaultops ${pkg.version}\n`);
  });

  it('`vaultops --help` lists the commands', async () => {
    const r = await run('vaultops', ['--help'], { cwd: tmp, env });
    expect(r.code).toBe(0);
    for (const c of ['status', 'backup', 'restore', 'run', 'lab', 'completion'])
      expect(r.stdout).toMatch(new RegExp(`^  ${c}\\b`, 'm'));
  });

  it('`vaultops status` reports the lab healthy (exit 0) from outside the checkout', async () => {
    const r = await run('vaultops', ['status', '-i', lab.inventory], { cwd: tmp, env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(ExitCode.ok);
    expect(r.stdout).toMatch(/: HEALTHY; leader n\d/);
    for (const n of ['n1', 'n2', 'n3']) expect(r.stdout).toMatch(new RegExp(`^${n}\\b`, 'm'));
    for (const s of lab.secrets) expect(r.stdout + r.stderr).not.toContain(s);
  });
});

describe('an unsupported Node.js gets a clear error (exit 6) before anything loads', () => {
  const launcher = join(REPO, 'bin', 'vaultops.js');
  let tmp: string;
  let fake: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'vaultops-node-'));
    // Pretends to be another Node.js version: process.version is all the launcher looks at.
    fake = join(tmp, 'pretend.mjs');
    writeFileSync(
      fake,
      'const v = process.env.PRETEND_NODE; Object.defineProperty(process.versions, "node", { value: v }); Object.defineProperty(process, "version", { value: `v${v}` });\n',
    );
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it("the launcher's range is package.json's engines range", () => {
    const inLauncher = /var SUPPORTED_NODE = '([^']+)'/.exec(readFileSync(launcher, 'utf8'))?.[1];
    expect(inLauncher).toBe(pkg.engines.node);
  });

  it.each([
    ['22.13.0', false],
    ['22.22.1', false],
    ['22.22.2', true],
    ['23.11.0', false],
    ['24.14.9', false],
    ['24.15.0', true],
    ['25.2.0', false],
    ['26.0.0', true],
  ])('Node.js %s supported: %s', async (version, supported) => {
    const r = await runProcess(NODE, ['--import', fake, launcher, '--version'], {
      ...process.env,
      PRETEND_NODE: version,
    });
    if (supported) {
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`vaultops ${pkg.version}\n`);
    } else {
      expect(r.code).toBe(ExitCode.prerequisite);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain(
        `vaultops: Node.js v${version} is not supported; vaultops needs Node.js 22.x from 22.22.2, or 24.x from 24.15.0, or 26.0.0 and newer.`,
      );
      expect(r.stderr).toContain('hint: install Node.js 24 LTS');
    }
  });

  it("the machine's own /usr/bin/node, when it is older, is refused with the same message", async () => {
    const machineNode = '/usr/bin/node';
    expect(existsSync(machineNode), 'this machine has a system node (Debian nodejs, which runs npm)').toBe(true);
    const version = (await runProcess(machineNode, ['--version'], process.env)).stdout.trim();
    const r = await runProcess(machineNode, [launcher, '--version'], process.env);
    const [major, minor] = version.slice(1).split('.').map(Number) as [number, number];
    const supported = (major === 22 && minor >= 22) || (major === 24 && minor >= 15) || major >= 26;
    if (supported) {
      expect(r.code).toBe(0);
    } else {
      expect(r.code).toBe(ExitCode.prerequisite);
      expect(r.stderr).toMatch(new RegExp(`^vaultops: Node.js ${version.replace(/\./g, '\\.')} is not supported;`));
      expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
    }
  });
});

// Keeps the package's `files` honest: every entry names something the checkout has.
describe('package.json files', () => {
  it('names only paths that exist (a typo would silently leave a part out of the package)', () => {
    const missing = pkg.files.filter((f) => !f.startsWith('!') && !existsSync(join(REPO, f)));
    expect(missing).toEqual([]);
    expect(readdirSync(join(REPO, 'bin'))).toContain('vaultops.js');
  });
});
