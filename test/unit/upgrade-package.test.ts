import { describe, expect, it } from 'vitest';
import type { ExecResult, Host } from '../../src/ssh/host.js';
import { clusterInstall, packageName, resolvePackageVersion } from '../../src/upgrade/package-install.js';
import type { NodeSpec } from '../../src/inventory/schema.js';

/**
 * How a release version becomes the repository's exact package version. The host here only answers
 * the one `apt-cache madison` query with canned output in apt's real format (the machine test runs
 * the real apt); what is checked is the matching and the refusal.
 */
function hostAnswering(stdout: string, seen: string[] = []): Host {
  return {
    name: 'n1',
    exec: async (command: string): Promise<ExecResult> => {
      seen.push(command);
      return { code: 0, stdout, stderr: '', timedOut: false };
    },
    upload: () => Promise.reject(new Error('not used')),
    fetch: () => Promise.reject(new Error('not used')),
    sha256: () => Promise.reject(new Error('not used')),
    readFile: () => Promise.reject(new Error('not used')),
    close: () => undefined,
  };
}

const node = (name: string, service?: NodeSpec['service']): NodeSpec => ({
  name,
  api_addr: 'https://10.0.0.1:8200',
  service,
});

describe('package versions', () => {
  it("finds HashiCorp's Debian revision (1.21.0 -> 1.21.0-1) and an epoch, never a longer version", async () => {
    const seen: string[] = [];
    // What the awk over `apt-cache madison vault` prints: one version per line.
    const h = hostAnswering('1.21.10-1\n1.21.0-1\n1.19.0-1\n', seen);
    expect(await resolvePackageVersion(h, 'apt', 'vault', '1.21.0')).toBe('1.21.0-1');
    expect(seen[0]).toContain('apt-cache madison vault');
    expect(await resolvePackageVersion(hostAnswering('1:2.7.2-3\n'), 'apt', 'openbao', '2.7.2')).toBe('1:2.7.2-3');
    expect(await resolvePackageVersion(hostAnswering('2.7.2\n2.6.2\n'), 'apt', 'openbao', '2.7.2')).toBe('2.7.2');
  });

  it('refuses at the gate a version the repositories do not offer, listing what they do', async () => {
    await expect(resolvePackageVersion(hostAnswering('1.19.0-1\n'), 'apt', 'vault', '1.21.0')).rejects.toMatchObject({
      exitCode: 4,
      message: expect.stringContaining("package vault 1.21.0 is not in the host's repositories"),
      details: ['offered: 1.19.0-1'],
      hint: expect.stringContaining('apt-get update'),
    });
  });

  it('a cluster is one install kind; service.package names the package', () => {
    expect(clusterInstall([node('a'), node('b', { binary: '/usr/bin/vault' })])).toBe('binary');
    expect(clusterInstall([node('a', { install: 'package' })])).toBe('package');
    expect(() => clusterInstall([node('a', { install: 'package' }), node('b')])).toThrow(
      /installed in different ways \(a: package, b: binary\)/,
    );
    expect(packageName(node('a'), 'openbao')).toBe('openbao');
    expect(packageName(node('a', { package: 'vault-enterprise' }), 'vault')).toBe('vault-enterprise');
    expect(() => packageName(node('a', { package: 'vault; rm -rf /' }), 'vault')).toThrow(/not a package name/);
  });
});
