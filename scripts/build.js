// `npm run build`: the CLI as an esbuild bundle (tsc only typechecks; see package.json).
//
// dist/cli/main.js is what bin/vaultops.js loads: our code with its small dependencies (commander,
// yaml, zod) in one file, so a start reads one file instead of ~200. Each command's implementation
// is a chunk loaded by its dynamic import() in src/cli/commands/, and the heavy dependencies stay
// in node_modules, loaded only at their point of use (also by dynamic import()), so `vaultops
// --help` or `vaultops status` never reads openpgp or ssh2 (test/e2e/cli.test.ts checks that).
// Chunks sit next to main.js: code that finds files relative to its own module (the playbooks,
// package.json) sees the same depth as in src/cli/.
//
// dist/internal/ holds a few modules that bench/ and a test import directly (lab, Vault client, the
// playbook lock); npm pack
// leaves it out (package.json "files").
//
//   node scripts/build.js [--no-sourcemap] [--outdir DIR]
import { build } from 'esbuild';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const repo = fileURLToPath(new URL('..', import.meta.url));
// --outdir: somewhere else than dist/ (to compare builds while the tests use dist/).
const outdirArg = process.argv.indexOf('--outdir');
const dist = outdirArg > 0 ? resolve(process.argv[outdirArg + 1]) : join(repo, 'dist');
const requireFromRepo = createRequire(join(repo, 'package.json'));
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'));
const sourcemap = !process.argv.includes('--no-sourcemap');

/** Loaded from node_modules at their point of use, never bundled into a start-up path. */
const HEAVY = ['openpgp', 'ssh2', 'node-vault', 'listr2', '@inquirer/prompts'];

/**
 * The AWS SDK is bundled, not left in node_modules: from its ES modules (its packages' `module`
 * entries; esbuild on node would take the CommonJS ones), so the bundle holds only the S3 commands
 * the store sends (the SDK marks itself free of side effects). That is ~6 MB less memory than loading
 * @aws-sdk/client-s3 whole. It sits in the chunk of src/backup/stores/s3-api.ts (and the credential
 * providers' own chunks), loaded by import() only when an S3 store is used.
 */
const awsSdkAsEsm = {
  name: 'aws-sdk-as-esm',
  setup(b) {
    b.onResolve({ filter: /^@(aws-sdk|smithy|aws-crypto)\/[^/]+(\/.*)?$/ }, (args) => {
      const [scope, name, ...rest] = args.path.split('/');
      const sub = rest.length ? `./${rest.join('/')}` : '.';
      let pkgFile;
      try {
        pkgFile = createRequire(join(args.resolveDir, 'x.js')).resolve(`${scope}/${name}/package.json`);
      } catch {
        return undefined;
      }
      const pkgJson = JSON.parse(readFileSync(pkgFile, 'utf8'));
      const entry = pkgJson.exports?.[sub];
      const target =
        typeof entry === 'object' ? (entry.module ?? entry.import) : sub === '.' ? pkgJson.module : undefined;
      if (typeof target !== 'string') return undefined;
      return { path: join(pkgFile, '..', target) };
    });
  },
};

/** The same files src/actions/action-modules.ts imports when it scans the directory. */
const isActionFile = (f) => /\.(js|ts)$/.test(f) && !/\.(d|test)\.ts$/.test(f);

