import type { Command } from 'commander';

/** --store/--to and the retention options, shared by backup, backups, restore and schedule backup. */
export function storeOptions(c: Command): Command {
  return c
    .option('--store <name>', "a store from the cluster's `stores:` in the inventory (default: its only one)")
    .option('--to <dir>', 'a local directory instead of an inventory store')
    .option('--keep-last <n>', 'retention: keep the newest N verified backups')
    .option('--keep-within <duration>', 'retention: keep every verified backup younger than this (48h, 7d, 2w)');
}

/** A repeatable option with a default of []: `--var a=1 --var b=2`. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** A repeatable option without a default: undefined when absent, so requiredOption still applies. */
export function repeatable(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
