// Loaded with `node --import` into the built CLI by test/e2e/cli.test.ts: writes the URL of every
// module the process loads (import and require, our chunks and node_modules alike) to the file named
// by VAULTOPS_TEST_MODULE_LOG when the process exits.
import { writeFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

const file = process.env.VAULTOPS_TEST_MODULE_LOG;
const loaded = [];
if (file) {
  registerHooks({
    load(url, context, nextLoad) {
      loaded.push(url);
      return nextLoad(url, context);
    },
  });
  process.on('exit', () => writeFileSync(file, loaded.join('\n') + '\n'));
}
