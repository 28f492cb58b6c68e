import { homedir } from 'node:os';
import { join } from 'node:path';

/** Server binaries, release lists. $VAULTOPS_CACHE_DIR, else $XDG_CACHE_HOME/vaultops, else ~/.cache/vaultops. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['VAULTOPS_CACHE_DIR']) return env['VAULTOPS_CACHE_DIR'];
  return join(env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'vaultops');
}
