import { z } from 'zod';
import { defineAction } from '../types.js';
import { abortableSleep } from '../../core/sleep.js';

export default defineAction({
  name: 'flow.wait',
  description: 'Wait a number of seconds (stops early on Ctrl-C).',
  schema: z.strictObject({ seconds: z.number().min(0).max(86_400) }),
  changes: false,
  describe: (args) => `wait ${args.seconds} s`,
  async run(ctx, args) {
    await abortableSleep(args.seconds * 1000, ctx.signal);
    return ctx.signal.aborted ? { status: 'failed', message: 'interrupted' } : { status: 'ok' };
  },
});
