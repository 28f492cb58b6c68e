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
  const older: FlavorUnderTest[] = UPGRADE_PAIRS.map((p) => ({ flavor: p.flavor, version: p.from }));
  const current = flavorsUnderTest();
  const extra =
    process.env['VAULTOPS_TEST_UPGRADES'] === '0'
      ? []
      : older.filter((x) => current.some((f) => f.flavor === x.flavor));
  return [...current, ...extra];
}

/** The version each upgrade suite starts from and the one it upgrades to, per flavour. */
export interface UpgradePair {
  flavor: Flavor;
  from: string;
  to: string;
}

const UPGRADE_PAIRS: UpgradePair[] = [
  { flavor: 'openbao', from: '2.6.2', to: '2.7.2' },
  { flavor: 'vault', from: '1.19.0', to: '1.21.0' },
];

/** The upgrade pairs of the flavours under test (or of those named in `only`, a comma list). */
export function upgradePairs(only?: string): UpgradePair[] {
  const wanted = only?.split(',').map((s) => s.trim());
  return UPGRADE_PAIRS.filter((p) =>
    wanted ? wanted.includes(p.flavor) : flavorsUnderTest().some((f) => f.flavor === p.flavor),
  );
}
