import { describe, expect, it } from 'vitest';
import { sameCluster } from '../../../src/backup/restore-snapshot.js';
import type { Manifest } from '../../../src/backup/stores/manifest.js';

/** Only the cluster part of a manifest matters to the gate. */
const manifest = (cluster: Manifest['cluster']) => ({ cluster }) as Manifest;

describe('the restore gate compares what both sides have', () => {
  it('cluster ids decide when both exist', () => {
    expect(sameCluster(manifest({ name: 'a', cluster_id: 'x' }), { cluster_id: 'x' }, 'a').verdict).toBe('same');
    expect(sameCluster(manifest({ name: 'a', cluster_id: 'x' }), { cluster_id: 'y' }, 'a').verdict).toBe('other');
  });

  it("without an id on one side, the server's cluster_name and the inventory name decide", () => {
    expect(
      sameCluster(manifest({ name: 'a', cluster_name: 'vault-a' }), { cluster_id: 'y', cluster_name: 'vault-a' }, 'a')
        .verdict,
    ).toBe('same');
    expect(
      sameCluster(manifest({ name: 'a', cluster_name: 'vault-a' }), { cluster_id: 'y', cluster_name: 'vault-b' }, 'a')
        .verdict,
    ).toBe('other');
    expect(
      sameCluster(manifest({ name: 'b', cluster_id: 'x', cluster_name: 'vault-a' }), { cluster_name: 'vault-a' }, 'a')
        .verdict,
    ).toBe('other');
  });

  it('with nothing but the inventory name to compare, identity is unknown (refused without --force-other-cluster)', () => {
    const r = sameCluster(manifest({ name: 'a' }), { cluster_id: 'y', cluster_name: 'vault-a' }, 'a');
    expect(r.verdict).toBe('unknown');
    expect(r.why).toMatch(/no cluster id/);
    expect(sameCluster(manifest({ name: 'a', cluster_id: 'x', cluster_name: 'vault-a' }), undefined, 'a').verdict).toBe(
      'unknown',
    );
  });

  it("a file without a manifest is left to Vault's own seal check", () => {
    expect(sameCluster(undefined, { cluster_id: 'y' }, 'a').verdict).toBe('unchecked');
  });
});
