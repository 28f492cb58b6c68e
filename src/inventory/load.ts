import { readFileSync } from 'node:fs';
import { resolve, dirname, isAbsolute, join } from 'node:path';
import { homedir } from 'node:os';
import { InputError } from '../core/errors.js';
import { ProblemsError } from '../core/problems-error.js';
import { YamlSource } from '../core/yaml-doc.js';
import { inventorySchema, type ClusterSpec, type InventoryFile } from './schema.js';

export interface Inventory {
  file: string;
  data: InventoryFile;
  source: YamlSource;
}

/** Loads and checks an inventory: the schema first, then the rules, every problem at once. */
export function loadInventory(file: string): Inventory {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(`Cannot read inventory ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}.`, {
      hint: 'Pass -i PATH to an inventory file; `vaultops lab up` writes one for the local lab.',
    });
  }
  return parseInventory(file, text);
}

export function parseInventory(file: string, text: string): Inventory {
  const source = new YamlSource(file, text);
  const raw = source.toJS();
  if (source.problems.length) throw new ProblemsError(`Inventory ${file}`, source.problems);
  const data = source.validate(inventorySchema, raw ?? {});
  if (data) checkRules(source, data);
  if (!data || source.problems.length) throw new ProblemsError(`Inventory ${file}`, source.problems);
  resolvePaths(data, dirname(resolve(file)));
  return { file, data, source };
}

function checkRules(src: YamlSource, inv: InventoryFile): void {
  for (const [cname, cluster] of Object.entries(inv.clusters)) {
    const names = new Set<string>();
    const newNames = new Set<string>();
    const addrs = new Set<string>();
    cluster.nodes.forEach((node, i) => {
      if (names.has(node.name)) src.add(['clusters', cname, 'nodes', i, 'name'], `node name "${node.name}" is used twice in cluster ${cname}`, 'give every node its own name');
      if (addrs.has(node.api_addr)) src.add(['clusters', cname, 'nodes', i, 'api_addr'], `api_addr ${node.api_addr} is used twice in cluster ${cname}`, 'each node needs its own address, not a load balancer');
      names.add(node.name);
      addrs.add(node.api_addr);
    });
    // Nodes for an immutable upgrade: their names and addresses must not clash with the current ones.
    (cluster.new_nodes ?? []).forEach((node, i) => {
      if (names.has(node.name) || newNames.has(node.name)) src.add(['clusters', cname, 'new_nodes', i, 'name'], `node name "${node.name}" is used twice in cluster ${cname}`, 'a new node needs a name no current node has');
      if (addrs.has(node.api_addr)) src.add(['clusters', cname, 'new_nodes', i, 'api_addr'], `api_addr ${node.api_addr} is used twice in cluster ${cname}`, 'a new node needs its own address');
      newNames.add(node.name);
      addrs.add(node.api_addr);
    });
    for (const [group, members] of Object.entries(cluster.groups ?? {})) {
      members.forEach((m, i) => {
        if (!names.has(m) && !newNames.has(m)) src.add(['clusters', cname, 'groups', group, i], `group ${group} names node "${m}", which cluster ${cname} does not have`, `nodes: ${[...names].join(', ')}`);
      });
    }
  }
}

/** Relative file paths in an inventory are relative to the inventory file, as a person expects. */
function resolvePaths(inv: InventoryFile, base: string): void {
  const abs = (p: string | undefined) => {
    if (p === undefined) return p;
    if (p === '~' || p.startsWith('~/')) return join(homedir(), p.slice(1));
    return isAbsolute(p) ? p : resolve(base, p);
  };
  for (const c of Object.values(inv.clusters)) {
    if (c.tls) {
      c.tls.ca_cert = abs(c.tls.ca_cert);
      c.tls.client_cert = abs(c.tls.client_cert);
      c.tls.client_key = abs(c.tls.client_key);
    }
    for (const n of [...c.nodes, ...(c.new_nodes ?? [])]) {
      if (n.ssh) {
        n.ssh.key_file = abs(n.ssh.key_file);
        n.ssh.known_hosts = abs(n.ssh.known_hosts);
      }
    }
  }
}

/** Picks the cluster: the named one, or the only one. */
export function selectCluster(inv: Inventory, name: string | undefined): { name: string; spec: ClusterSpec } {
  const names = Object.keys(inv.data.clusters);
  if (name !== undefined) {
    const spec = inv.data.clusters[name];
    if (!spec) throw new InputError(`Inventory ${inv.file} has no cluster "${name}".`, { hint: `Clusters: ${names.join(', ')}.` });
    return { name, spec };
  }
  if (names.length === 1) return { name: names[0]!, spec: inv.data.clusters[names[0]!]! };
  throw new InputError(`Inventory ${inv.file} has ${names.length} clusters; say which one.`, { hint: `Pass --cluster with one of: ${names.join(', ')}.` });
}
