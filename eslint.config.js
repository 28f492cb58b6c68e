// ESLint: typescript-eslint's type-aware rules, and the layer order of the design as an import rule
// (eslint-plugin-boundaries). Layers, top to bottom; an import may only go down:
//   cli > ui > playbook > actions > use cases {backup, upgrade, ceremony, drill, check, lb, tls, maintenance}
//     > clients {vault, ssh, secrets, inventory, notify, http, backup/stores, backup/crypto, lab} > core
// Use-case siblings never import each other; only drill (and cli, and tests) may import lab; core
// imports nothing of ours; nothing imports cli.
import js from '@eslint/js';
import boundaries from 'eslint-plugin-boundaries';
import tseslint from 'typescript-eslint';

const USE_CASES = ['backup', 'upgrade', 'ceremony', 'drill', 'check', 'lb', 'tls', 'maintenance'];
const CLIENTS = ['vault', 'ssh', 'secrets', 'inventory', 'notify', 'http', 'backup-stores', 'backup-crypto'];

/** `from` may import its own folder and the given element types. */
const may = (from, to) => ({
  from: { element: { types: from } },
  allow: { to: { element: { types: { anyOf: [from, ...to] } } } },
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'playbooks/schema/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { project: ['./tsconfig.test.json'], tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Ours: a promise nobody awaits loses its error (and its exit code). Kept as errors.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': [
        'error',
        { checksVoidReturn: { arguments: false, attributes: false } },
      ],
      // `_`-prefixed parameters are the way a callback says "not used"; tsc's noUnused* checks the rest.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      // Parsed JSON and YAML and Vault's answers are `any` until zod or a type guard narrows them;
      // flagging every step of that would drown the findings that matter.
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      // `async` on a function that does not await is deliberate here: commander actions, prompters and
      // store methods implement promise-returning interfaces, and `async` turns a synchronous throw
      // into a rejection that the caller's catch sees.
      '@typescript-eslint/require-await': 'off',
      // The `!` after an index read (`parts[i]!`) says "in range" to a reader; it is also what
      // `noUncheckedIndexedAccess` will need. Without that option the rule calls them unnecessary.
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
      // Error messages stringify values of unknown type (exit codes, YAML defaults) on purpose.
      '@typescript-eslint/no-base-to-string': 'off',
      // Variables given a first value that every path then overwrites read as defaults; tsc reports
      // any read before assignment, so this rule only adds noise.
      'no-useless-assignment': 'off',
      // Template strings print numbers, booleans and unions of them all the time; that is intended.
      '@typescript-eslint/restrict-template-expressions': 'off',
    },
  },
  {
    files: ['**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      globals: {
        process: 'readonly',
        console: 'readonly',
        URL: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        Buffer: 'readonly',
      },
    },
  },
  {
    files: ['src/**/*.ts'],
    plugins: { boundaries },
    settings: {
      'import/resolver': { typescript: { project: './tsconfig.json' } },
      'boundaries/include': ['src/**/*.ts'],
      'boundaries/elements': [
        { type: 'backup-stores', pattern: 'src/backup/stores/**', partialMatch: false },
        { type: 'backup-crypto', pattern: 'src/backup/crypto/**', partialMatch: false },
        ...[
          'cli',
          'ui',
          'playbook',
          'actions',
          ...USE_CASES,
          'lab',
          'vault',
          'ssh',
          'secrets',
          'inventory',
          'notify',
          'http',
          'core',
        ].map((type) => ({
          type,
          pattern: `src/${type}/**`,
          partialMatch: false,
        })),
      ],
    },
    rules: {
      'boundaries/dependencies': [
        'error',
        {
          default: 'disallow',
          policies: [
            may('core', []),
            may('backup-crypto', ['core']),
            may('backup-stores', ['core', 'backup-crypto', 'vault', 'ssh', 'secrets', 'inventory']),
            ...['vault', 'ssh', 'secrets', 'inventory', 'notify', 'http'].map((c) => may(c, ['core', ...CLIENTS])),
            may('lab', ['core', ...CLIENTS]),
            ...USE_CASES.map((u) => may(u, ['core', ...CLIENTS, ...(u === 'drill' ? ['lab'] : [])])),
            may('actions', ['core', ...CLIENTS, ...USE_CASES]),
            may('playbook', ['core', ...CLIENTS, ...USE_CASES, 'actions']),
            may('ui', ['core', ...CLIENTS, ...USE_CASES, 'actions', 'playbook']),
            may('cli', ['core', ...CLIENTS, 'lab', ...USE_CASES, 'actions', 'playbook', 'ui']),
          ],
        },
      ],
    },
  },
  // Tests match what a terminal shows, escape sequences included.
  { files: ['test/**'], rules: { 'no-control-regex': 'off' } },
);
