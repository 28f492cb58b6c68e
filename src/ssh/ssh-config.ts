import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../core/errors.js';

// ssh-config is CommonJS; loaded only when an SSH connection is made.
const require = createRequire(import.meta.url);

/** What ~/.ssh/config says about one host, in the fields vaultops uses. */
export interface SshConfigEntry {
  hostName?: string | undefined;
  user?: string | undefined;
  port?: number | undefined;
  identityFiles: string[];
  /** "none" is kept: it means "no jump host", and overrides a ProxyJump of a wider Host block. */
  proxyJump?: string | undefined;
  userKnownHostsFiles?: string[] | undefined;
  globalKnownHostsFiles?: string[] | undefined;
  /** IdentityAgent: a socket path, "SSH_AUTH_SOCK" or "none". */
  identityAgent?: string | undefined;
}

/** The user's SSH client config, where OpenSSH reads it. */
export function defaultSshConfigFile(): string {
  return join(homedir(), '.ssh', 'config');
}

type Computed = Record<string, string | string[] | undefined>;
interface SshConfigLib {
  parse(text: string): { compute(host: string): Computed };
}

const first = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);
const all = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/**
 * The settings of `alias` in an ssh_config file (the first value of each keyword wins, as in
 * OpenSSH; Host patterns with `*`, `?` and `!`). A missing file is an empty config. Paths get
 * OpenSSH's tokens expanded: ~, %d (home), %u (local user), %h (host), %r (remote user), %%.
 * Not supported: Include and Match blocks are not evaluated (ssh-config reads them as text).
 */
export function sshConfigFor(alias: string, file: string = defaultSshConfigFile()): SshConfigEntry {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { identityFiles: [] };
    throw new InputError(`Cannot read the SSH config ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'}).`, {
      hint: 'Fix its permissions, or move it away to connect with the inventory settings only.',
    });
  }
  let c: Computed;
  try {
    const lib = require('ssh-config') as SshConfigLib;
    c = lib.parse(text).compute(alias);
  } catch (e) {
    throw new InputError(`The SSH config ${file} cannot be parsed: ${(e as Error).message}.`, {
      hint: 'Check it with `ssh -G HOST`.',
    });
  }
  const hostName = first(c['HostName']);
  const user = first(c['User']);
  const portText = first(c['Port']);
  const port = portText === undefined ? undefined : Number(portText);
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536))
    throw new InputError(`The SSH config ${file} gives Port "${portText}" for ${alias}, which is not a port number.`);
  const expand = (p: string) => expandTokens(p, { host: hostName ?? alias, user });
  const files = (v: string | string[] | undefined) =>
    v === undefined
      ? undefined
      : all(v)
          .flatMap((x) => x.split(/\s+/).filter(Boolean))
          .map(expand);
  return {
    hostName: hostName === undefined ? undefined : expandTokens(hostName, { host: alias, user }),
    user,
    port,
    identityFiles: all(c['IdentityFile']).map(expand),
    proxyJump: first(c['ProxyJump']),
    userKnownHostsFiles: files(c['UserKnownHostsFile']),
    globalKnownHostsFiles: files(c['GlobalKnownHostsFile']),
    identityAgent: first(c['IdentityAgent']),
  };
}

/** OpenSSH's path tokens that make sense without a connection. */
export function expandTokens(p: string, ctx: { host: string; user?: string | undefined }): string {
  const home = homedir();
  const local = (() => {
    try {
      return userInfo().username;
    } catch {
      return process.env['USER'] ?? '';
    }
  })();
  let out = p === '~' ? home : p.startsWith('~/') ? join(home, p.slice(2)) : p;
  out = out.replace(/%([%dhur])/g, (_m, t: string) =>
    t === '%' ? '%' : t === 'd' ? home : t === 'h' ? ctx.host : t === 'u' ? local : (ctx.user ?? local),
  );
  return out;
}
