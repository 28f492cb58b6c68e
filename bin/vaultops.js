#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (npm run build; `npm pack` builds it first).

// The Node.js versions the dependencies run on (the @inquirer packages are the narrowest); the same
// range as "engines" in package.json (a unit test keeps the two equal). Checked before anything else
// loads, in syntax any Node.js parses, so an older Node gets this message instead of a stack trace.
var SUPPORTED_NODE = '^22.22.2 || ^24.15.0 || >=26.0.0';
if (!nodeIsSupported(process.versions.node, SUPPORTED_NODE)) {
  process.stderr.write(
    'vaultops: Node.js ' +
      process.version +
      ' is not supported; vaultops needs Node.js ' +
      describeRange(SUPPORTED_NODE) +
      '.\n' +
      'hint: install Node.js 24 LTS (https://nodejs.org/en/download, or `nvm install 24`) and run vaultops with it.\n',
  );
  process.exit(6);
}

// "^22.22.2 || >=26.0.0" -> "22 from 22.22.2, or 26.0.0 and newer"
function describeRange(range) {
  return range
    .split('||')
    .map(function (alt) {
      var t = alt.trim();
      return t[0] === '^' ? t.slice(1).split('.')[0] + '.x from ' + t.slice(1) : t.replace('>=', '') + ' and newer';
    })
    .join(', or ');
}

function nodeIsSupported(version, range) {
  var v = version.split('.').map(Number);
  return range.split('||').some(function (alt) {
    var m = /^\s*(\^|>=)(\d+)\.(\d+)\.(\d+)\s*$/.exec(alt);
    if (!m) return false;
    var want = [Number(m[2]), Number(m[3]), Number(m[4])];
    if (m[1] === '^' && v[0] !== want[0]) return false;
    for (var i = 0; i < 3; i++) if (v[i] !== want[i]) return v[i] > want[i];
    return true;
  });
}

if (!printCachedHelp(process.argv.slice(2))) start();

/**
 * `vaultops [command...] --help` into a pipe, a file or /dev/null prints text rendered at build time
 * (dist/cli/help-80.json, at the 80 columns commander uses when the output is not a terminal), so
 * the CLI itself is never loaded. On a terminal the width decides the layout: the CLI renders it.
 * VAULTOPS_HELP_CACHE=0 turns this off. Returns false when the CLI must answer.
 */
function printCachedHelp(args) {
  var last = args[args.length - 1];
  if ((last !== '--help' && last !== '-h') || process.env.VAULTOPS_HELP_CACHE === '0') return false;
  var words = args.slice(0, -1);
  if (!words.every((w) => /^[a-z][a-z0-9-]*$/.test(w))) return false;
  var fs = process.getBuiltinModule('node:fs');
  var text;
  try {
    var st = fs.fstatSync(1);
    // As src/cli/std-streams.ts decides it without loading node:tty: a character device other than
    // a Linux memory device (major 1, /dev/null) may be a terminal.
    if (st.isCharacterDevice() && !(process.platform === 'linux' && Math.floor(st.rdev / 256) % 4096 === 1))
      return false;
    var helps = JSON.parse(fs.readFileSync(new URL('../dist/cli/help-80.json', import.meta.url), 'utf8'));
    text = Object.hasOwn(helps, words.join(' ')) ? helps[words.join(' ')] : undefined;
  } catch {
    return false;
  }
  if (typeof text !== 'string') return false;
  var rest = Buffer.from(text);
  try {
    while (rest.length) rest = rest.subarray(fs.writeSync(1, rest));
  } catch (e) {
    // A reader that went away is not an error; a full non-blocking pipe takes the rest through the stream.
    if (e.code === 'EAGAIN') process.stdout.write(rest);
    else if (e.code !== 'EPIPE') throw e;
  }
  return true;
}

function start() {
  // Node's on-disk compile cache skips recompiling our modules on every start (~10% of a short
  // command). It lives in vaultops' cache dir (as src/lab/paths.ts cacheDir), never in TMPDIR, so a run
  // leaves nothing in temp; NODE_DISABLE_COMPILE_CACHE=1 turns it off. The builtins come from
  // process.getBuiltinModule (synchronous, no ESM facade) rather than import(): a start is ~30 ms and
  // each import() costs a turn of the module loader.
  try {
    const env = process.env;
    const path = process.getBuiltinModule('node:path');
    const m = process.getBuiltinModule('node:module');
    const base =
      env.VAULTOPS_CACHE_DIR ||
      path.join(
        env.XDG_CACHE_HOME || path.join(env.HOME || process.getBuiltinModule('node:os').homedir(), '.cache'),
        'vaultops',
      );
    if (m.enableCompileCache) m.enableCompileCache(path.join(base, 'node-compile-cache'));
  } catch {
    // A cache that cannot be written only costs speed.
  }
  import('../dist/cli/main.js')
    .then((m) => m.main(process.argv))
    .catch((e) => {
      const noDist = e && e.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes('dist/cli/main.js');
      process.stderr.write(
        `vaultops: cannot start: ${noDist ? 'dist/ is missing; run `npm run build` first' : String(e && e.message)}\n`,
      );
      process.exit(1);
    });
}
