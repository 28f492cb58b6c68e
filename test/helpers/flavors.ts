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
