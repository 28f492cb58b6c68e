import { chmodSync, chownSync, copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { PrerequisiteError } from '../core/errors.js';
import { run } from './exec.js';

/** The unprivileged account lab servers run as in a production-like lab (the checklist: never root). */
export interface RunAs {
  user: string;
  uid: number;
  gid: number;
}

export const LAB_SERVER_USER = 'vaultops-lab';

/** Finds or creates a system account with no login shell and no home. Needs root. */
export async function ensureServiceUser(user: string): Promise<RunAs> {
  const lookup = async () => {
    const u = await run('id', ['-u', user]).catch(() => undefined);
    const g = await run('id', ['-g', user]).catch(() => undefined);
    if (u?.code === 0 && g?.code === 0) return { user, uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
    return undefined;
  };
  const found = await lookup();
  if (found) return found;
  if (process.getuid?.() !== 0) {
    throw new PrerequisiteError(
      `Running lab servers as the unprivileged user ${user} needs that user, and only root can create it.`,
      {
        hint: `Create it once (useradd --system --no-create-home --shell /usr/sbin/nologin ${user}) or run without --production-like.`,
      },
    );
  }
  const r = await run('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', user]).catch(
    () => undefined,
  );
  const created = await lookup();
  if (!created)
    throw new PrerequisiteError(`Could not create the user ${user}${r ? `: ${r.stderr.trim()}` : ' (no useradd)'}.`, {
      hint: 'Install passwd (useradd) or create the user by hand.',
    });
  return created;
}

/**
 * Hands a node's files to the server account: its directory tree (data, logs, config) and its TLS
 * key and certificate. The lab directory itself stays root's, searchable but not listable (0711),
 * so the server reaches its own files and nothing else (init.json stays 0600 root).
 */
export function handOver(labDir: string, nodeDirs: readonly string[], tlsFiles: readonly string[], who: RunAs): void {
  chmodSync(labDir, 0o711);
  for (const dir of nodeDirs) chownTree(dir, who);
  // File audit devices write here (production-like labs); the server account must own it.
  const audit = join(labDir, 'audit');
  mkdirSync(audit, { recursive: true, mode: 0o700 });
  chownSync(audit, who.uid, who.gid);
  for (const f of tlsFiles) {
    try {
      chownSync(f, who.uid, who.gid);
    } catch {
      /* no TLS */
    }
  }
  try {
    chmodSync(join(labDir, 'tls'), 0o711);
  } catch {
    /* no TLS */
  }
}

function chownTree(path: string, who: RunAs): void {
  chownSync(path, who.uid, who.gid);
  if (!statSync(path).isDirectory()) return;
  for (const entry of readdirSync(path)) chownTree(join(path, entry), who);
}

/**
 * The first directory above `path` that other users cannot search (no o+x), which would keep the
 * server account from reaching its files; `ours` are directories vaultops made and may open up.
 */
export function firstBlockedAncestor(path: string, ours: readonly string[]): string | undefined {
  let dir = dirname(path);
  for (;;) {
    if (!ours.includes(dir)) {
      try {
        if ((statSync(dir).mode & 0o001) === 0) return dir;
      } catch {
        return dir;
      }
    }
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/** Opens vaultops's own directories for search (not listing) so the server account can pass. */
export function openForSearch(dirs: readonly string[]): void {
  for (const d of dirs) chmodSync(d, 0o711);
}

/** A hard link (or copy, across file systems) of `binary` in `dir`, runnable by anyone. */
export function privateCopy(binary: string, dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  chmodSync(dir, 0o755);
  const dest = join(dir, basename(binary));
  if (!existsSync(dest)) {
    try {
      linkSync(binary, dest);
    } catch {
      copyFileSync(binary, dest);
    }
  }
  chmodSync(dest, 0o755);
  return dest;
}
