import { z } from 'zod';
import { defineAction } from '../types.js';
import { evaluate, parseExpr, truthy, unwrapTemplate } from '../../core/expr.js';

export default defineAction({
  name: 'flow.assert',
  description: 'Fail the run unless an expression is true (vars, registered results, live state).',
  schema: z.strictObject({
    that: z.string().describe('The expression, e.g. "live.sealed_count == 0".'),
    message: z.string().optional().describe('What to say when it is false.'),
  }),
  changes: false,
  describe: (args) => `assert ${args.that}`,
  async run(ctx, args) {
    const ok = truthy(evaluate(parseExpr(unwrapTemplate(args.that)), ctx.vars));
    return ok
      ? { status: 'ok', message: `${args.that}: true` }
      : { status: 'failed', message: args.message ?? `${args.that} is false` };
  },
});
