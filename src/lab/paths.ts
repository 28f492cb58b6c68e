import { existsSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';

// The state folder is shared vocabulary (journals, locks, labs): it lives in core; labs keep importing it from here.
export { stateDir } from '../core/state-dir.js';

/** Server binaries and their build trees. $VAULTOPS_CACHE_DIR, else $XDG_CACHE_HOME/vaultops, else ~/.cache/vaultops. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['VAULTOPS_CACHE_DIR']) return env['VAULTOPS_CACHE_DIR'];
  return join(env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'vaultops');
}

/**
 * A temp directory shared by every process on this machine: loopback addresses are machine-wide,
 * so the lab slot registry and its lock must not follow a process's own TMPDIR.
 */
export function machineTmpDir(): string {
  return existsSync('/tmp') ? '/tmp' : tmpdir();
}
