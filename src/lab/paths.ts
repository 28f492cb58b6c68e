import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';

// The state folder is shared vocabulary (journals, locks, labs): it lives in core; labs keep importing it from here.
export { stateDir } from '../core/state-dir.js';

// Server binaries and their build trees live in the cache folder, shared with the release lists.
export { cacheDir } from '../core/cache-dir.js';

/**
 * A temp directory shared by every process on this machine: loopback addresses are machine-wide,
 * so the lab slot registry and its lock must not follow a process's own TMPDIR.
 */
export function machineTmpDir(): string {
  return existsSync('/tmp') ? '/tmp' : tmpdir();
}
