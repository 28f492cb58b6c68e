import { homedir } from 'node:os';
import { join } from 'node:path';

/** Labs, journals and locks. $VAULTOPS_STATE_DIR, else $XDG_STATE_HOME/vaultops, else ~/.local/state/vaultops. */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['VAULTOPS_STATE_DIR']) return env['VAULTOPS_STATE_DIR'];
  return join(env['XDG_STATE_HOME'] || join(homedir(), '.local', 'state'), 'vaultops');
}
