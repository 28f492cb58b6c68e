#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (npm run build).
// Node's on-disk compile cache (Node >= 22.1) skips recompiling our modules and zod/yaml on every start
// (~10% of a short command). It lives in vaultops' cache dir (as src/lab/paths.ts cacheDir), never in
// TMPDIR, so a run leaves nothing in temp; NODE_DISABLE_COMPILE_CACHE=1 turns it off.
Promise.all([import('node:module'), import('node:os'), import('node:path')])
  .then(([m, os, path]) => {
    try {
      const env = process.env;
      const base = env.VAULTOPS_CACHE_DIR || path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'vaultops');
      m.enableCompileCache?.(path.join(base, 'node-compile-cache'));
    } catch {
      // A cache that cannot be written only costs speed.
    }
    return import('../dist/cli/main.js');
  })
  .then((m) => m.main(process.argv))
  .catch((e) => {
    process.stderr.write(`vaultops: cannot start: ${e && e.code === 'ERR_MODULE_NOT_FOUND' ? 'dist/ is missing; run `npm run build` first' : String(e && e.message)}\n`);
    process.exit(1);
  });
