import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command, Option } from 'commander';
import { InputError } from '../core/errors.js';

/**
 * Shell completion. The scripts are thin: on every Tab they ask the CLI itself
 * (`vaultops __complete -- WORDS...`), which walks the commander command tree, so a new command
 * or option completes the day it is registered, and cluster names come from the inventory the
 * command line names with -i. No candidates means "complete a file name" (the shell's default).
 */
export const SHELLS = ['bash', 'zsh', 'fish'] as const;
type Shell = (typeof SHELLS)[number];

/** Registers `completion SHELL` and the hidden `__complete` the scripts call. Loads nothing until used. */
export function registerCompletion(program: Command): void {
  program
    .command('completion')
    .argument('<shell>', `one of ${SHELLS.join(', ')}`)
    .description(
      'print the shell completion script: `source <(vaultops completion bash)` (bash, zsh) or `vaultops completion fish | source`',
    )
    .action((shell: string) => {
      process.stdout.write(completionScript(shell));
    });
  program
    .command('__complete', { hidden: true })
    .argument('[words...]', 'the command line after "vaultops", the word being completed last')
    .allowUnknownOption()
    .helpOption(false)
    .action(async (words: string[] | undefined) => {
      for (const c of await complete(program, words ?? [])) process.stdout.write(`${c}\n`);
    });
}

export function completionScript(shell: string): string {
  if (!(SHELLS as readonly string[]).includes(shell))
    throw new InputError(`No completion for shell "${shell}".`, { hint: `Use one of: ${SHELLS.join(', ')}.` });
  return SCRIPTS[shell as Shell];
}

// The command the user typed (vaultops, or a path to it) answers for itself: no copy of its
// command list lives in the script.
const SCRIPTS: Record<Shell, string> = {
  bash: `# vaultops completion for bash: source <(vaultops completion bash), or save it as
# /etc/bash_completion.d/vaultops (or ~/.local/share/bash-completion/completions/vaultops).
_vaultops_complete() {
  local IFS=$'\\n'
  COMPREPLY=($("\${COMP_WORDS[0]}" __complete -- "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _vaultops_complete vaultops
`,
  zsh: `#compdef vaultops
# vaultops completion for zsh: source <(vaultops completion zsh), or save it as _vaultops in a
# directory of $fpath (after compinit).
_vaultops() {
  local -a candidates
  candidates=("\${(@f)$(\${words[1]} __complete -- "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  if (( \${#candidates} )) && [[ -n \${candidates[1]} ]]; then
    compadd -a candidates
  else
    _files
  fi
}
if [[ "\${funcstack[1]}" = "_vaultops" ]]; then
  _vaultops "$@"
else
  compdef _vaultops vaultops
fi
`,
  fish: `# vaultops completion for fish: vaultops completion fish | source, or save it as
# ~/.config/fish/completions/vaultops.fish
function __vaultops_complete
    set -l tokens (commandline -opc) (commandline -ct)
    $tokens[1] __complete -- $tokens[2..-1] 2>/dev/null
end
complete -c vaultops -a '(__vaultops_complete)'
`,
};

/** Values of options whose set is fixed (commander choices where declared, else these). */
const OPTION_VALUES: Record<string, readonly string[]> = {
  '--flavor': ['openbao', 'vault'],
  '--strategy': ['rolling', 'immutable'],
  '--fail-on': ['critical', 'warning'],
  '--seal': ['shamir', 'transit'],
  '--notify-on': ['failure', 'success', 'failure,success'],
};

/** Values of positional arguments, by the argument's name in the command tree. */
const ARGUMENT_VALUES: Record<string, () => string[]> = {
  playbook: builtInPlaybooks,
  shell: () => [...SHELLS],
};

/**
 * The candidates for the last word of `words` (the words after "vaultops"; the last one is the
 * partial word under the cursor, '' when it is empty).
 */
