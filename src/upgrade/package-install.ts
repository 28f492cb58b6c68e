import { GateError, InputError, VaultopsError } from '../core/errors.js';
import type { NodeSpec } from '../inventory/schema.js';
import { shq, type Host } from '../ssh/host.js';

/**
 * The package strategy: on hosts where the server came from the vendor's apt/yum repository
 * (`service.install: package` in the inventory), the new version arrives the way it does there,
 * `apt-get install <pkg>=<version>` node by node, instead of a copied binary. The order, gates,
 * waits and halts of the rolling upgrade stay the same; only "stage" and "swap" differ:
 *  - stage (every node, before any change): the exact package version is looked up in the host's
 *    configured repositories (`apt-cache madison`), and downloaded into the package cache
 *    (`apt-get install --download-only`), so the node's downtime does not include the download;
 *  - swap (per node, service stopped): `apt-get install -y --allow-downgrades <pkg>=<exact>`,
 *    through `sudo -n` when the inventory says `ssh.sudo: true`;
 *  - rollback: the same command with the version the node had before (still in the repository).
 *
 * yum/dnf hosts get `yum install -y <pkg>-<version>` (and `yum downgrade` to roll back): written
 * from the yum documentation, not run by a test here (the machines are Debian).
 */

export interface PackageSource {
  kind: 'package';
  /** The version asked for (`--version`), as the vendor numbers its releases (1.21.0, 2.7.2). */
  version: string;
}

export type InstallKind = 'binary' | 'package';

export function installOf(spec: NodeSpec): InstallKind {
  return spec.service?.install ?? 'binary';
}

/** The one install kind of all these nodes; a mixed cluster takes one upgrade per kind. */
export function clusterInstall(nodes: readonly NodeSpec[]): InstallKind {
  const kinds = new Set(nodes.map(installOf));
  if (kinds.size > 1)
    throw new InputError(
      `The nodes are installed in different ways (${nodes.map((n) => `${n.name}: ${installOf(n)}`).join(', ')}).`,
      {
        hint: 'Give every node of the cluster the same service.install (binary or package); a host is upgraded the way its server was installed.',
      },
    );
  return kinds.values().next().value ?? 'binary';
}

/** The package name: service.package, else the vendors' names (vault; openbao). */
export function packageName(spec: NodeSpec, defaultUnit: string): string {
  const name = spec.service?.package ?? (defaultUnit === 'openbao' ? 'openbao' : 'vault');
  if (!/^[a-z0-9][a-z0-9+.-]*$/.test(name))
    throw new InputError(`Node ${spec.name}: "${name}" is not a package name.`, {
      hint: 'service.package takes a Debian/RPM package name such as vault or openbao.',
    });
  return name;
}

export type PackageManager = 'apt' | 'yum';

export async function packageManager(host: Host): Promise<PackageManager> {
  const r = await host.exec(
    'if command -v apt-get >/dev/null 2>&1; then echo apt; elif command -v dnf >/dev/null 2>&1 || command -v yum >/dev/null 2>&1; then echo yum; fi',
    {
      sudo: false,
      timeoutMs: 30_000,
    },
  );
  if (r.code !== 0)
    throw new GateError(
      `${host.name}: cannot run commands for the package manager (exit ${r.code}); no node was touched.`,
      {
        details: r.stderr.split('\n').filter(Boolean).slice(-4),
        hint: /sudo/.test(r.stderr)
          ? 'The SSH user must be allowed to run commands with `sudo -n` (no password prompt).'
          : 'Check the SSH user and the host.',
      },
    );
  const pm = r.stdout.trim();
  if (pm === 'apt' || pm === 'yum') return pm;
  throw new GateError(
    `${host.name} has neither apt-get nor yum/dnf, but its inventory says service.install: package.`,
    {
      hint: 'Set service.install: binary for this node (the binary is then copied), or install the package manager.',
    },
  );
}

