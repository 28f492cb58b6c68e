import { Command, CommanderError, Option } from 'commander';
import { useLeanHeap } from '../core/lean-heap.js';
import { quietOnBrokenPipe, stdoutIsTerminal, writeStdoutSync } from './std-streams.js';
import { ExitCode } from '../core/exit-codes.js';
import { isVaultopsError } from '../core/errors.js';
import { redactor } from '../core/redact.js';
import { err } from '../ui/output.js';
import { registerBackupCommands } from './commands/backup.js';
import { registerCeremonyCommands } from './commands/ceremonies.js';
import { registerCheckCommand } from './commands/check.js';
import { registerDrillCommand } from './commands/drill.js';
import { registerLabCommands } from './commands/lab.js';
import { registerLbCommands } from './commands/lb.js';
import { registerMaintainCommand } from './commands/maintain.js';
import { registerRunCommands } from './commands/run.js';
import { registerScheduleCommands } from './commands/schedule.js';
import { registerSchemaCommand } from './commands/schema.js';
import { registerStatusCommand } from './commands/status.js';
import { registerTlsCommands } from './commands/tls.js';
import { registerUpgradeCommand } from './commands/upgrade.js';
import { registerCompletion } from './completion.js';

declare const VAULTOPS_VERSION: string | undefined;
/** JSON written by scripts/build.js from commandTable(): what the root help shows of each command. */
declare const VAULTOPS_COMMAND_TABLE: string | undefined;

/** The command groups, in the order the help lists them; each registers one or more commands. */
const GROUPS: ReadonlyArray<(program: Command) => void> = [
  registerLabCommands,
  registerStatusCommand,
  registerUpgradeCommand,
  registerRunCommands,
  registerCeremonyCommands,
  registerSchemaCommand,
  registerBackupCommands,
  registerScheduleCommands,
  registerDrillCommand,
  registerCheckCommand,
  registerLbCommands,
  registerTlsCommands,
  registerMaintainCommand,
  registerCompletion,
];

/** What the root help (and commander's "unknown command" suggestion) reads of a command. */
export interface CommandStub {
  name: string;
  aliases: string[];
  summary: string;
  description: string;
  /** As the help prints them: <playbook>, [id], <words...> */
  args: string[];
  options: boolean;
  hidden: boolean;
}

/**
 * The composition root. Each command group registers itself from src/cli/commands/ (one file per
 * group); a command loads its implementation only when it runs, so `vaultops --help` starts fast.
 */
export async function main(argv: string[]): Promise<void> {
  quietOnBrokenPipe();
  // Before the command's modules load: the young generation grows while they do (see core/lean-heap.ts).
  if (argv.slice(2).find((a) => !a.startsWith('-')) === 'backup') useLeanHeap();
  const program = buildProgram(argv.slice(2));
  try {
    await program.parseAsync(argv);
  } catch (e) {
    process.exitCode = reportError(e);
  }
}

export function buildProgram(args: string[] = argv()): Command {
  const program = new Command('vaultops')
    .description(
      'Runbooks for HashiCorp Vault and OpenBao clusters on Raft: status, labs, upgrades, backups, key ceremonies, drills.',
    )
    .option('--verbose', 'more detail (with --version: runtime and platform)')
    .addOption(new Option('-V, --version', 'print the version (with --verbose: Node.js, platform)'))
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  // Help text goes to descriptor 1 directly; width and colours are asked of process.stdout only on a
  // terminal (or when colour is forced), as commander does, so `--help` never creates the stream.
  const out = program.configureOutput();
  program.configureOutput({
    writeOut: writeStdoutSync,
    getOutHelpWidth: () => (stdoutIsTerminal() && out.getOutHelpWidth ? out.getOutHelpWidth() : HELP_CACHE_WIDTH),
    getOutHasColors: () =>
      stdoutIsTerminal() || 'FORCE_COLOR' in process.env || 'CLICOLOR_FORCE' in process.env
        ? (out.getOutHasColors?.() ?? false)
        : false,
  });

  program.on('option:version', () => {
    printVersion(argv().includes('--verbose'));
    process.exit(0);
  });

  // Only the group of the command that runs is built in full: building every option of every
  // command was a third of `vaultops --help`. The others get stubs from the table made at build time,
  // which hold all the root help prints. Run from the sources (no table), for `help <command>` and for
  // completion (it walks the whole tree), everything is built.
  const table =
    typeof VAULTOPS_COMMAND_TABLE === 'string' ? (JSON.parse(VAULTOPS_COMMAND_TABLE) as CommandStub[][]) : undefined;
  const word = args.find((a) => !a.startsWith('-'));
  const completion = table?.[GROUPS.indexOf(registerCompletion)]?.some((c) => c.name === word);
  const full = !table || table.length !== GROUPS.length || word === 'help' || completion;
  GROUPS.forEach((register, i) => {
    const stubs = table?.[i];
    if (full || !stubs || stubs.some((c) => c.name === word || c.aliases.includes(word ?? ''))) register(program);
    else for (const c of stubs) addStub(program, c);
  });

  return program;
}