export async function complete(program: Command, words: readonly string[]): Promise<string[]> {
  const current = words[words.length - 1] ?? '';
  const before = words.slice(0, -1);
  let cmd = program;
  const inventories: string[] = [];
  let afterDoubleDash = false;
  let argIndex = 0;
  for (let i = 0; i < before.length; i++) {
    const w = before[i]!;
    if (afterDoubleDash) {
      argIndex++;
      continue;
    }
    if (w === '--') {
      afterDoubleDash = true;
      continue;
    }
    if (w.startsWith('-')) {
      const [flag, inline] = w.split(/=(.*)/s, 2) as [string, string | undefined];
      const opt = findOption(cmd, flag);
      if (opt && takesValue(opt) && inline === undefined && i + 1 < before.length) {
        const value = before[++i]!;
        if (opt.long === '--inventory') inventories.push(value);
      } else if (opt?.long === '--inventory' && inline !== undefined) inventories.push(inline);
      continue;
    }
    const sub = cmd.commands.find((c) => c.name() === w || c.aliases().includes(w));
    if (sub && argIndex === 0) cmd = sub;
    else argIndex++;
  }

  const previous = before[before.length - 1];
  const valueOf = previous !== undefined && !afterDoubleDash ? findOption(cmd, previous) : undefined;
  if (valueOf && takesValue(valueOf)) return matching(await optionValues(valueOf, inventories), current);
  if (current.startsWith('-') && !afterDoubleDash) return matching(optionNames(cmd), current);

  const subcommands =
    argIndex === 0
      ? cmd
          .createHelp()
          .visibleCommands(cmd)
          .map((c) => c.name())
      : [];
  const argument = cmd.registeredArguments[Math.min(argIndex, cmd.registeredArguments.length - 1)];
  const fromArgument = argument ? (argument.argChoices ?? ARGUMENT_VALUES[argument.name()]?.() ?? []) : [];
  return matching([...subcommands, ...fromArgument], current);
}

function findOption(cmd: Command, flag: string): Option | undefined {
  for (let c: Command | null = cmd; c; c = c.parent) {
    const o = c.options.find((x) => x.long === flag || x.short === flag);
    if (o) return o;
  }
  return undefined;
}

function takesValue(o: Option): boolean {
  return o.required || o.optional;
}

function optionNames(cmd: Command): string[] {
  const names = cmd
    .createHelp()
    .visibleOptions(cmd)
    .flatMap((o) => (o.long ? [o.long] : o.short ? [o.short] : []));
  return [...new Set(names)];
}

async function optionValues(o: Option, inventories: readonly string[]): Promise<string[]> {
  if (o.argChoices) return o.argChoices;
  if (o.long === '--cluster') return clusterNames(inventories);
  return [...(OPTION_VALUES[o.long ?? ''] ?? [])];
}

/**
 * Cluster names of the inventories on the command line, read without validating them: completion
 * must not fail on an inventory being edited. A missing or unreadable one gives none.
 */
async function clusterNames(inventories: readonly string[]): Promise<string[]> {
  const { parse } = await import('yaml');
  const names: string[] = [];
  for (const file of inventories) {
    try {
      const doc = parse(readFileSync(file, 'utf8')) as { clusters?: unknown } | null;
      if (doc?.clusters && typeof doc.clusters === 'object') names.push(...Object.keys(doc.clusters));
    } catch {
      /* nothing to offer */
    }
  }
  return names;
}

function builtInPlaybooks(): string[] {
  try {
    const dir = fileURLToPath(new URL('../../playbooks/', import.meta.url));
    return readdirSync(dir)
      .filter((f) => f.endsWith('.yml'))
      .map((f) => f.slice(0, -4))
      .sort();
  } catch {
    return [];
  }
}

function matching(candidates: readonly string[], prefix: string): string[] {
  return [...new Set(candidates.filter((c) => c.startsWith(prefix)))];
}
