import type { NodeSpec } from '../inventory/schema.js';
import { SshHost } from './connection.js';

/** Opens the SSH host of an inventory node: ssh.host defaults to the host of api_addr. */
export function openNodeHost(n: NodeSpec, options: { trustOnFirstUse?: boolean | undefined } = {}): Promise<SshHost> {
  const ssh = n.ssh ?? {};
  return SshHost.connect({
    host: ssh.host ?? new URL(n.api_addr).hostname,
    port: ssh.port,
    user: ssh.user,
    keyFile: ssh.key_file,
    hostKey: ssh.host_key,
    knownHosts: ssh.known_hosts,
    jump: ssh.jump,
    sudo: ssh.sudo,
    trustOnFirstUse: options.trustOnFirstUse === true,
    label: n.name,
  });
}