function addStub(program: Command, c: CommandStub): void {
  const cmd = new Command(c.name).description(c.description);
  if (c.summary) cmd.summary(c.summary);
  if (c.aliases.length) cmd.aliases(c.aliases);
  for (const a of c.args) cmd.argument(a);
  // The help prints "[options]" after a command that has any; the stub never parses one.
  if (c.options) cmd.addOption(new Option('--stub').hideHelp());
  program.addCommand(cmd, { hidden: c.hidden });
}

/** Each group's commands as the root help sees them; scripts/build.js bakes this into the bundle. */
export function commandTable(): CommandStub[][] {
  return GROUPS.map((register) => {
    const p = new Command();
    register(p);
    return p.commands.map((c) => ({
      name: c.name(),
      aliases: c.aliases(),
      summary: c.summary(),
      description: c.description(),
      args: c.registeredArguments.map((a) => {
        const name = a.name() + (a.variadic ? '...' : '');
        return a.required ? `<${name}>` : `[${name}]`;
      }),
      options: c.options.length > 0,
      hidden: (c as unknown as { _hidden: boolean })._hidden,
    }));
  });
}

/**
 * The help of every command as `<words> --help` prints it on an 80-column (or non-terminal) output,
 * keyed by the words that name it ("" for the root, "lab up", aliases too). scripts/build.js writes
 * it to dist/cli/help-80.json, from which bin/vaultops.js answers such a call without loading the CLI.
 */
export function helpTexts(): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (cmd: Command, names: string[][]) => {
    // `__complete --help` is a word to complete, not a call for help: such commands are left out.
    const help = (cmd as unknown as { _getHelpOption(): Option | null })._getHelpOption();
    if (help?.short !== '-h' || help.long !== '--help') return;
    cmd.configureOutput({ ...cmd.configureOutput(), getOutHelpWidth: () => HELP_CACHE_WIDTH });
    const text = cmd.helpInformation();
    for (const words of names) out[words.join(' ')] = text;
    for (const sub of cmd.commands) {
      const own = [sub.name(), ...sub.aliases()];
      walk(
        sub,
        names.flatMap((words) => own.map((n) => [...words, n])),
      );
    }
  };
  walk(buildProgram(['help']), [[]]); // "help": every command built in full
  return out;
}

/** What commander wraps help to when the output is not a terminal. */
export const HELP_CACHE_WIDTH = 80;

function argv(): string[] {
  return process.argv.slice(2);
}

function printVersion(verbose: boolean): void {
  const version = typeof VAULTOPS_VERSION === 'string' ? VAULTOPS_VERSION : packageVersion();
  writeStdoutSync(`vaultops ${version}\n`);
  if (verbose) {
    writeStdoutSync(`node ${process.versions.node}\nplatform ${process.platform}-${process.arch}\n`);
  }
}

function packageVersion(): string {
  try {
    // dist/cli/main.js -> package.json
    const url = new URL('../../package.json', import.meta.url);
    return (JSON.parse(readFileSyncCompat(url)) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function readFileSyncCompat(url: URL): string {
  return process.getBuiltinModule('node:fs').readFileSync(url, 'utf8');
}

/** Prints an error the way a user needs it (what, details, what to do) and returns the exit code. */
export function reportError(e: unknown): number {
  if (e instanceof CommanderError) {
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help')
      return ExitCode.ok;
    return ExitCode.badInput;
  }
  if (isVaultopsError(e)) {
    err.line(`error: ${e.message}`);
    for (const d of e.details) err.line(`  ${d}`);
    if (e.hint) err.line(`hint: ${e.hint}`);
    return e.exitCode;
  }
  if (e instanceof Error && e.name === 'ExitPromptError') {
    // Ctrl-C at a prompt: every question comes before the first change, so nothing changed.
    err.line('Stopped at a prompt; nothing was changed.');
    return ExitCode.interrupted;
  }
  const message = e instanceof Error ? e.message : String(e);
  err.line(`error: ${redactor.redact(message)}`);
  if (process.env['VAULTOPS_DEBUG'] && e instanceof Error && e.stack) err.line(redactor.redact(e.stack));
  else err.line('hint: this is unexpected; run again with VAULTOPS_DEBUG=1 for a stack trace and report it.');
  return ExitCode.failed;
}
