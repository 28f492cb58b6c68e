import type { Command } from 'commander';

/** vaultops schema: JSON Schemas for editors. */
export function registerSchemaCommand(program: Command): void {
  program
    .command('schema')
    .description('the JSON Schemas of inventories and playbooks, for editors')
    .option('--write <dir>', 'write them into this folder (playbooks/schema)')
    .action(async (o) => (await import('../schema.js')).schemaCommand(o));
}
