import type { NodeSpec } from '../inventory/schema.js';
import { resolveSecretString, type SecretPrompter } from '../secrets/refs.js';
import { SshHost } from './connection.js';

export interface OpenHostOptions {
  trustOnFirstUse?: boolean | undefined;
  /** Answers a `prompt:` reference in ssh.key_passphrase; without one such a reference is refused. */
  prompter?: SecretPrompter | undefined;
}

/**
 * Opens the SSH host of an inventory node: ssh.host defaults to the host of api_addr, and what the
 * inventory leaves out comes from ~/.ssh/config (see SshTarget.sshConfig). The key's passphrase is
 * resolved from its secret reference here, so the value is registered with the redactor before
 * anything could print it.
 */
export async function openNodeHost(n: NodeSpec, options: OpenHostOptions = {}): Promise<SshHost> {
  const ssh = n.ssh ?? {};
  const passphrase = ssh.key_passphrase ? await resolveSecretString(ssh.key_passphrase, options.prompter) : undefined;
  return SshHost.connect({
    host: ssh.host ?? new URL(n.api_addr).hostname,
    port: ssh.port,
    user: ssh.user,
    keyFile: ssh.key_file,
    passphrase,
    hostKey: ssh.host_key,
    knownHosts: ssh.known_hosts,
    jump: ssh.jump,
    sudo: ssh.sudo,
    trustOnFirstUse: options.trustOnFirstUse === true,
    label: n.name,
  });
}
