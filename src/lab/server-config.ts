import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FLAVORS } from './binaries.js';
import type { LabNode, LabRecord } from './lab-record.js';
import { API_PORT, CLUSTER_PORT } from './slots.js';
import type { PreparedSeal } from './transit-seal.js';

/** Every node's server.hcl; with a transit seal the stanza (and its token) is appended and the file is 0600. */
export function writeConfigs(lab: LabRecord, seal: PreparedSeal | undefined): void {
  for (const n of lab.nodes) {
    writeFileSync(n.config, renderConfig(lab, n) + (seal?.stanza ?? ''), { mode: 0o600 });
    if (seal) chmodSync(n.config, 0o600);
  }
}

/** Where a node's files are as the server sees them: the lab's own directories, or a machine's usual paths. */
export interface ServerPaths {
  data: string;
  caCert: string;
  cert: string;
  key: string;
}

export function labServerPaths(lab: LabRecord, node: LabNode): ServerPaths {
  const tlsDir = join(lab.dir, 'tls');
  return {
    data: join(node.dir, 'data'),
    caCert: join(tlsDir, 'ca.pem'),
    cert: join(tlsDir, `${node.name}.pem`),
    key: join(tlsDir, `${node.name}.key`),
  };
}

export function renderConfig(lab: LabRecord, node: LabNode, paths: ServerPaths = labServerPaths(lab, node)): string {
  const joins = lab.nodes
    .filter((n) => n.name !== node.name)
    .map((n) =>
      [
        '  retry_join {',
        `    leader_api_addr = "${n.apiAddr}"`,
        ...(lab.tls ? [`    leader_ca_cert_file = "${paths.caCert}"`] : []),
        '  }',
      ].join('\n'),
    );
  return [
    `# vaultops lab ${lab.name}, node ${node.name}: ${FLAVORS[lab.flavor].product} ${lab.version}. Generated; edits are overwritten.`,
    'ui = false',
    'disable_mlock = true',
    `cluster_name = "${lab.name}"`,
    `api_addr = "${node.apiAddr}"`,
    `cluster_addr = "${node.clusterAddr}"`,
    'log_level = "info"',
    '',
    'storage "raft" {',
    `  path = "${paths.data}"`,
    `  node_id = "${node.raftId ?? node.name}"`,
    // 1 = the tightest timing, for a machine whose nodes share one host (HashiCorp's advice for production is also 1).
    '  performance_multiplier = 1',
    ...joins,
    '}',
    '',
    'listener "tcp" {',
    `  address = "${node.ip}:${API_PORT}"`,
    `  cluster_address = "${node.ip}:${CLUSTER_PORT}"`,
    ...(lab.tls ? [`  tls_cert_file = "${paths.cert}"`, `  tls_key_file = "${paths.key}"`] : ['  tls_disable = true']),
    '}',
    '',
    ...(lab.extraConfig ? [lab.extraConfig, ''] : []),
  ].join('\n');
}