/** The installed version of the package, or undefined when it is not installed. */
export async function installedVersion(host: Host, pm: PackageManager, pkg: string): Promise<string | undefined> {
  const cmd =
    pm === 'apt'
      ? `dpkg-query -W -f='\${Status} \${Version}\\n' ${shq(pkg)} 2>/dev/null | sed -n 's/^install ok installed //p'`
      : `rpm -q --qf '%{VERSION}-%{RELEASE}\\n' ${shq(pkg)} 2>/dev/null | grep -v 'not installed'`;
  const r = await host.exec(cmd, { sudo: false, timeoutMs: 30_000 });
  return r.stdout.trim() || undefined;
}

/**
 * The repository's exact version string for a release version: 1.21.0 is `1.21.0-1` in HashiCorp's
 * apt repository and `2.7.2` in OpenBao's packages. Refused (nothing changed) when the host's
 * repositories do not offer it.
 */
export async function resolvePackageVersion(
  host: Host,
  pm: PackageManager,
  pkg: string,
  version: string,
): Promise<string> {
  const cmd =
    pm === 'apt'
      ? `apt-cache madison ${shq(pkg)} 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}'`
      : `yum --showduplicates list available ${shq(pkg)} 2>/dev/null | awk 'NR>1 {print $2}'; yum list installed ${shq(pkg)} 2>/dev/null | awk 'NR>1 {print $2}'`;
  const r = await host.exec(cmd, { sudo: false, timeoutMs: 120_000 });
  const offered = [
    ...new Set(
      r.stdout
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean),
    ),
  ];
  // Debian: [epoch:]upstream[-revision]; RPM: version-release. The release's version is the upstream part.
  const upstream = (v: string) => v.replace(/^\d+:/, '').replace(/-[^-]*$/, '');
  const hit = offered.find((v) => v === version) ?? offered.find((v) => upstream(v) === version);
  if (!hit)
    throw new GateError(
      `${host.name}: package ${pkg} ${version} is not in the host's repositories; no node was touched.`,
      {
        details: [`offered: ${offered.join(', ') || 'none'}`],
        hint:
          pm === 'apt'
            ? `Refresh the package lists on the hosts (sudo apt-get update) and check that the repository carries ${pkg} ${version}.`
            : `Check that the repository carries ${pkg} ${version} (yum --showduplicates list ${pkg}).`,
      },
    );
  return hit;
}

function installCommand(
  pm: PackageManager,
  pkg: string,
  exact: string,
  opts: { downloadOnly?: boolean; downgrade?: boolean },
): string {
  if (pm === 'apt')
    return `DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades${opts.downloadOnly ? ' --download-only' : ''} -o Dpkg::Options::=--force-confold ${shq(`${pkg}=${exact}`)}`;
  const verb = opts.downgrade ? 'downgrade' : 'install';
  return `yum ${verb} -y${opts.downloadOnly ? ' --downloadonly' : ''} ${shq(`${pkg}-${exact}`)}`;
}

async function runInstall(host: Host, cmd: string, what: string): Promise<void> {
  const r = await host.exec(cmd, { timeoutMs: 600_000, maxBytes: 16_384 });
  if (r.code === 0) return;
  const lines = [...r.stdout.split('\n'), ...r.stderr.split('\n')].filter(Boolean).slice(-10);
  const sudoAsked = /sudo: (a password is required|a terminal is required)/.test(r.stderr);
  throw new VaultopsError(`${what} on ${host.name} failed (exit ${r.code ?? r.signal}).`, {
    details: lines,
    hint: sudoAsked
      ? 'The SSH user must be allowed to run the package manager with `sudo -n` (no password): add a sudoers rule for it.'
      : 'See the package manager output above.',
  });
}

/** Downloads the package into the host's cache: nothing installed, nothing running changes. */
export async function prefetchPackage(host: Host, pm: PackageManager, pkg: string, exact: string): Promise<void> {
  await runInstall(host, installCommand(pm, pkg, exact, { downloadOnly: true }), `Downloading ${pkg} ${exact}`);
}

/** Installs the exact version (the service is stopped by the caller first). */
export async function installPackage(
  host: Host,
  pm: PackageManager,
  pkg: string,
  exact: string,
  downgrade = false,
): Promise<void> {
  await runInstall(host, installCommand(pm, pkg, exact, { downgrade }), `Installing ${pkg} ${exact}`);
}
