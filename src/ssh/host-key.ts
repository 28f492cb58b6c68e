import { createHash, createHmac } from 'node:crypto';
import { closeSync, constants, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
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

/** OpenSSH's match_pattern: `*` any run of characters, `?` one character, the rest literally. */
export function wildcardMatch(pattern: string, text: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 's').test(text);
}

/**
 * Whether a known_hosts host field names `name` ("host" or "[host]:port"), as OpenSSH's
 * match_hostname does: a hashed entry (|1|salt|hmac) is compared by its HMAC; otherwise a comma
 * list of patterns with `*` and `?`, where any matching `!pattern` rules the line out. Host names
 * compare case-insensitively.
 */
export function hostMatches(field: string, name: string): boolean {
  if (field.startsWith('|1|')) {
    // Hashed entry: |1|base64(salt)|base64(hmac-sha1(salt, name))
    const [, , salt, hash] = field.split('|');
    if (!salt || !hash) return false;
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
  }
  const lower = name.toLowerCase();
  let matched = false;
  for (const raw of field.split(',')) {
    const negated = raw.startsWith('!');
    const p = (negated ? raw.slice(1) : raw).toLowerCase();
    if (!p || !wildcardMatch(p, lower)) continue;
    if (negated) return false;
    matched = true;
  }
  return matched;
}

export interface KnownHostsMatch {
  /** Keys listed for the host (plain lines). */
  keys: Buffer[];
  /** Keys marked @revoked: refused wherever they appear, for any host. */
  revoked: Buffer[];
  /** @cert-authority lines for the host: vaultops does not verify host certificates, so they only explain a refusal. */
  certAuthorities: number;
}

/**
 * Keys that known_hosts files list for this host. Missing files count as empty. A `@revoked` key is
 * refused for every host, whatever the line's host field says: OpenSSH applies the field, but a key
 * someone revoked is good for no host, and being stricter here costs nothing.
 */
export function knownHostKeys(files: string | string[], host: string, port: number): KnownHostsMatch {
  const out: KnownHostsMatch = { keys: [], revoked: [], certAuthorities: 0 };
  const name = knownHostsName(host, port);
  for (const file of Array.isArray(files) ? files : [files]) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (!line || line.startsWith('#')) continue;
      let fields = line.split(/\s+/);
      let marker: string | undefined;
      if (fields[0]!.startsWith('@')) {
        marker = fields[0];
        fields = fields.slice(1);
      }
      if (fields.length < 3) continue;
      const key = parsePublicKeyLine(`${fields[1]} ${fields[2]}`);
      if (marker === '@revoked') {
        if (key) out.revoked.push(key.blob);
        continue;
      }
      if (!hostMatches(fields[0]!, name)) continue;
      if (marker === '@cert-authority') out.certAuthorities++;
      else if (marker === undefined && key) out.keys.push(key.blob);
    }
  }
  return out;
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
