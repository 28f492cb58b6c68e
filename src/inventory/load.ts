import { readFileSync } from 'node:fs';
import { resolve, dirname, isAbsolute, join } from 'node:path';
import { homedir } from 'node:os';
import { InputError } from '../core/errors.js';
import { ProblemsError } from '../core/problems-error.js';
import { YamlSource } from '../core/yaml-doc.js';
import { inventorySchema, type AuthSpec, type ClusterSpec, type InventoryFile } from './schema.js';

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
      if (names.has(node.name))
        src.add(
          ['clusters', cname, 'nodes', i, 'name'],
          `node name "${node.name}" is used twice in cluster ${cname}`,
          'give every node its own name',
        );
      if (addrs.has(node.api_addr))
        src.add(
          ['clusters', cname, 'nodes', i, 'api_addr'],
          `api_addr ${node.api_addr} is used twice in cluster ${cname}`,
          'each node needs its own address, not a load balancer',
        );
      names.add(node.name);
      addrs.add(node.api_addr);
    });
    // Nodes for an immutable upgrade: their names and addresses must not clash with the current ones.
    (cluster.new_nodes ?? []).forEach((node, i) => {
      if (names.has(node.name) || newNames.has(node.name))
        src.add(
          ['clusters', cname, 'new_nodes', i, 'name'],
          `node name "${node.name}" is used twice in cluster ${cname}`,
          'a new node needs a name no current node has',
        );
      if (addrs.has(node.api_addr))
        src.add(
          ['clusters', cname, 'new_nodes', i, 'api_addr'],
          `api_addr ${node.api_addr} is used twice in cluster ${cname}`,
          'a new node needs its own address',
        );
      newNames.add(node.name);
      addrs.add(node.api_addr);
    });
    if (cluster.auth && cluster.token)
      src.add(
        ['clusters', cname, 'token'],
        `cluster ${cname} has both token: and auth:, and only one of them can say how vaultops logs in`,
        'keep auth: (for a given token write auth: { method: token, token: REF }) and remove token:',
      );
    if (cluster.auth?.method === 'cert' && (cluster.auth.client_cert ?? cluster.tls?.client_cert) === undefined)
      src.add(
        ['clusters', cname, 'auth'],
        `cluster ${cname} logs in with a TLS certificate but names none`,
        'add auth.client_cert and auth.client_key (or tls.client_cert and tls.client_key)',
      );
    if (
      cluster.auth?.method === 'cert' &&
      (cluster.auth.client_cert === undefined) !== (cluster.auth.client_key === undefined)
    )
      src.add(
        ['clusters', cname, 'auth'],
        `cluster ${cname}'s certificate login names ${cluster.auth.client_cert === undefined ? 'a key but no certificate' : 'a certificate but no key'}`,
        'give both auth.client_cert and auth.client_key',
      );
    for (const [group, members] of Object.entries(cluster.groups ?? {})) {
      members.forEach((m, i) => {
        if (!names.has(m) && !newNames.has(m))
          src.add(
            ['clusters', cname, 'groups', group, i],
            `group ${group} names node "${m}", which cluster ${cname} does not have`,
            `nodes: ${[...names].join(', ')}`,
          );
      });
    }
  }
}

/**
 * Relative file paths in an inventory are relative to the inventory file, as a person expects and
 * as cron needs (it runs from / or ~): TLS files, SSH key and known_hosts files, and every `file:`
 * secret reference (token, unseal keys, store credentials and identities, vars), and a store's local
 * files (a dir store's path, key_file, known_hosts, ca_cert, encryption recipient files), so a store
 * opened by a playbook action lands where `vaultops backup` puts it. Paths on the nodes and on an
 * SFTP server (service.binary, data_dir, an sftp store's path) are not ours to resolve.
 */
