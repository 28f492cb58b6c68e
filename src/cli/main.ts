import { Command, CommanderError, Option } from 'commander';
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

/**
 * The composition root. Each command group registers itself from src/cli/commands/ (one file per
 * group); a command loads its implementation only when it runs, so `vaultops --help` starts fast.
 */
export async function main(argv: string[]): Promise<void> {
  // `vaultops status | head`: a reader that goes away is not an error of ours.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw e;
    });
  }
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    process.exitCode = reportError(e);
  }
}

export function buildProgram(): Command {
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

  program.on('option:version', () => {
    printVersion(argv().includes('--verbose'));
    process.exit(0);
  });

  registerLabCommands(program);
  registerStatusCommand(program);
  registerUpgradeCommand(program);
  registerRunCommands(program);
  registerCeremonyCommands(program);
  registerSchemaCommand(program);
  registerBackupCommands(program);
  registerScheduleCommands(program);
  registerDrillCommand(program);
  registerCheckCommand(program);
  registerLbCommands(program);
  registerTlsCommands(program);
  registerMaintainCommand(program);
  registerCompletion(program);

  return program;
}

function argv(): string[] {
  return process.argv.slice(2);
}

function printVersion(verbose: boolean): void {
  const version = typeof VAULTOPS_VERSION === 'string' ? VAULTOPS_VERSION : packageVersion();
  process.stdout.write(`vaultops ${version}\n`);
  if (verbose) {
    process.stdout.write(`node ${process.versions.node}\nplatform ${process.platform}-${process.arch}\n`);
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
