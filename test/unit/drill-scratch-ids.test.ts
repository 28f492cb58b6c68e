import { describe, expect, it } from 'vitest';
import { scratchRaftIds } from '../../src/drill/run-drill.js';

/** A drill's scratch nodes n1..nN take the backup's Raft node IDs (Vault marks a node with an unknown ID as removed). */
describe("a drill's scratch cluster takes the backup's Raft node IDs", () => {
  it('keeps n1-n3 for a cluster of n1-n3, in any order', () => {
    expect(scratchRaftIds(['n3', 'n1', 'n2'])).toEqual(['n1', 'n2', 'n3']);
  });
  it('gives n4-n6 (nodes replaced by an immutable upgrade) to n1-n3', () => {
    expect(scratchRaftIds(['n6', 'n4', 'n5'])).toEqual(['n4', 'n5', 'n6']);
  });
  it('never gives a scratch node the ID that is another scratch node name', () => {
    expect(scratchRaftIds(['n3', 'n4', 'n5'])).toEqual(['n4', 'n5', 'n3']);
    expect(scratchRaftIds(['vault-a', 'vault-b', 'vault-c', 'vault-d', 'vault-e'])).toEqual([
      'vault-a',
      'vault-b',
      'vault-c',
      'vault-d',
      'vault-e',
    ]);
  });
  it('falls back to three nodes when the backup lists none or more than nine', () => {
    expect(scratchRaftIds([])).toEqual(['n1', 'n2', 'n3']);
    expect(scratchRaftIds(Array.from({ length: 10 }, (_, i) => `x${i}`))).toEqual(['n1', 'n2', 'n3']);
  });
});