function resolvePaths(inv: InventoryFile, base: string): void {
  const abs = (p: string | undefined) => (p === undefined ? p : absolutePath(p, base));
  for (const c of Object.values(inv.clusters)) {
    if (c.tls) {
      c.tls.ca_cert = abs(c.tls.ca_cert);
      c.tls.client_cert = abs(c.tls.client_cert);
      c.tls.client_key = abs(c.tls.client_key);
    }
    if (c.token) c.token = absoluteFileRef(c.token, base);
    if (c.auth) c.auth = authPaths(c.auth, base);
    if (c.unseal?.keys) c.unseal.keys = absoluteFileRef(c.unseal.keys, base);
    if (c.stores)
      c.stores = Object.fromEntries(
        Object.entries(c.stores).map(([name, store]) => [name, storePaths(absoluteFileRefs(store, base), base)]),
      );
    if (c.vars) c.vars = absoluteFileRefs(c.vars, base);
    for (const n of [...c.nodes, ...(c.new_nodes ?? [])]) {
      if (n.ssh) {
        n.ssh.key_file = abs(n.ssh.key_file);
        n.ssh.known_hosts = abs(n.ssh.known_hosts);
        if (n.ssh.key_passphrase) n.ssh.key_passphrase = absoluteFileRef(n.ssh.key_passphrase, base);
      }
      if (n.vars) n.vars = absoluteFileRefs(n.vars, base);
    }
  }
  if (inv.vars) inv.vars = absoluteFileRefs(inv.vars, base);
}

/** The login's files and `file:` references; a Kubernetes token file is absolute or defaulted. */
function authPaths(auth: AuthSpec, base: string): AuthSpec {
  switch (auth.method) {
    case 'token':
      return { ...auth, token: absoluteFileRef(auth.token, base) };
    case 'approle':
      return {
        ...auth,
        role_id: absoluteFileRef(auth.role_id, base),
        secret_id: absoluteFileRef(auth.secret_id, base),
      };
    case 'cert':
      return {
        ...auth,
        ...(auth.client_cert === undefined ? {} : { client_cert: absolutePath(auth.client_cert, base) }),
        ...(auth.client_key === undefined ? {} : { client_key: absolutePath(auth.client_key, base) }),
      };
    case 'jwt':
      return { ...auth, token_file: absolutePath(auth.token_file, base) };
    case 'kubernetes':
      return auth.token_file === undefined ? auth : { ...auth, token_file: absolutePath(auth.token_file, base) };
  }
}

/** The local files of a store entry (still unchecked: its schema is applied when the store is opened). */
function storePaths(store: Record<string, unknown>, base: string): Record<string, unknown> {
  const out = { ...store };
  const local = (key: string) => {
    if (typeof out[key] === 'string') out[key] = absolutePath(out[key], base);
  };
  if (out['type'] === 'dir') local('path');
  for (const key of ['key_file', 'known_hosts', 'ca_cert']) local(key);
  const enc = out['encrypt'];
  if (enc !== null && typeof enc === 'object' && !Array.isArray(enc)) {
    const e = { ...(enc as Record<string, unknown>) };
    // age recipients are keys (age1...) or files of them; OpenPGP recipients are key files.
    if (Array.isArray(e['age']))
      e['age'] = e['age'].map((r: unknown) =>
        typeof r === 'string' && !r.startsWith('age1') ? absolutePath(r, base) : r,
      );
    if (Array.isArray(e['openpgp']))
      e['openpgp'] = e['openpgp'].map((r: unknown) => (typeof r === 'string' ? absolutePath(r, base) : r));
    out['encrypt'] = e;
  }
  return out;
}

function absolutePath(p: string, base: string): string {
  if (p === '~' || p.startsWith('~/')) return join(homedir(), p.slice(1));
  return isAbsolute(p) ? p : resolve(base, p);
}

/** `file:init.json#root_token` -> `file:/dir/of/inventory/init.json#root_token`; other references as they are. */
export function absoluteFileRef(ref: string, base: string): string {
  return ref.startsWith('file:') && ref.length > 5 ? `file:${absolutePath(ref.slice(5), base)}` : ref;
}

function absoluteFileRefs<T>(value: T, base: string): T {
  if (typeof value === 'string') return absoluteFileRef(value, base) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => absoluteFileRefs(v, base)) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, absoluteFileRefs(v, base)])) as T;
  }
  return value;
}

/** Picks the cluster: the named one, or the only one. */
export function selectCluster(inv: Inventory, name: string | undefined): { name: string; spec: ClusterSpec } {
  const names = Object.keys(inv.data.clusters);
  if (name !== undefined) {
    const spec = inv.data.clusters[name];
    if (!spec)
      throw new InputError(`Inventory ${inv.file} has no cluster "${name}".`, {
        hint: `Clusters: ${names.join(', ')}.`,
      });
    return { name, spec };
  }
  if (names.length === 1) return { name: names[0]!, spec: inv.data.clusters[names[0]!]! };
  throw new InputError(`Inventory ${inv.file} has ${names.length} clusters; say which one.`, {
    hint: `Pass --cluster with one of: ${names.join(', ')}.`,
  });
}
