#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (npm run build).
// Node's on-disk compile cache (Node >= 22.1; in the OS temp dir, NODE_DISABLE_COMPILE_CACHE=1 turns it
// off) skips recompiling our modules and zod/yaml on every start: ~20% of a short command's time.
import('node:module')
  .then((m) => {
    try {
      m.enableCompileCache?.();
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