/** Replaces the directory scan of src/actions/action-modules.ts with the list of modules found now. */
const actionRegistry = {
  name: 'action-registry',
  setup(b) {
    b.onLoad({ filter: /[\\/]src[\\/]actions[\\/]action-modules\.ts$/ }, () => {
      const root = join(repo, 'src', 'actions');
      const files = [];
      for (const group of readdirSync(root, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
        if (!group.isDirectory()) continue;
        for (const f of readdirSync(join(root, group.name)).filter(isActionFile).sort())
          files.push(`./${group.name}/${f}`);
      }
      if (files.length === 0) throw new Error(`no action modules found under ${root}`);
      const contents = [
        ...files.map((f, i) => `import * as m${i} from ${JSON.stringify(f)};`),
        `export const isActionFile = ${isActionFile.toString()};`,
        `export async function importActionModules() { return [${files.map((_, i) => `m${i}`).join(', ')}]; }`,
      ].join('\n');
      return { contents, loader: 'js', resolveDir: root };
    });
  },
};

/**
 * commander imports node:child_process for executable subcommands, which vaultops does not have;
 * loading it costs ~7 ms of every start (a fifth of a bare `node -e 0`). commander gets a stand-in
 * that loads the real module on first use, so nothing changes if it ever does spawn.
 */
const lazyChildProcessForCommander = {
  name: 'lazy-child-process-for-commander',
  setup(b) {
    b.onResolve({ filter: /^(node:)?child_process$/ }, (args) =>
      /[\\/]node_modules[\\/]commander[\\/]/.test(args.importer)
        ? { path: 'lazy-child-process', namespace: 'vaultops-lazy' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'vaultops-lazy' }, () => ({
      contents:
        "const real = () => process.getBuiltinModule('node:child_process');\n" +
        'export default new Proxy({}, { get: (_, key) => real()[key], has: (_, key) => key in real() });\n',
      loader: 'js',
    }));
  },
};

/**
 * `import { readFileSync } from 'node:fs'` in an ES module makes Node build an ESM facade of the
 * whole builtin, reading every export, getters included (fs.ReadStream loads the fs streams,
 * fs.promises the promise API): several ms per start for modules we use two functions of. A static
 * import of a builtin therefore becomes a small module of its own per importing file, which reads the
 * module object with process.getBuiltinModule and exports only the names that file uses (the others
 * are dropped as unused), read when that file's chunk loads, as the import would have.
 */
const builtinsWithoutFacade = {
  name: 'builtins-without-facade',
  setup(b) {
    const names = new Set(builtinModules.filter((m) => !m.startsWith('_')));
    b.onResolve({ filter: /^[a-z_/:]+$/ }, (args) => {
      if (args.kind !== 'import-statement') return undefined;
      const bare = args.path.replace(/^node:/, '');
      if (!names.has(bare)) return undefined;
      return {
        path: `node:${bare}?${relative(repo, args.importer)}`,
        namespace: 'vaultops-builtin',
        sideEffects: false,
      };
    });
    b.onLoad({ filter: /.*/, namespace: 'vaultops-builtin' }, (args) => {
      const id = args.path.slice(0, args.path.indexOf('?'));
      const keys = Object.keys(process.getBuiltinModule(id)).filter(
        (k) => /^[A-Za-z_$][\w$]*$/.test(k) && k !== 'default',
      );
      const contents = [
        `const __vaultopsBuiltin = process.getBuiltinModule(${JSON.stringify(id)});`,
        'const __vaultopsGet = (k) => __vaultopsBuiltin[k];',
        'export default __vaultopsBuiltin;',
        ...keys.map((k) => `export const ${k} = /* @__PURE__ */ __vaultopsGet(${JSON.stringify(k)});`),
      ].join('\n');
      return { contents, loader: 'js' };
    });
  },
};

/**
 * `await import('yaml')` of a CommonJS package bundled into a chunk would see only `default`
 * (Node's own loader finds the named exports; esbuild's chunk does not). Such an import goes through
 * a module that re-exports the package's names (listed now, from the package) with a static import,
 * for which esbuild does give named exports.
 */
const namedExportsForDynamicImports = {
  name: 'named-exports-for-dynamic-imports',
  setup(b) {
    b.onResolve({ filter: /^[@a-z]/ }, (args) => {
      if (args.kind !== 'dynamic-import' || args.path.startsWith('node:') || HEAVY.includes(args.path))
        return undefined;
      return { path: args.path, namespace: 'vaultops-reexport' };
    });
    b.onLoad({ filter: /.*/, namespace: 'vaultops-reexport' }, (args) => {
      const names = Object.keys(requireFromRepo(args.path)).filter(
        (k) => /^[A-Za-z_$][\w$]*$/.test(k) && k !== 'default',
      );
      const from = JSON.stringify(args.path);
      return {
        contents: `export { ${names.join(', ')} } from ${from};\nimport d from ${from};\nexport default d;`,
        loader: 'js',
        resolveDir: repo,
      };
    });
  },
};

/**
 * `import { z } from 'zod'` is a namespace that holds `z.locales`: all ~50 of zod's message
 * translations (370 KB of the 765 KB zod chunk), parsed and evaluated by every command that reads an
 * inventory. vaultops speaks English only and never picks a locale (zod registers English itself, from
 * its schemas module), so the namespace of locales keeps only `en`.
 */
const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]node_modules[\\/]zod[\\/]v4[\\/](classic[\\/]external|core[\\/]index)\.js$/.test(args.importer)
        ? { path: join(args.importer, '..', '..', 'locales', 'index.js'), namespace: 'vaultops-zod-locales' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'vaultops-zod-locales' }, (args) => ({
      contents: "export { default as en } from './en.js';\n",
      loader: 'js',
      resolveDir: join(args.path, '..'),
    }));
  },
};

