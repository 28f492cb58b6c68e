import { createHash, createHmac } from 'node:crypto';
import { closeSync, constants, existsSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * Host key checks the way OpenSSH does them: a key is the wire-format blob the server sends;
 * its fingerprint is `SHA256:` + unpadded base64 of sha256(blob), as `ssh-keygen -lf` prints it.
 */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type named inside the blob ("ssh-ed25519", "ecdsa-sha2-nistp256", ...). */
export function keyType(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const len = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + len).toString('ascii');
}

/** "ssh-ed25519 AAAA... [comment]" -> the blob; undefined when the text is not a public key line. */
export function parsePublicKeyLine(line: string): { type: string; blob: Buffer } | undefined {
  const parts = line.trim().split(/\s+/);
  if (parts.length < 2) return undefined;
  const blob = Buffer.from(parts[1]!, 'base64');
  if (blob.length === 0 || keyType(blob) !== parts[0]) return undefined;
  return { type: parts[0]!, blob };
}

/** How known_hosts names a host: "host" on port 22, "[host]:port" otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function hostMatches(pattern: string, name: string): boolean {
  if (pattern.startsWith('|1|')) {
    // Hashed entry: |1|base64(salt)|base64(hmac-sha1(salt, name))
    const [, , salt, hash] = pattern.split('|');
    if (!salt || !hash) return false;
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
  }
  return pattern.split(',').some((p) => p === name);
}

/** Keys that a known_hosts file lists for this host (markers like @revoked are honoured by refusing). */
export function knownHostKeys(file: string, host: string, port: number): { keys: Buffer[]; revoked: Buffer[] } {
  const keys: Buffer[] = [];
  const revoked: Buffer[] = [];
  if (!existsSync(file)) return { keys, revoked };
  const name = knownHostsName(host, port);
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    let fields = line.split(/\s+/);
    let marker: string | undefined;
    if (fields[0]!.startsWith('@')) {
      marker = fields[0];
      fields = fields.slice(1);
    }
    if (fields.length < 3 || !hostMatches(fields[0]!, name)) continue;
    const key = parsePublicKeyLine(`${fields[1]} ${fields[2]}`);
    if (!key) continue;
    if (marker === '@revoked') revoked.push(key.blob);
    else if (marker === undefined) keys.push(key.blob);
  }
  return { keys, revoked };
}

/**
 * Records a host key (trust-on-first-use). A missing file is created 0600 (its directory 0700);
 * a symlink at the file's name is refused (O_NOFOLLOW), so the record cannot be redirected.
 */
export function appendKnownHost(file: string, host: string, port: number, blob: Buffer): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const { O_WRONLY, O_APPEND, O_CREAT, O_NOFOLLOW } = constants;
  const fd = openSync(file, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, `${knownHostsName(host, port)} ${keyType(blob)} ${blob.toString('base64')}\n`);
  } finally {
    closeSync(fd);
  }
}

/**
 * vaultops' own known_hosts, for targets without ssh.known_hosts: in the state dir
 * ($VAULTOPS_STATE_DIR, else $XDG_STATE_HOME/vaultops, else ~/.local/state/vaultops; the same
 * rule as the lab's stateDir, which this layer may not import).
 */
export function defaultKnownHosts(env: NodeJS.ProcessEnv = process.env): string {
  const state =
    env['VAULTOPS_STATE_DIR'] || join(env['XDG_STATE_HOME'] || join(homedir(), '.local', 'state'), 'vaultops');
  return join(state, 'known_hosts');
}
