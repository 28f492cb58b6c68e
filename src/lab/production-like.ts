import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Flavor } from './binaries.js';
import { clusterFor, readInit, writeInventory, writeLab, type LabRecord } from './lab-record.js';
import { writeFileAtomicSync } from '../core/atomic-write.js';

/**
 * `lab up --production-like`: a lab that passes what `vaultops check` can see through the API and
 * on the host where this machine allows it. TLS (the default), Prometheus telemetry, two file audit
 * devices, autopilot cleaning up dead servers with a min quorum, configs 0640, and the init root
 * token revoked: the inventory uses a lab-admin token instead (a policy, not `root`).
 * The servers run as the unprivileged account vaultops-lab (run-as.ts), which owns only its node's
 * directory, its TLS key and the audit directory.
 */
export function productionLikeConfig(flavor: Flavor, labDirPath: string): string {
  const lines = ['telemetry {', '  prometheus_retention_time = "24h"', '  disable_hostname = true', '}'];
  if (flavor === 'openbao') {
    // OpenBao >= 2.3 refuses `audit enable` through the API ("use declarative, config-based audit
    // device management instead"): its audit devices are declared in the server config.
    for (const k of [1, 2])
      lines.push(
        '',
        `audit "file" "file${k}" {`,
        '  options {',
        `    file_path = "${join(labDirPath, 'audit', `audit-${k}.log`)}"`,
        '  }',
        '}',
      );
  }
  return lines.join('\n');
}

/** The policy of the lab's admin token: everything, with sudo, but not the `root` policy. Lab only. */
const ADMIN_POLICY =
  'path "*" {\n  capabilities = ["create", "read", "update", "patch", "delete", "list", "sudo"]\n}\n';

export async function hardenLab(lab: LabRecord, progress: (m: string) => void): Promise<void> {
  mkdirSync(join(lab.dir, 'audit'), { recursive: true, mode: 0o700 });
  const init = readInit(lab);
  const cluster = clusterFor(lab, init.root_token);
  try {
    const { client } = await cluster.findLeader();
    if (lab.flavor === 'vault') {
      progress('Enabling two file audit devices...');
      for (const k of [1, 2])
        await client.write(`sys/audit/file${k}`, {
          type: 'file',
          options: { file_path: join(lab.dir, 'audit', `audit-${k}.log`) },
        });
    }
    progress('Autopilot: cleanup of dead servers on, min quorum 3...');
    await client.setAutopilotConfiguration({
      server_stabilization_time: '4s',
      cleanup_dead_servers: true,
      min_quorum: 3,
      last_contact_threshold: '10s',
      dead_server_last_contact_threshold: '24h',
    });
    progress('Creating a lab-admin token (policy, not root) and revoking the init root token...');
    await client.write('sys/policies/acl/lab-admin', { policy: ADMIN_POLICY });
    const created = await client.write<{ auth: { client_token: string } }>('auth/token/create-orphan', {
      policies: ['lab-admin'],
      no_default_policy: true,
      ttl: '8760h',
      renewable: true,
      display_name: 'lab-admin',
    });
    const tokenFile = join(lab.dir, 'admin-token.json');
    writeFileAtomicSync(tokenFile, `${JSON.stringify({ token: created.auth.client_token })}\n`, 0o600);
    lab.tokenFile = tokenFile;
    writeLab(lab);
    writeInventory(lab);
    await client.write('auth/token/revoke-self', {});
  } finally {
    cluster.close();
  }
  // Configs hold no secrets in the lab, but the checklist wants them closed to other users.
  // A transit-sealed lab's configs hold its seal token: they stay 0600.
  for (const n of lab.nodes) chmodSync(n.config, lab.seal ? 0o600 : 0o640);
}
