import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jsonSchemas, renderSchema } from '../playbook/json-schema.js';
import { out } from '../ui/output.js';

export async function schemaCommand(o: { write?: string }): Promise<void> {
  const schemas = jsonSchemas();
  if (!o.write) {
    out.json(schemas);
    return;
  }
  mkdirSync(o.write, { recursive: true });
  for (const [name, value] of Object.entries(schemas)) {
    writeFileSync(join(o.write, name), renderSchema(value));
    out.line(`wrote ${join(o.write, name)}`);
  }
}
