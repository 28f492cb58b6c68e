import type { Flavor } from '../../src/lab/binaries.js';

export interface FlavorUnderTest {
  flavor: Flavor;
  version: string;
}

/**
 * The flavours every integration suite runs against. Both by default (CI); narrow with
 * VAULTOPS_TEST_FLAVORS=openbao for a quick local loop.
 */
export function flavorsUnderTest(): FlavorUnderTest[] {
  const all: FlavorUnderTest[] = [
    { flavor: 'openbao', version: '2.7.2' },
    { flavor: 'vault', version: '1.21.0' },
  ];
  const only = process.env['VAULTOPS_TEST_FLAVORS'];
  if (!only) return all;
  const wanted = only.split(',').map((s) => s.trim());
  return all.filter((f) => wanted.includes(f.flavor));
}

/**
 * Every server binary the suite runs: the flavours under test, and for the upgrade suites the older
 * version of each (off with VAULTOPS_TEST_UPGRADES=0). The global set-up and scripts/test-setup.sh
 * (which fetches them through `vaultops lab fetch` before the suite starts) both read this list.
 */
export function binariesUnderTest(): FlavorUnderTest[] {
  const older: FlavorUnderTest[] = [
    { flavor: 'openbao', version: '2.6.2' },
    { flavor: 'vault', version: '1.19.0' },
  ];
  const current = flavorsUnderTest();
  const extra =
    process.env['VAULTOPS_TEST_UPGRADES'] === '0'
      ? []
      : older.filter((x) => current.some((f) => f.flavor === x.flavor));
  return [...current, ...extra];
}
