import { z } from 'zod';
import { inventorySchema } from '../inventory/schema.js';
import { playbookSchema } from './schema.js';

/**
 * JSON Schemas for editors (yaml-language-server), generated from the zod schemas so they cannot
 * drift: a test compares these with the files in playbooks/schema/.
 */
export function jsonSchemas(): Record<string, unknown> {
  const gen = (schema: z.ZodType, id: string, title: string) => ({
    $id: `https://vaultops.dev/schema/${id}`,
    title,
    ...(z.toJSONSchema(schema, { target: 'draft-2020-12', unrepresentable: 'any', io: 'input' }) as Record<
      string,
      unknown
    >),
  });
  return {
    'playbook.schema.json': gen(playbookSchema, 'playbook.schema.json', 'vaultops playbook'),
    'inventory.schema.json': gen(inventorySchema, 'inventory.schema.json', 'vaultops inventory'),
  };
}

export function renderSchema(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
