import { z } from 'zod';

const duration = z.union([
  z.number().nonnegative(),
  z.string().regex(/^\d+(\.\d+)?(ms|s|m|h)$/, 'a duration like 500ms, 5s, 2m'),
]);

export const varSchema = z.strictObject({
  type: z
    .enum(['string', 'number', 'boolean', 'secret', 'secret_list'])
    .default('string')
    .describe('secret and secret_list values are masked everywhere and never journaled.'),
  description: z.string().optional(),
  default: z
    .unknown()
    .optional()
    .describe(
      'A value, a secret reference (env:, file:, cmd:, prompt:) or a {{ template }} such as {{ cluster.unseal.keys }}.',
    ),
  required: z.boolean().optional().describe('Default: true when there is no default.'),
  prompt: z.string().optional().describe('What to ask at a terminal when no value is given.'),
  count: z
    .union([z.number().int().positive(), z.string()])
    .optional()
    .describe('secret_list: how many values to ask for (e.g. {{ live.threshold }}).'),
  when: z.string().optional().describe('Only needed when this expression is true (e.g. live.sealed_count > 0).'),
  choices: z.array(z.string()).optional(),
});

export const targetSchema = z
  .string()
  .regex(
    /^(cluster|leader|standbys|all|node:[A-Za-z0-9_.-]+|group:[A-Za-z0-9_.-]+|[A-Za-z0-9_.-]+)$/,
    'cluster, leader, standbys, all, node:NAME or a group name',
  )
  .describe('cluster (once), leader, standbys, all, node:NAME, or an inventory group (group:NAME or NAME).');

const stepBase = {
  name: z.string().optional().describe('What this step does, in words.'),
  when: z.string().optional().describe('Run only when this expression is true (vars, registered results, cluster).'),
  confirm: z
    .string()
    .optional()
    .describe('A typed confirmation asked before the run starts, e.g. "{{ cluster.name }}".'),
};

export interface StepInput {
  name?: string | undefined;
  when?: string | undefined;
  confirm?: string | undefined;
  action?: string | undefined;
  target?: string | undefined;
  with?: Record<string, unknown> | undefined;
  register?: string | undefined;
  retries?: number | undefined;
  delay?: string | number | undefined;
  until?: string | undefined;
  serial?: number | undefined;
  gate?: boolean | undefined;
  ignore_errors?: boolean | undefined;
  block?: StepInput[] | undefined;
  rescue?: StepInput[] | undefined;
  always?: StepInput[] | undefined;
}

export const actionStepSchema = z.strictObject({
  ...stepBase,
  action: z.string().describe('The action to run, e.g. vault.unseal.'),
  target: targetSchema.optional(),
  with: z.record(z.string(), z.unknown()).optional().describe('Arguments of the action (checked against its schema).'),
  register: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
    .optional()
    .describe('Keep the result under this name for later steps.'),
  retries: z.number().int().min(0).max(1000).optional(),
  delay: duration.optional().describe('Time between retries.'),
  until: z.string().optional().describe("Retry until this expression is true (result is the outcome's data)."),
  serial: z.number().int().min(1).optional().describe('Nodes at a time (1 = one after the other).'),
  gate: z.boolean().optional().describe('A safety check: checked again before `resume` continues.'),
  ignore_errors: z.boolean().optional(),
});

export const blockStepSchema: z.ZodType<StepInput> = z.lazy(() =>
  z.strictObject({
    ...stepBase,
    block: z.array(stepSchema).min(1),
    rescue: z.array(stepSchema).optional().describe('Runs when a step of the block failed.'),
    always: z.array(stepSchema).optional().describe('Runs after the block, whether it failed or not.'),
  }),
);

export const stepSchema: z.ZodType<StepInput> = z.lazy(() => z.union([actionStepSchema, blockStepSchema]));

export const playbookSchema = z.strictObject({
  name: z.string().describe('Short name of the runbook.'),
  description: z.string().optional(),
  vars: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), varSchema).optional(),
  steps: z.array(stepSchema).min(1, 'a playbook needs at least one step'),
});

export type PlaybookFile = z.infer<typeof playbookSchema>;
export type VarSpec = z.infer<typeof varSchema>;