const common = {
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  outbase: join(repo, 'src'),
  external: HEAVY.flatMap((m) => [m, `${m}/*`]),
  sourcemap,
  legalComments: 'none',
  // Some bundled CommonJS (yaml's node build) calls require('process'): in an ES module that needs a
  // real require, or esbuild's stand-in throws "Dynamic require ... is not supported".
  banner: {
    js: "import { createRequire as __vaultopsCreateRequire } from 'node:module'; const require = __vaultopsCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
};

const cli = {
  ...common,
  entryPoints: [join(repo, 'src', 'cli', 'main.ts')],
  chunkNames: 'cli/[name]-[hash]',
  plugins: [
    actionRegistry,
    lazyChildProcessForCommander,
    awsSdkAsEsm,
    builtinsWithoutFacade,
    namedExportsForDynamicImports,
    zodEnglishOnly,
  ],
};
// Two passes: the first bundle tells what the root help shows of each command (commandTable() in
// src/cli/main.ts), the second has that table built in, so a start builds only the command it runs.
const scratch = mkdtempSync(join(tmpdir(), 'vaultops-build-'));
let table;
let helps;
try {
  await build({ ...cli, outdir: scratch, sourcemap: false, define: { VAULTOPS_VERSION: JSON.stringify(pkg.version) } });
  const scratchMain = await import(pathToFileURL(join(scratch, 'cli', 'main.js')).href);
  table = scratchMain.commandTable();
  helps = scratchMain.helpTexts();
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
rmSync(dist, { recursive: true, force: true });
await build({
  ...cli,
  outdir: dist,
  define: {
    VAULTOPS_VERSION: JSON.stringify(pkg.version),
    VAULTOPS_COMMAND_TABLE: JSON.stringify(JSON.stringify(table)),
  },
});
// `vaultops [words] --help` on an output that is not a terminal: bin/vaultops.js answers from this.
writeFileSync(join(dist, 'cli', 'help-80.json'), JSON.stringify(helps));
await build({
  ...common,
  entryPoints: [
    'playbook/lock',
    'lab/binaries',
    'lab/lab',
    'vault/client',
    'vault/transport',
    'backup/crypto/age',
    'backup/crypto/encryption',
  ].map((m) => join(repo, 'src', `${m}.ts`)),
  outdir: join(dist, 'internal'),
  chunkNames: '[name]-[hash]',
  plugins: [actionRegistry, awsSdkAsEsm, builtinsWithoutFacade, namedExportsForDynamicImports, zodEnglishOnly],
});
