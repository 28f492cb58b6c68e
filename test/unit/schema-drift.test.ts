import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { jsonSchemas, renderSchema } from '../../src/playbook/json-schema.js';

describe('the JSON Schemas editors use are generated from the zod schemas and do not drift', () => {
  it.each(Object.entries(jsonSchemas()))(
    'playbooks/schema/%s is up to date (regenerate: vaultops schema --write playbooks/schema)',
    (name, schema) => {
      expect(readFileSync(`playbooks/schema/${name}`, 'utf8')).toBe(renderSchema(schema));
    },
  );
});
