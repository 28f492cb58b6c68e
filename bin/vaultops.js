#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (npm run build).
import('../dist/cli/main.js').then((m) => m.main(process.argv)).catch((e) => {
  process.stderr.write(`vaultops: cannot start: ${e && e.code === 'ERR_MODULE_NOT_FOUND' ? 'dist/ is missing; run `npm run build` first' : String(e && e.message)}\n`);
  process.exit(1);
});
