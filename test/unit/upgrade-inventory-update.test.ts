import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadInventory, selectCluster } from '../../src/inventory/load.js';
import { recordUpgrade } from '../../src/upgrade/inventory-update.js';

const INV = `# production inventory
clusters:
  prod:
    flavor: vault
    version: "1.19.0"   # what runs now
    groups: { zone-a: [v1, v4], zone-b: [v2, v5] }
    nodes:
      - { name: v1, api_addr: "https://10.0.0.1:8200" }
      - { name: v2, api_addr: "https://10.0.0.2:8200" }
    new_nodes:
      # the replacement hosts
      - { name: v4, api_addr: "https://10.0.0.4:8200" }
      - { name: v5, api_addr: "https://10.0.0.5:8200" }
`;

describe('inventory after an upgrade', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const setup = () => {
    const dir = mkdtempSync(join(tmpdir(), 'vaultops-invup-'));
    dirs.push(dir);
    const file = join(dir, 'inv.yml');
    writeFileSync(file, INV);
    return { dir, file, ...selectCluster(loadInventory(file), 'prod') };
  };

  it('immutable: new_nodes become the nodes, groups lose the old names, version is the target, comments stay', async () => {
    const { file, dir, name, spec } = setup();
    const out = join(dir, 'after.yml');
    expect(
      await recordUpgrade({
        inventoryFile: file,
        clusterName: name,
        spec,
        target: '1.21.0',
        replacedBy: ['v4', 'v5'],
        writeTo: out,
      }),
    ).toEqual([out]);
    expect(readFileSync(file, 'utf8')).toBe(INV);
    const after = selectCluster(loadInventory(out), 'prod').spec;
    expect(after.nodes.map((n) => n.name)).toEqual(['v4', 'v5']);
    expect(after.new_nodes).toBeUndefined();
    expect(after.version).toBe('1.21.0');
    expect(after.groups).toEqual({ 'zone-a': ['v4'], 'zone-b': ['v5'] });
    expect(readFileSync(out, 'utf8')).toContain('# production inventory');
  });

  it('refuses a new node named like a current one (file:line:col)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vaultops-invup-'));
    dirs.push(dir);
    const file = join(dir, 'inv.yml');
    writeFileSync(file, INV.replace('{ name: v4,', '{ name: v1,'));
    let details: readonly string[] = [];
    try {
      loadInventory(file);
    } catch (e) {
      details = (e as { details: readonly string[] }).details;
    }
    expect(details.some((d) => /inv\.yml:\d+:\d+ node name "v1" is used twice/.test(d))).toBe(true);
  });
});
